"""Weights copied from the reference library (ncps) give the same outputs in our models.

Timespans are fed to ncps one step at a time with shape (batch, 1): ncps's sequence API
squeezes ``timespans[:, t]`` to (batch,), which broadcasts against (batch, hidden) along
the *hidden* axis, so it fails when batch != hidden and silently mixes samples' elapsed
times when batch == hidden (see test_ncps_batched_timespans_bug). Batch sizes here differ
from hidden sizes on purpose.
"""

import numpy as np
import pytest
import torch

ncps_torch = pytest.importorskip("ncps.torch", reason="ncps (the reference CfC library) is not installed; pip install -e '.[test]'")
from ncps.wirings import AutoNCP  # noqa: E402

from cfctool.families.build import build_core  # noqa: E402
from cfctool.models.wiring import NcpShape, cfc_layer_masks, ncp_adjacency  # noqa: E402

B, T, I = 5, 11, 3


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, T, I, generator=g), torch.rand(B, T, generator=g) * 2 + 0.1


def _reference_steps(ref, x, dt, state_size):
    h, c = torch.zeros(B, state_size), torch.zeros(B, state_size)
    outs = []
    for t in range(T):
        if getattr(ref, "use_mixed", False):
            h, c = ref.lstm(x[:, t], (h, c))
        out, h = ref.rnn_cell(x[:, t], h, dt[:, t : t + 1])
        outs.append(out)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("mixed", [False, True])
def test_cfc_matches_ncps(mode, mixed):
    torch.manual_seed(0)
    ref = ncps_torch.CfC(I, 8, mode=mode, backbone_units=16, backbone_layers=2, activation="relu",
                         mixed_memory=mixed)
    ours = build_core(dict(name="cfc", hidden=8, mode=mode, backbone_units=16, backbone_layers=2,
                           backbone_activation="relu", backbone_dropout=0.0, mixed_memory=mixed), I)
    # ncps interleaves activations in a Sequential: its Linear layers sit at 0, 2, 4...
    state = {k.replace("rnn_cell.", "cells.0.").replace("backbone.2.", "backbone.1."): v
             for k, v in ref.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    x, dt = _inputs()
    expected = _reference_steps(ref, x, dt, 8)
    out, last = ours(x, dt, return_sequences=True)
    assert (out - expected).abs().max().item() <= 1e-5
    assert (last - expected[:, -1]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("mode", ["default", "pure"])
def test_wired_cfc_matches_ncps_autoncp(mode):
    torch.manual_seed(0)
    ref = ncps_torch.CfC(I, AutoNCP(16, 3, sparsity_level=0.5, seed=7), mode=mode)
    ours = build_core(dict(name="cfc-ncp", hidden=16, mode=mode, sparsity=0.5, wiring_seed=7, motor=3,
                           mixed_memory=False), I)
    state = {k.replace("rnn_cell.layer_", "cells."): v for k, v in ref.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    x, dt = _inputs()
    expected = _reference_steps(ref, x, dt, 16)
    out, _ = ours(x, dt, return_sequences=True)
    assert out.shape == (B, T, 3)
    assert (out - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("units,motor,sparsity,seed", [(16, 3, 0.5, 7), (32, 2, 0.75, 22222), (64, 4, 0.3, 1)])
def test_our_ncp_generator_draws_the_same_circuit_as_autoncp(units, motor, sparsity, seed):
    wiring = AutoNCP(units, motor, sparsity_level=sparsity, seed=seed)
    wiring.build(I)
    sensory, internal = ncp_adjacency(NcpShape.auto(units, motor, sparsity), I, seed)
    np.testing.assert_array_equal(sensory, wiring.sensory_adjacency_matrix)
    np.testing.assert_array_equal(internal, wiring.adjacency_matrix)
    masks = cfc_layer_masks(NcpShape.auto(units, motor, sparsity), sensory, internal)
    assert 0 < sum(m.sum() for m in masks) < sum(m.size for m in masks)  # genuinely sparse


def test_ltc_matches_ncps():
    torch.manual_seed(0)
    ref = ncps_torch.LTC(I, 8)
    ours = build_core(dict(name="ltc", hidden=8, ode_unfolds=6), I)
    state = {k.replace("rnn_cell.", ""): v for k, v in ref.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    x, dt = _inputs()
    expected = _reference_steps(ref, x, dt, 8)
    out, _ = ours(x, dt, return_sequences=True)
    assert (out - expected).abs().max().item() <= 1e-5


def test_ncps_batched_timespans_bug():
    """Documents why the parity tests step ncps by hand: its sequence API mis-broadcasts dt."""
    torch.manual_seed(0)
    hidden = 6
    ref = ncps_torch.CfC(I, hidden, backbone_units=8, backbone_layers=1)
    x = torch.randn(hidden, T, I)  # batch == hidden: the only case where ncps does not raise
    dt = torch.rand(hidden, T) * 3 + 0.1
    buggy, _ = ref(x, timespans=dt)
    correct = torch.stack([o for o in _reference_steps_batch(ref, x, dt)], 1)
    assert (buggy - correct).abs().max() > 1e-3
    with pytest.raises(RuntimeError):
        ref(torch.randn(hidden + 1, T, I), timespans=torch.rand(hidden + 1, T))


def _reference_steps_batch(ref, x, dt):
    h = torch.zeros(x.shape[0], ref.state_size)
    for t in range(x.shape[1]):
        out, h = ref.rnn_cell(x[:, t], h, dt[:, t : t + 1])
        yield out
