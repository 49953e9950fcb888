"""The folded inference engine computes the paper's CfC: held to the plain reference, not to itself."""

import pytest
import torch
from helpers import ACT, plain_run

from cfctool.engines import fastest
from cfctool.families.build import build_model
from cfctool.models.inference import FoldedCfC

TOKENS = {"input": {"kind": "tokens", "vocab_size": 50}, "output": {"kind": "classification", "size": 3}}
FEATURES = {"input": {"kind": "features", "size": 5},
            "output": {"kind": "classification", "size": 4, "per_step": True}}


def _arch(name, layers=2, act="relu", mode="default", mixed=False, motor=3, head="tanh"):
    arch = dict(name=name, hidden=12, mode=mode, mixed_memory=mixed, embedding_dim=6, head_activation=head)
    if name == "cfc-ncp":
        return {**arch, "sparsity": 0.5, "wiring_seed": 3, "motor": motor}
    return {**arch, "backbone_units": 7, "backbone_layers": layers, "backbone_activation": act,
            "backbone_dropout": 0.0}


def reference(model, x, dt, mask, act):
    """Embedding, the plain per-step CfC from the paper, readout."""
    feats = model.embedding(x) if model.embedding is not None else x
    b, t = feats.shape[:2]
    dt = torch.ones(b, t) if dt is None else dt
    mask = torch.ones(b, t, dtype=torch.bool) if mask is None else mask
    outs, last = plain_run(model.rnn, feats, dt, mask, act)
    return model.head(outs if model.per_step else last)


def _tokens(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 50, (9, 11), generator=g)
    lengths = torch.randint(1, 12, (9,), generator=g)
    lengths[3], lengths[5] = 0, 11  # an empty row and a full one
    mask = torch.arange(11).unsqueeze(0) < lengths.unsqueeze(1)  # end padding, as IMDB
    return x, mask


@pytest.mark.parametrize("name,layers,act,head", [("cfc", 1, "relu", "tanh"), ("cfc", 3, "lecun_tanh", "tanh"),
                                                  ("cfc", 0, "silu", "tanh"), ("cfc-ncp", 0, "relu", "tanh"),
                                                  ("cfc", 2, "silu", "lecun_tanh"), ("cfc-ncp", 0, "relu", "lecun_tanh")])
def test_tokens_with_padding_match_the_paper(name, layers, act, head):
    torch.manual_seed(0)
    model = build_model(_arch(name, layers, act, head=head), TOKENS).eval()
    x, mask = _tokens(1)
    with torch.no_grad():
        want = reference(model, x, None, mask, ACT[act])
    got = FoldedCfC(model)(x, None, mask)
    assert (got - want).abs().max().item() <= 1e-5
    assert torch.equal(got.argmax(-1), want.argmax(-1))


@pytest.mark.parametrize("name", ["cfc", "cfc-ncp"])
def test_masks_with_holes_take_the_select_path_and_match_the_paper(name):
    torch.manual_seed(5)
    model = build_model(_arch(name), TOKENS).eval()
    x, _ = _tokens(6)
    mask = torch.rand(x.shape) > 0.4  # valid steps after padded ones: not packable
    dt = torch.rand(x.shape) + 0.2
    with torch.no_grad():
        want = reference(model, x, dt, mask, ACT["relu"])
    assert (FoldedCfC(model)(x, dt, mask) - want).abs().max().item() <= 1e-5


def test_packed_padding_gives_what_the_unpadded_sequences_give():
    torch.manual_seed(7)
    model = build_model(_arch("cfc"), TOKENS).eval()
    engine = FoldedCfC(model)
    x, mask = _tokens(8)
    padded = engine(x, None, mask)
    for row in range(len(x)):
        n = int(mask[row].sum())
        if n:
            alone = engine(x[row : row + 1, :n])
            assert (alone - padded[row]).abs().max().item() <= 1e-5, row
    dt = torch.rand(x.shape) * 2 + 0.1  # irregular dt through the packed path
    with torch.no_grad():
        want = reference(model, x, dt, mask, ACT["relu"])
    assert (engine(x, dt, mask) - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name,head", [("cfc", "tanh"), ("cfc-ncp", "tanh"), ("cfc-ncp", "lecun_tanh")])
def test_irregular_dt_and_per_step_outputs_match_the_paper(name, head):
    torch.manual_seed(1)
    model = build_model(_arch(name, motor=4, head=head), FEATURES).eval()
    x = torch.randn(5, 8, 5)
    dt = torch.rand(5, 8) * 3 + 0.05
    mask = torch.rand(5, 8) > 0.3
    with torch.no_grad():
        want = reference(model, x, dt, mask, ACT["relu"])
    got = FoldedCfC(model)(x, dt, mask)
    assert (got - want).abs().max().item() <= 1e-5


def test_constant_dt_other_than_one_folds_the_gate_with_that_value():
    torch.manual_seed(2)
    model = build_model(_arch("cfc"), FEATURES).eval()
    x = torch.randn(4, 6, 5)
    engine = FoldedCfC(model)
    for value in (0.3, 1.0, 4.0):
        dt = torch.full((4, 6), value)
        with torch.no_grad():
            want = reference(model, x, dt, None, ACT["relu"])
        assert (engine(x, dt, None) - want).abs().max().item() <= 1e-5
    # the same inputs at different dt give different outputs: dt is not ignored by the folding
    assert (engine(x, torch.full((4, 6), 0.3)) - engine(x, torch.full((4, 6), 4.0))).abs().max() > 1e-3


@pytest.mark.parametrize("arch", [_arch("cfc", mode="no_gate"), _arch("cfc", mode="pure"), _arch("cfc", mixed=True),
                                  {"name": "ltc", "hidden": 6, "ode_unfolds": 2, "embedding_dim": 6}])
def test_configurations_without_a_folded_form_are_served_by_the_model(arch):
    model = build_model(arch, TOKENS)
    assert fastest(model).module is model
    with pytest.raises(ValueError, match="default"):
        FoldedCfC(model)


def test_engine_is_picked_for_default_mode_and_leaves_the_model_untouched():
    torch.manual_seed(3)
    model = build_model(_arch("cfc"), TOKENS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = fastest(model).module
    assert isinstance(engine, FoldedCfC)
    x, mask = _tokens(4)
    first = engine(x, None, mask)
    assert torch.equal(engine(x, None, mask), first)  # cached folding gives the same numbers
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
