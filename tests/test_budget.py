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

    val = task_dataset(ckpt, None, "test").splits["val"]
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

    return task_dataset(ckpt, None, "test").splits["val"]


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

    def fake_accuracy(self, ckpt, val=None):  # the input scores 1.0, every candidate less the more it is pruned
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

    def fake_accuracy(self, ckpt, val=None):  # integer candidates all lose 5 points; keeping a product float recovers
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


def test_the_budget_and_fine_tuning_split_as_the_model_was_trained(data_dir):
    """A model trained with --seed 3 held out other rows than seed 0's: a compression run with
    its default --seed 0 must still measure its budget on the rows that model never saw."""
    import torch

    from cfctool.configs import DataConfig, resolve
    from cfctool.data.base import split_off_validation
    from cfctool.data.registry import load_dataset
    from cfctool.ops.train import train

    settings = {"epochs": 1, "max_steps": 1, "max_samples": 400, "hidden": 8, "seed": 3, "data_dir": str(data_dir)}
    ckpt = train(resolve("person_activity", "cfc", overrides=settings))
    found = budget_module.Budget(ckpt, 5.0, data_dir, lambda message: None).val
    full = load_dataset(DataConfig(dataset="person_activity", data_dir=str(data_dir), max_samples=400, val_fraction=0))
    fraction = ckpt.record["history"][0]["config"]["data"]["val_fraction"]
    _, seed3 = split_off_validation(full.splits["train"], fraction, 3)
    _, seed0 = split_off_validation(full.splits["train"], fraction, 0)
    assert torch.equal(found.x, seed3.x) and not torch.equal(found.x, seed0.x)


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    """One tiny XOR recipe trained with seeds 0, 1 and 2, and the same recipe wider (another recipe)."""
    from helpers import tiny_run

    from cfctool.ops.train import train

    folder = tmp_path_factory.mktemp("seeds")
    paths = []
    for seed in (0, 1, 2):
        paths.append(folder / f"s{seed}.st")
        checkpoint.save(train(tiny_run("cfc", seed=seed, epochs=4)), paths[-1])
    checkpoint.save(train(tiny_run("cfc", seed=1, epochs=4, hidden=12)), folder / "wider.st")
    return paths, folder / "wider.st"


def test_max_drop_with_other_seeds_holds_the_mean_drop(three_seeds, cli, tmp_path):
    """--max-drop-with: every candidate is made from each seed's model and measured on its own
    hold-out; the mean drop (checked here against each model pruned and measured on its own)
    decides, and the record keeps every value."""
    from cfctool.ops.prune import prune

    paths, _ = three_seeds
    out = tmp_path / "p.st"
    r = cli("prune", paths[0], "--ratio", "0.9", "--max-drop", "3", "--max-drop-with", paths[1],
            "--max-drop-with", paths[2], "-o", out)
    assert r.code == 0, r.err
    assert "budget: mean validation accuracy" in r.err and "3 seeds' models" in r.err and "over 3 seeds" in r.err
    search, trials = _search(checkpoint.load(out), "pruning")
    models = [checkpoint.load(p) for p in paths]
    baselines = [_independent_val_accuracy(m) for m in models]
    assert [m["baseline_val_accuracy"] for m in search["models"]] == pytest.approx(baselines, abs=1e-6)
    assert search["baseline_val_accuracy"] == pytest.approx(sum(baselines) / 3, abs=1e-6)
    for trial in trials:
        each = [_independent_val_accuracy(prune(m, PruneConfig(ratio=trial["setting"]["ratio"]))) for m in models]
        assert trial["val_accuracy_each"] == pytest.approx(each, abs=1e-6)
        drops = [100 * (b - v) for b, v in zip(baselines, each)]
        assert trial["drop_mean"] == pytest.approx(sum(drops) / 3, abs=1e-4)
        assert trial["within"] == (sum(drops) / 3 <= 3 + 1e-9)
    # the mean decided: seed 0's model alone would have judged some candidate the other way
    assert any(t["within"] != (100 * (baselines[0] - t["val_accuracy_each"][0]) <= 3) for t in trials)
    chosen = search["chosen"]["ratio"]
    assert any(t["within"] and t["setting"]["ratio"] == chosen for t in trials)
    # the history keeps the other seeds, and report still groups the output by recipe alone
    assert checkpoint.load(out).record["history"][-1]["config"]["max_drop_with"] == [str(paths[1]), str(paths[2])]


def test_max_drop_with_refuses_what_is_not_another_seed_of_the_recipe(three_seeds, cli, tmp_path):
    paths, wider = three_seeds
    out = tmp_path / "p.st"
    r = cli("prune", paths[0], "--ratio", "0.5", "--max-drop", "3", "--max-drop-with", wider, "-o", out)
    assert r.code != 0 and "not the input's recipe with another seed" in r.err and not out.exists()
    r = cli("prune", paths[0], "--ratio", "0.5", "--max-drop", "3", "--max-drop-with", paths[0], "-o", out)
    assert r.code != 0 and "the same seeds (0)" in r.err and not out.exists()
    r = cli("prune", paths[0], "--ratio", "0.5", "--max-drop-with", paths[1], "-o", out)
    assert r.code == 2 and "give --max-drop too" in r.err
    r = cli("prune", paths[0], "--ratio", "0.5", "--max-drop", "3", "--max-drop-with", paths[1], "-o", paths[1])
    assert r.code != 0 and not out.exists()
    assert checkpoint.load(paths[1]).record["history"][0]["seed"] == 1  # left as it was
    # from a config file: a list of paths; one path as text is refused, not read letter by letter
    config = tmp_path / "c.yaml"
    config.write_text(f"ratio: 0.5\nmax_drop: 3\nmax_drop_with: {paths[1]}\n")
    r = cli("prune", paths[0], "--config", config, "-o", out)
    assert r.code == 2 and "--max-drop-with is a list of checkpoint paths" in r.err
    config.write_text(f"ratio: 0.5\nmax_drop: 3\nmax_drop_with: [{paths[1]}]\n")
    r = cli("prune", paths[0], "--config", config, "--print-config")
    assert r.code == 0 and f"- {paths[1]}" in r.out


def test_report_shows_a_search_over_seeds_as_a_mean_with_its_spread(three_seeds, cli, tmp_path):
    paths, _ = three_seeds
    out = tmp_path / "r.st"
    r = cli("reduce", paths[0], "--method", "svd", "--dim", "6", "--max-drop", "50", "--max-drop-with", paths[1],
            "--max-drop-with", paths[2], "-o", out)
    assert r.code == 0, r.err
    search = checkpoint.load(out).record["compression"]["reduction"]["budget"]
    assert [m["split_seed"] for m in search["models"]] == [0, 1, 2]
    text = cli("report", out).out
    assert "the mean over 3 seeds' models, each on its own hold-out" in text
    first = search["candidates"][0]
    assert f"(sd {first['drop_sd']:.2f})" in text
