"""The fused, hoisted CfC loop equals a plain per-step implementation written from the paper."""

import pytest
import torch
from helpers import ACT, plain_run

from cfctool.families.build import build_core


def _arch(name, mode, mixed, layers=2, act="relu", head="tanh"):
    if name == "cfc-ncp":
        return dict(name=name, hidden=12, mode=mode, sparsity=0.5, wiring_seed=3, motor=2, mixed_memory=mixed,
                    head_activation=head)
    return dict(name=name, hidden=10, mode=mode, backbone_units=7, backbone_layers=layers,
                backbone_activation=act, backbone_dropout=0.0, mixed_memory=mixed, head_activation=head)


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("name,layers,act,head", [("cfc", 2, "relu", "tanh"), ("cfc", 0, "tanh", "tanh"),
                                                  ("cfc", 1, "lecun_tanh", "tanh"), ("cfc-ncp", 0, "relu", "tanh"),
                                                  ("cfc", 2, "silu", "lecun_tanh"), ("cfc-ncp", 0, "relu", "lecun_tanh")])
def test_fused_loop_matches_plain_steps(mode, mixed, name, layers, act, head):
    torch.manual_seed(1)
    core = build_core(_arch(name, mode, mixed, layers, act, head), 5)
    x = torch.randn(6, 9, 5)
    dt = torch.rand(6, 9) * 3 + 0.05  # irregular, per sample and per step
    mask = torch.rand(6, 9) > 0.3
    mask[:, 0] = True
    out, last = core(x, dt, mask, return_sequences=True)
    ref_out, ref_last = plain_run(core, x, dt, mask, ACT[act])
    assert (out - ref_out).abs().max().item() <= 1e-5
    assert (last - ref_last).abs().max().item() <= 1e-5


def test_fused_loop_gradients_match_plain_steps():
    torch.manual_seed(2)
    core = build_core(_arch("cfc", "default", True), 4)
    x, dt, mask = torch.randn(3, 7, 4), torch.rand(3, 7) + 0.1, torch.rand(3, 7) > 0.2
    core(x, dt, mask)[1].pow(2).sum().backward()
    fused = {n: p.grad.clone() for n, p in core.named_parameters()}
    core.zero_grad()
    plain_run(core, x, dt, mask, ACT["relu"])[1].pow(2).sum().backward()
    for name, p in core.named_parameters():
        assert torch.allclose(fused[name], p.grad, atol=1e-5), name


def test_masked_steps_keep_state_so_padding_does_not_change_the_result():
    torch.manual_seed(3)
    core = build_core(_arch("cfc", "default", False), 3)
    x, dt = torch.randn(2, 5, 3), torch.rand(2, 5) + 0.5
    _, short = core(x[:, :3], dt[:, :3])
    padded = torch.cat([x[:, :3], torch.randn(2, 2, 3) * 100], 1)
    mask = torch.tensor([[True] * 3 + [False] * 2] * 2)
    _, last = core(padded, dt, mask)
    assert torch.allclose(short, last, atol=1e-6)
    _, unmasked = core(padded, dt)
    assert not torch.allclose(short, unmasked, atol=1e-3)  # the padding would matter without the mask


def test_elapsed_time_changes_the_output():
    torch.manual_seed(4)
    core = build_core(_arch("cfc", "default", False), 3)
    x = torch.randn(2, 4, 3)
    a = core(x, torch.ones(2, 4))[1]
    b = core(x, torch.full((2, 4), 5.0))[1]
    assert (a - b).abs().max() > 1e-3
    assert torch.allclose(core(x)[1], a)  # dt defaults to 1.0
