"""`prune`: exact sparsity, global vs local thresholds, masks through fine-tuning, structured
removal equal to the masked dense model, sparse storage, and the errors a user can hit."""

import pytest
import torch

from cfctool.checkpoint import Checkpoint, load, new_record, save
from cfctool.configs import PruneConfig
from cfctool.data.xor import generate
from cfctool.errors import CfcError, ConfigError
from cfctool.families.build import build_model, model_from_checkpoint
from cfctool.ops.evaluate import evaluate
from cfctool.ops.prune import prune, regions


def _selected_values(ckpt, scope="all"):
    sel = regions(ckpt, scope)
    return {n: ckpt.tensors[n][sel[n]] for n in sel}


@pytest.mark.parametrize("arch", ["cfc-deep", "cfc-ncp", "ltc"])
def test_global_unstructured_reaches_the_exact_ratio_with_one_threshold(trained_xor, arch):
    ckpt = load(trained_xor[arch])
    before = _selected_values(ckpt)
    n = sum(v.numel() for v in before.values())
    out = prune(ckpt, PruneConfig(ratio=0.7))
    after = {name: out.tensors[name][regions(ckpt)[name]] for name in before}
    zeros = sum(int((v == 0).sum()) for v in after.values())
    assert zeros == round(0.7 * n)
    removed = torch.cat([before[k][after[k] == 0].abs() for k in before])
    kept = torch.cat([before[k][after[k] != 0].abs() for k in before])
    assert removed.max() <= kept.min()  # one threshold across every tensor
    for k in before:  # kept weights are untouched
        assert torch.equal(after[k][after[k] != 0], before[k][after[k] != 0])
    if arch == "cfc-ncp":  # weights the wiring already removes are not counted
        assert n < sum(ckpt.tensors[k].numel() for k in before)


def test_local_unstructured_prunes_each_tensor_by_the_ratio(trained_xor):
    ckpt = load(trained_xor["cfc-deep"])
    before = _selected_values(ckpt)
    out = prune(ckpt, PruneConfig(ratio=0.4, global_threshold=False))
    for name, values in before.items():
        got = out.tensors[name][regions(ckpt)[name]]
        assert int((got == 0).sum()) == round(0.4 * values.numel()), name
        assert values[got == 0].abs().max() <= values[got != 0].abs().min()
    report = out.record["compression"]["pruning"]
    assert report["global"] is False and report["embedding_included"] is False
    assert 0.39 < report["sparsity"]["overall"] < 0.41


def test_recurrent_scope_prunes_only_the_state_columns(trained_xor):
    ckpt = load(trained_xor["cfc"])
    out = prune(ckpt, PruneConfig(ratio=0.5, scope="recurrent"))
    w0, w1 = ckpt.tensors["rnn.cells.0.backbone.0.weight"], out.tensors["rnn.cells.0.backbone.0.weight"]
    n_in = w0.shape[1] - ckpt.arch["hidden"]
    assert torch.equal(w0[:, :n_in], w1[:, :n_in])  # input columns untouched
    assert int((w1[:, n_in:] == 0).sum()) == round(0.5 * w0[:, n_in:].numel())
    assert torch.equal(out.tensors["rnn.cells.0.ff1.weight"], ckpt.tensors["rnn.cells.0.ff1.weight"])


def test_pruned_weights_stay_zero_through_fine_tuning(learned_xor):
    ckpt = load(learned_xor)
    out = prune(ckpt, PruneConfig(ratio=0.85, finetune=1, lr=1e-2))
    pruned_only = prune(ckpt, PruneConfig(ratio=0.85))
    result = out.record["compression"]["pruning"]["finetune_result"]
    assert result["kept_epoch"] >= 1  # fine-tuning did change the weights
    changed = 0
    for name in regions(ckpt):
        was_pruned = pruned_only.tensors[name] == 0
        assert (out.tensors[name][was_pruned] == 0).all(), name  # exactly zero, momentum notwithstanding
        changed += int((out.tensors[name][~was_pruned] != pruned_only.tensors[name][~was_pruned]).sum())
    assert changed > 0
    assert [h["command"] for h in out.record["history"]] == ["train", "prune"]


def test_a_second_pass_keeps_the_first_pass_zeros_through_fine_tuning(learned_xor):
    """Pruning the backbone after the heads: fine-tuning holds both passes' zeros, and the
    heads' zeros (outside the second pass's scope) do not grow back."""
    first = prune(load(learned_xor), PruneConfig(ratio=0.8, scope="heads"))
    second = prune(first, PruneConfig(ratio=0.9, scope="backbone", finetune=1, lr=1e-2))
    assert second.record["compression"]["pruning"]["finetune_result"]["kept_epoch"] >= 1
    for name, t in first.tensors.items():
        if name.split(".")[-2:-1] and name.split(".")[-2] in ("ff1", "ff2", "time_a", "time_b") and t.dim() == 2:
            assert (second.tensors[name][t == 0] == 0).all(), name
            assert not torch.equal(second.tensors[name], t), name  # the rest was fine-tuned


def _token_checkpoint(arch_name="cfc"):
    task = {"dataset": "imdb", "input": {"kind": "tokens", "vocab_size": 40, "pad_id": 0, "oov_id": 1},
            "output": {"kind": "classification", "size": 2, "per_step": False},
            "preprocessing": {"seq_len": 10, "vocab_words": 38}}
    arch = dict(name=arch_name, hidden=9, mode="default", backbone_widths=[7, 6], backbone_activation="silu",
                backbone_dropout=0.0, mixed_memory=False, embedding_dim=8, head_activation="lecun_tanh")
    torch.manual_seed(1)
    model = build_model(arch, task)
    return Checkpoint(tensors=dict(model.state_dict()), record=new_record(arch, task))


def _masked_dense(ckpt, pruned):
    """The input model with every connection that reads a removed unit set to zero."""
    from cfctool.families import get

    tensors = {k: v.clone() for k, v in ckpt.tensors.items()}
    for group in get(ckpt.arch["name"]).unit_groups(ckpt.arch, ckpt.tensors):
        gone = pruned.record["compression"]["pruning"]["units"].get(group.name, {}).get("removed", [])
        for name, dim, offset, role in group.slices:
            if role in ("next", "recurrent") and gone and name.endswith("weight"):
                tensors[name].index_fill_(dim, torch.tensor(gone) + offset, 0.0)
    return ckpt.derive(tensors=tensors)


@pytest.mark.parametrize("scope", ["all", "embedding", "heads"])
def test_structured_pruning_equals_the_masked_dense_model(scope, tmp_path):
    ckpt = _token_checkpoint()
    out = prune(ckpt, PruneConfig(ratio=0.5, structured=True, scope=scope, global_threshold=False))
    units = out.record["compression"]["pruning"]["units"]
    if scope == "all":
        assert out.arch["hidden"] == 5 and out.arch["backbone_widths"] == [3, 3]  # round(4.5) = 4 of 9 removed
    elif scope == "embedding":
        assert out.arch["embedding_dim"] == 4 and out.tensors["embedding.weight"].shape == (40, 4)
    else:
        assert out.arch["hidden"] == 5 and out.arch["backbone_widths"] == [7, 6]
    assert all(len(u["removed"]) == u["before"] - u["after"] for u in units.values())
    save(out, tmp_path / "s.st")
    small = model_from_checkpoint(load(tmp_path / "s.st"))
    dense = model_from_checkpoint(_masked_dense(ckpt, out))
    x = torch.randint(0, 40, (6, 10))
    mask = torch.arange(10).unsqueeze(0) < torch.tensor([10, 4, 7, 1, 10, 9]).unsqueeze(1)
    with torch.no_grad():
        want = dense(x, None, mask)
        assert (small(x, None, mask) - want).abs().max() <= 1e-5
        assert (model_from_checkpoint(ckpt)(x, None, mask) - want).abs().max() > 1e-3  # something was removed
    from cfctool.models.inference import FoldedCfC

    assert (FoldedCfC(small)(x, None, mask) - want).abs().max() <= 1e-5  # the folded engine runs it too


@pytest.mark.parametrize("arch", ["cfc-deep", "cfc-ncp"])
def test_structured_pruning_of_xor_models_keeps_outputs_and_shrinks(trained_xor, arch):
    ckpt = load(trained_xor[arch])
    out = prune(ckpt, PruneConfig(ratio=0.5, structured=True, criterion="l2"))
    before = model_from_checkpoint(ckpt)
    after = model_from_checkpoint(out)
    assert sum(p.numel() for p in after.parameters()) < sum(p.numel() for p in before.parameters())
    if arch == "cfc-ncp":
        assert sum(out.arch["ncp_layers"]) == out.arch["hidden"] < ckpt.arch["hidden"]
        assert out.tensors["rnn.cells.1.sparsity_mask"].shape[1] == out.arch["ncp_layers"][0] + out.arch["ncp_layers"][1]
    batch = generate(out.task, "test", 50)
    with torch.no_grad():
        want = model_from_checkpoint(_masked_dense(ckpt, out))(batch.x, batch.dt, batch.mask)
        assert (after(batch.x, batch.dt, batch.mask) - want).abs().max() <= 1e-5


def test_sparse_storage_round_trips_exactly_and_shrinks_the_file(trained_xor, tmp_path):
    ckpt = load(trained_xor["cfc-deep"])
    dense = prune(ckpt, PruneConfig(ratio=0.9))
    sparse = prune(ckpt, PruneConfig(ratio=0.9, storage="sparse"))
    save(dense, tmp_path / "d.st")
    save(sparse, tmp_path / "s.st")
    back = load(tmp_path / "s.st")
    assert {s["codec"] for s in back.encodings.values()} == {"sparse"}
    for name, t in dense.tensors.items():
        assert torch.equal(back.tensors[name], t), name
    from safetensors import safe_open

    def payload(path):  # tensor bytes (this tiny model's record would dominate the file)
        with safe_open(str(path), "pt") as f:
            return sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())

    assert payload(tmp_path / "s.st") < 0.35 * payload(tmp_path / "d.st")
    report = evaluate(back)  # exact decoding: the folded engine, not a simulation
    assert report["engine"] == "folded" and "dense kernels" in report["engine_note"]
    assert report["accuracy"] == pytest.approx(evaluate(dense)["accuracy"])
    assert report["sparsity"] == pytest.approx(0.9, abs=0.01) and "sparsity_per_tensor" in report
    assert report["normalised_accuracy"] == pytest.approx(
        report["accuracy"] ** 2 / torch.log(torch.tensor(float(report["nonzero_params"]))).item())


def test_prune_errors(trained_xor, tmp_path, cli):
    from cfctool.configs import QuantizeConfig
    from cfctool.ops.quantize import quantize

    src = trained_xor["cfc"]
    for ratio, msg in (("1.0", "would remove"), ("-0.1", "must be in")):
        r = cli("prune", src, "--ratio", ratio, "-o", tmp_path / "p.st")
        assert r.code == 2 and "ratio" in r.err and msg in r.err and not (tmp_path / "p.st").exists()
    r = cli("prune", src, "-o", tmp_path / "p.st")
    assert r.code == 2 and "--ratio is required" in r.err
    q = quantize(load(src), QuantizeConfig(scheme="dynamic"))
    save(q, tmp_path / "q.st")
    r = cli("prune", tmp_path / "q.st", "--ratio", "0.5", "--structured", "-o", tmp_path / "p.st")
    assert r.code == 1 and "quantized" in r.err and "prune its fp32 original" in r.err
    r = cli("prune", trained_xor["cfc-ncp"], "--ratio", "0.5", "--scope", "backbone", "-o", tmp_path / "p.st")
    assert r.code == 1 and "no backbone" in r.err
    with pytest.raises(CfcError, match="structured pruning is not available for 'ltc'"):
        prune(load(trained_xor["ltc"]), PruneConfig(ratio=0.5, structured=True))
    with pytest.raises(CfcError, match="no token embedding"):
        prune(load(src), PruneConfig(ratio=0.5, scope="embedding"))
    with pytest.raises(ConfigError, match="use --scope heads"):
        prune(load(src), PruneConfig(ratio=0.5, structured=True, scope="recurrent"))
    assert not (tmp_path / "p.st").exists()
    r = cli("prune", src, "--ratio", "0.5", "--local", "-o", tmp_path / "p.st")
    assert r.code == 0, r.err
    assert load(tmp_path / "p.st").record["compression"]["pruning"]["global"] is False
    info = cli("info", tmp_path / "p.st")
    assert info.code == 0 and "pruned unstructured local 50% of all" in info.out and "weight sparsity 50.0%" in info.out


def test_unstructured_pruning_reaches_the_ode_rnn_matrix():
    from cfctool.data.mnist import task_record

    arch = {"name": "ode-rnn", "hidden": 10, "gamma": 0.01, "solver": "euler", "ode_dt": 0.1}
    ckpt = _built(arch, task_record("pmnist"))
    out = prune(ckpt, PruneConfig(ratio=0.5))
    assert "rnn.W" in out.record["compression"]["pruning"]["tensors"]
    assert out.record["compression"]["pruning"]["sparsity"]["per_tensor"]["rnn.W"] > 0.3


def _built(arch, task):
    torch.manual_seed(0)
    model = build_model(arch, task)
    return Checkpoint(tensors=dict(model.state_dict()), record=new_record(arch, task))
