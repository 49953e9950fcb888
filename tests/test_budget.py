"""--max-drop budgets on prune, reduce and quantize (cfctool.ops.budget): the setting found is
the most compressed within the budget on the validation hold-out, and the record shows
every candidate."""

from __future__ import annotations

import dataclasses

import pytest

from cfctool import checkpoint
from cfctool.configs import PruneConfig, QuantizeConfig, ReduceConfig
from cfctool.ops import budget as budget_module


def _search(ckpt, section):
    found = ckpt.record["compression"][section]["budget"]
    return found, found["candidates"]


def _independent_val_accuracy(ckpt):
    from cfctool.engines import choose
    from cfctool.families.build import model_from_checkpoint
    from cfctool.metrics import split_metrics
    from cfctool.task_data import task_dataset

    val = task_dataset(ckpt, None, 0, "test").splits["val"]
    model = model_from_checkpoint(ckpt)
    return split_metrics(choose(ckpt, model).module, val, ckpt.task, 100)["accuracy"]


def test_prune_finds_the_largest_ratio_within_the_budget(learned_xor):
    from cfctool.ops.prune import prune

    base = checkpoint.load(learned_xor)
    out = prune(base, PruneConfig(ratio=0.95, max_drop=1.0))
    search, trials = _search(out, "pruning")
    chosen = search["chosen"]["ratio"]
    assert out.record["compression"]["pruning"]["ratio"] == chosen
    assert search["baseline_val_accuracy"] == pytest.approx(_independent_val_accuracy(base))
    assert 100 * (search["baseline_val_accuracy"] - _independent_val_accuracy(out)) <= 1.0
    # bisection: every tried ratio above the chosen one was over budget, and the interval left is <= 0.01
    above = [t["setting"]["ratio"] for t in trials if t["setting"]["ratio"] > chosen]
    assert above and all(not t["within"] for t in trials if t["setting"]["ratio"] > chosen)
    assert min(above) - chosen <= budget_module.RATIO_TOLERANCE
    assert trials[0]["setting"]["ratio"] == 0.95  # the upper bound is tried first
    assert out.record["history"][-1]["config"]["max_drop"] == 1.0
    assert search["val_samples"] == len(_val_split(base))


def _val_split(ckpt):
    from cfctool.task_data import task_dataset

    return task_dataset(ckpt, None, 0, "test").splits["val"]


def test_reduce_finds_the_smallest_dim_and_quantize_the_smallest_file(learned_xor):
    from cfctool.ops.quantize import quantize
    from cfctool.ops.reduce import reduce

    base = checkpoint.load(learned_xor)
    out = reduce(base, ReduceConfig(method="qdeim", interpolation="lstsq", dim=24, snapshots=256, max_drop=0.5))
    search, trials = _search(out, "reduction")
    dim = search["chosen"]["dim"]
    assert out.arch["hidden"] == dim and any(t["within"] and t["setting"]["dim"] == dim for t in trials)
    assert dim == 1 or any(not t["within"] and t["setting"]["dim"] == dim - 1 for t in trials)
    out = quantize(base, QuantizeConfig(max_drop=0.5, calib=64))
    search, trials = _search(out, "quantization")
    within = [t for t in trials if t["within"]]
    assert search["chosen"] == min(within, key=lambda t: (t["weight_bytes"], -t["val_accuracy"]))["setting"]
    assert out.record["compression"]["quantization"]["bits"] == search["chosen"]["bits"]


def test_a_budget_nothing_meets_names_the_closest(learned_xor, monkeypatch):
    from cfctool.errors import CfcError
    from cfctool.ops.prune import prune

    base = checkpoint.load(learned_xor)
    seen = []

    def fake_accuracy(self, ckpt):  # the input scores 1.0, every candidate less the more it is pruned
        ratio = (ckpt.record.get("compression") or {}).get("pruning", {}).get("ratio", 0.0)
        seen.append(ratio)
        return 1.0 if not seen[:-1] else 0.9 - 0.1 * ratio

    monkeypatch.setattr(budget_module.Budget, "measure", fake_accuracy)
    with pytest.raises(CfcError, match=r"no candidate stays within 2 points of the validation accuracy 100.00%: "
                                       r"the closest, --ratio 0\.1, reached 89\.00%"):
        prune(base, dataclasses.replace(PruneConfig(ratio=0.5), max_drop=2.0))


def test_budget_on_the_command_line_and_in_the_report(learned_xor, cli, tmp_path):
    out = tmp_path / "q.st"
    r = cli("quantize", learned_xor, "--max-drop", "0.5", "--calib", "64", "-o", out)
    assert r.code == 0, r.err
    assert "budget: validation accuracy" in r.err and "budget: --bits 4" in r.err
    r = cli("report", out)
    assert r.code == 0 and "quantization of" in r.out and "| candidate | val accuracy |" in r.out
    r = cli("prune", learned_xor, "--ratio", "0.5", "--max-drop", "-1", "-o", tmp_path / "p.st")
    assert r.code == 2 and "--max-drop is the most of the task's validation metric to lose" in r.err and "(got -1.0)" in r.err


def test_quantize_falls_back_to_float_products_most_sensitive_first(learned_xor, monkeypatch):
    from cfctool.engines import choose
    from cfctool.families.build import model_from_checkpoint
    from cfctool.ops.quantize import quantize

    base = checkpoint.load(learned_xor)
    calls = []

    def fake_accuracy(self, ckpt):  # integer candidates all lose 5 points; keeping a product float recovers
        calls.append(ckpt)
        q = (ckpt.record.get("compression") or {}).get("quantization")
        return 1.0 if q is None else (0.999 if q.get("float_units") else 0.95)

    monkeypatch.setattr(budget_module.Budget, "measure", fake_accuracy)
    out = quantize(base, QuantizeConfig(max_drop=0.5, calib=64))
    search, trials = _search(out, "quantization")
    sensitivity = search["sensitivity"]
    assert search["chosen"]["keep_float"] == max(sensitivity, key=sensitivity.get)  # one product, the most sensitive
    assert search["chosen"]["bits"] == 8 and [t["within"] for t in trials].count(True) == 1
    q = out.record["compression"]["quantization"]
    assert q["float_units"] == [search["chosen"]["keep_float"]]
    model = model_from_checkpoint(out)
    assert choose(out, model).name == "folded-int8"  # the int8 engine runs the mixed model


def test_the_int8_engine_runs_products_kept_in_float(learned_xor, tmp_path, cli):
    """--keep-float: those products run in float, the rest on integers; the real engine equals
    its float simulation, and keeping the most sensitive product float lowers the state error."""
    import torch

    from cfctool.families.build import model_from_checkpoint
    from cfctool.models.quantized import QuantFoldedCfC
    from cfctool.ops.quantize import quantize

    base = checkpoint.load(learned_xor)
    full = quantize(base, QuantizeConfig(calib=64))
    mixed = quantize(base, QuantizeConfig(calib=64, keep_float="cells.0.heads"))
    assert "rnn.cells.0.ff1.weight" not in mixed.encodings and "rnn.cells.0.backbone.0.weight" in mixed.encodings
    q = mixed.record["compression"]["quantization"]
    model = model_from_checkpoint(mixed)
    x = torch.randint(0, 2, (40, 10, 1)).float()
    real = QuantFoldedCfC(model, mixed, q["activation_scales"])(x)
    simulated = QuantFoldedCfC(model, mixed, q["activation_scales"], simulate=True)(x)
    assert torch.allclose(real, simulated, atol=1e-4)
    assert q["state_mse"]["mean"] < full.record["compression"]["quantization"]["state_mse"]["mean"]
    checkpoint.save(mixed, tmp_path / "m.st")
    r = cli("export", tmp_path / "m.st", "--format", "c", "-o", tmp_path / "c")
    assert r.code == 2 and "kept in float32" in r.err and not (tmp_path / "c").exists()
    r = cli("quantize", learned_xor, "--keep-float", "cells.0.nope", "-o", tmp_path / "x.st")
    assert r.code == 2 and "no product 'cells.0.nope' in this model; its products: cells.0.backbone.0" in r.err
