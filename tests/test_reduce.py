"""`reduce`: full-dimension reductions reproduce the original, smaller ones are genuinely
smaller models of the right shape, CfC POD-DEIM is an ordinary CfC, and the errors."""

import pytest
import torch
import torch.nn.functional as F

from cfctool.checkpoint import Checkpoint, load, new_record, save
from cfctool.configs import ReduceConfig
from cfctool.data.base import Dataset, Split
from cfctool.data.mnist import task_record
from cfctool.engines import fastest
from cfctool.errors import CfcError, ConfigError
from cfctool.families.build import build_model, model_from_checkpoint
from cfctool.ops import reduce as reduce_op

CONV = {"name": "conv-ode", "channels": 2, "side": 28, "solver": "rk4", "ode_dt": 0.25, "t_end": 1.0}
RNN = {"name": "ode-rnn", "hidden": 12, "gamma": 0.05, "solver": "euler", "ode_dt": 0.1}


def _fixture(arch, task, monkeypatch, n=48, steps=20):
    """A random model and random inputs served as its task's data (no files needed)."""
    torch.manual_seed(0)
    model = build_model(arch, task)
    with torch.no_grad():  # larger weights than the init, so the block does something
        for p in model.rnn.parameters():
            p.mul_(3.0)
    ckpt = Checkpoint(tensors=dict(model.state_dict()), record=new_record(arch, task))
    g = torch.Generator().manual_seed(1)
    shape = (n, 28, 28) if arch["name"] == "conv-ode" else (n, steps, 1)
    split = Split(torch.rand(*shape, generator=g), torch.randint(0, 10, (n,), generator=g))
    data = Dataset(task=task, splits={"train": split, "val": split.take(slice(0, 16)), "test": split})
    monkeypatch.setattr("cfctool.ops.reduce.task_dataset", lambda *a, **k: data)
    return ckpt, model.eval(), split


@pytest.mark.parametrize("arch,task", [(CONV, task_record("mnist")), (RNN, task_record("pmnist"))])
@pytest.mark.parametrize("method", ["pod-deim", "qdeim", "qdeim/lstsq", "pod", "svd", "svd/lstsq"])
def test_full_dimension_reproduces_the_original(arch, task, method, monkeypatch, tmp_path):
    ckpt, model, split = _fixture(arch, task, monkeypatch)
    n = 128 if arch["name"] == "conv-ode" else 12
    method, _, interpolation = method.partition("/")
    out = reduce_op.reduce(ckpt, ReduceConfig(method=method, dim=n, snapshots=48, every=1,
                                              interpolation=interpolation or "deim"))
    assert out.arch["name"] == "ode-reduced" and out.arch["base"] == arch["name"]
    save(out, tmp_path / "r.st")
    reduced = model_from_checkpoint(load(tmp_path / "r.st"))
    x = split.x[:10]
    with torch.no_grad():
        assert (reduced(x) - model(x)).abs().max() <= 1e-4
        if arch["name"] == "ode-rnn":  # and on the folded engine, the one eval and bench run
            chosen = fastest(reduced)
            name, engine = chosen.name, chosen.module
            assert name == "folded" and (engine(x) - model(x)).abs().max() <= 1e-4


@pytest.mark.parametrize("arch,task", [(CONV, task_record("mnist")), (RNN, task_record("pmnist"))])
def test_smaller_reductions_have_the_reduced_sizes(arch, task, monkeypatch):
    ckpt, model, split = _fixture(arch, task, monkeypatch)
    out = reduce_op.reduce(ckpt, ReduceConfig(method="odeim", dim=6, points=6, oversample=2, snapshots=48))
    r = out.record["compression"]["reduction"]
    assert out.tensors["rnn.M"].shape == (8, 6) and out.tensors["rnn.N"].shape == (6, 8) and len(r["points"]) == 8
    assert r["singular_values_state"] == sorted(r["singular_values_state"], reverse=True)
    svd = reduce_op.reduce(ckpt, ReduceConfig(method="svd", dim=3, snapshots=48))
    assert svd.tensors["rnn.M"].shape[0] == 3 and svd.tensors["rnn.M_out"].shape[1] == 3
    apoz = reduce_op.reduce(ckpt, ReduceConfig(method="apoz", dim=5, snapshots=48))
    kept = apoz.record["compression"]["reduction"]["kept_units"]
    assert len(kept) == 5
    if arch["name"] == "ode-rnn":  # an ordinary smaller ode-rnn: the units with the largest last-step activity
        assert apoz.arch == {**arch, "hidden": 5}
        last = model.capture(split.x)["cells.0.state"][:, -1].abs().mean(0)
        assert kept == sorted(torch.argsort(last, descending=True)[:5].tolist())
    with torch.no_grad():
        for c in (out, svd, apoz):
            assert torch.isfinite(model_from_checkpoint(c)(split.x[:4])).all()


def test_readout_finetuning_on_cached_features_equals_the_full_loop(monkeypatch):
    """With everything before the readout frozen (the seed's protocol) fine-tuning trains the
    readout on features computed once: the same weights as running the frozen model every epoch."""
    from cfctool.training import finetune as fit_module

    ckpt, _, _ = _fixture(RNN, task_record("pmnist"), monkeypatch)
    cfg = ReduceConfig(method="svd", dim=5, finetune=2, lr=1e-2, batch_size=16)
    data = reduce_op.task_dataset(ckpt, None, "")  # the fixture's data (patched there)
    reduced = reduce_op.reduce(ckpt, ReduceConfig(method="svd", dim=5))
    calls = []
    monkeypatch.setattr(fit_module, "_readout_features",
                        lambda *a, _f=fit_module._readout_features: calls.append(1) or _f(*a))
    cached, info = reduce_op._finetune(reduced, data, cfg, lambda m: None, None)
    assert calls and [h["epoch"] for h in info["history"]] == [0, 1, 2]
    monkeypatch.setattr(fit_module, "_readout_only", lambda *a: False)
    full, info_full = reduce_op._finetune(reduced, data, cfg, lambda m: None, None)
    for name in ("head.weight", "head.bias"):
        assert (cached.tensors[name] - full.tensors[name]).abs().max() <= 1e-5
    losses = [[h["train_loss"] for h in i["history"][1:]] for i in (info, info_full)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and losses[0][1] < losses[0][0]  # it trained, alike
    assert torch.equal(cached.tensors["rnn.M"], reduced.tensors["rnn.M"])
    assert info["kept_epoch"] == info_full["kept_epoch"]


def test_cfc_pod_deim_is_an_ordinary_smaller_cfc(trained_xor, monkeypatch):
    from cfctool.data.xor import generate

    ckpt = load(trained_xor["cfc"])
    full = reduce_op.reduce(ckpt, ReduceConfig(method="qdeim", dim=7, snapshots=128, every=1), data_dir=None)
    assert full.arch["name"] == "cfc" and full.arch["hidden"] == 7
    assert full.tensors["rnn.cells.0.ff1.weight"].shape[0] == 7 and full.tensors["head.weight"].shape[1] == 7
    apoz = reduce_op.reduce(ckpt, ReduceConfig(method="apoz", dim=4, snapshots=64))
    assert apoz.arch["hidden"] == 4
    batch = generate(ckpt.task, "test", 20)
    with torch.no_grad():
        for c in (full, apoz):
            assert torch.isfinite(model_from_checkpoint(c)(batch.x, batch.dt, batch.mask)).all()


def test_cfc_interpolation_at_all_points_is_exact(trained_xor):
    """With K = hidden, D = V (P^T V)^-1 is a permutation: the same function, units reordered
    (`reduce` itself asks for K below the hidden size)."""
    from cfctool.data.xor import generate

    ckpt = load(trained_xor["cfc"])
    model = model_from_checkpoint(ckpt)
    batch = generate(ckpt.task, "test", 64)
    for method in ("pod-deim", "qdeim"):
        cfg = ReduceConfig(method=method, dim=ckpt.arch["hidden"], every=1)
        out, detail = reduce_op._reduce_cfc(ckpt, model, generate(ckpt.task, "train", 128), cfg)
        assert sorted(detail["points"]) == list(range(ckpt.arch["hidden"]))
        with torch.no_grad():
            want = model(batch.x, batch.dt, batch.mask)
            assert (model_from_checkpoint(out)(batch.x, batch.dt, batch.mask) - want).abs().max() <= 1e-4


def test_cfc_heads_svd(trained_xor, tmp_path):
    """Full rank reproduces the model through the loop, the folded engine and a save/load;
    a lower rank is a genuinely smaller product, and the snapshot-weighted factors fit the
    heads' outputs on the snapshots at least as well as the weights' plain SVD."""
    from cfctool.data.xor import generate
    from cfctool.families.cfc import macs_per_step

    ckpt = load(trained_xor["cfc"])
    model = model_from_checkpoint(ckpt)
    width, h = ckpt.arch["backbone_widths"][-1], ckpt.arch["hidden"]
    batch, sample = generate(ckpt.task, "test", 64), generate(ckpt.task, "train", 128)
    full = reduce_op.reduce(ckpt, ReduceConfig(method="svd", dim=width, every=1), data_dir=None)
    assert full.arch["head_rank"] == width and full.tensors["rnn.cells.0.head_basis.weight"].shape == (width, width)
    sv = full.record["compression"]["reduction"]["singular_values_heads"]
    assert sv == sorted(sv, reverse=True)
    stacked = torch.cat([ckpt.tensors[f"rnn.cells.0.{n}.weight"] for n in ("ff1", "ff2", "time_a", "time_b")])
    torch.testing.assert_close(torch.tensor(sv[:width], dtype=torch.float64), torch.linalg.svdvals(stacked.double()), atol=1e-4, rtol=1e-4)
    save(full, tmp_path / "full.st")
    reduced = model_from_checkpoint(load(tmp_path / "full.st"))
    with torch.no_grad():
        want = model(batch.x, batch.dt, batch.mask)
        assert (reduced(batch.x, batch.dt, batch.mask) - want).abs().max() <= 1e-4
        assert (fastest(reduced).module(batch.x, batch.dt, batch.mask) - want).abs().max() <= 1e-4

    def heads_error(cfg):
        out = reduce_op.reduce(ckpt, cfg, data_dir=None)
        small = model_from_checkpoint(out)
        z = model.capture(sample.x, sample.dt, sample.mask)[f"cells.0.backbone.{len(ckpt.arch['backbone_widths']) - 1}"]
        cell, low = model.rnn.cells[0], small.rnn.cells[0]
        with torch.no_grad():
            got = F.linear(low.head_basis(z), *low.head_params())
            return (got - F.linear(z, *cell.head_params())).pow(2).sum().item(), out, small

    plain, out, small = heads_error(ReduceConfig(method="svd", dim=2, every=1, snapshots=128))
    fitted, _, _ = heads_error(ReduceConfig(method="svd", dim=2, every=1, snapshots=128, interpolation="lstsq"))
    assert fitted <= plain * (1 + 1e-6)
    n_heads = 4 * h
    assert macs_per_step(small.rnn) == macs_per_step(model.rnn) - n_heads * width + 2 * (width + n_heads)
    with torch.no_grad():  # the folded engine runs the factored heads exactly as the loop does
        assert (fastest(small).module(batch.x, batch.dt, batch.mask) - small(batch.x, batch.dt, batch.mask)
                ).abs().max() <= 1e-5


def test_reduce_errors(trained_xor, cli, tmp_path, monkeypatch):
    src = trained_xor["cfc"]
    r = cli("reduce", src, "--dim", "0", "-o", tmp_path / "r.st")
    assert r.code == 2 and "--dim must be >= 1" in r.err
    # settings that do not fit the model are usage errors, as --dim 0 is (exit 2)
    r = cli("reduce", src, "--dim", "99", "-o", tmp_path / "r.st")
    assert r.code == 2 and "below the hidden size" in r.err
    r = cli("reduce", src, "--method", "odeim", "--dim", "4", "-o", tmp_path / "r.st")
    assert r.code == 2 and "does not apply to 'cfc'" in r.err
    width = load(src).arch["backbone_widths"][-1]
    r = cli("reduce", src, "--method", "svd", "--dim", str(width + 1), "-o", tmp_path / "r.st")
    assert r.code == 2 and f"at most the backbone's output width {width}" in r.err
    r = cli("reduce", trained_xor["cfc-ncp"], "--method", "svd", "--dim", "2", "-o", tmp_path / "r.st")
    assert r.code == 1 and "not 'cfc-ncp'" in r.err
    r = cli("reduce", trained_xor["ltc"], "--dim", "4", "-o", tmp_path / "r.st")
    assert r.code == 1 and "not 'ltc'" in r.err
    assert not (tmp_path / "r.st").exists()
    ckpt, _, _ = _fixture(RNN, task_record("pmnist"), monkeypatch)
    with pytest.raises(CfcError, match="at most the state size 12"):
        reduce_op.reduce(ckpt, ReduceConfig(method="pod-deim", dim=13))
    with pytest.raises(ConfigError, match="method must be one of"):
        reduce_op.reduce(ckpt, ReduceConfig(method="pca", dim=3))
