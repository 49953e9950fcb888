"""Every benchmark script runs: a seconds-long smoke run of each on tiny XOR checkpoints (or a
slice of the real data), its results written to a temporary folder and read back. A script
broken by a change in the library fails here, not months later in a user's shell."""

import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]  # on sys.path (pytest's pythonpath), as for python -m benchmarks.NAME

SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in ("__init__", "common"))


@pytest.fixture
def results(tmp_path, monkeypatch):
    """Where the scripts write their YAML (not the committed benchmarks/results/)."""
    out = tmp_path / "results"
    monkeypatch.setenv("CFCTOOL_BENCH_RESULTS", str(out))
    monkeypatch.chdir(tmp_path)
    return out


def run(script: str, *args) -> None:
    importlib.import_module(f"benchmarks.{script}").main([str(a) for a in args])


def read(results: Path, name: str) -> dict:
    doc = yaml.safe_load((results / f"{name}.yaml").read_text())
    stamp = doc["provenance"]
    assert len(stamp["commit"].removesuffix("-dirty")) == 40 or stamp["commit"] == "unknown"
    assert stamp["cfctool_version"] == importlib.import_module("cfctool").__version__
    return doc


def test_every_script_has_a_smoke_test():
    tested = {name.removeprefix("test_").removesuffix("_smoke") for name in globals() if name.endswith("_smoke")}
    assert set(SCRIPTS) <= tested, f"benchmark scripts without a smoke test: {sorted(set(SCRIPTS) - tested)}"


def test_no_script_uses_sys_path_tricks_or_private_library_names():
    import re

    for script in SCRIPTS + ["common"]:
        text = (ROOT / "benchmarks" / f"{script}.py").read_text()
        assert "sys.path" not in text, script
        private = re.findall(r"from cfctool[\w.]* import [^\n]*\b_[a-z]\w*", text) + re.findall(r"cfctool\.\w+\._", text)
        assert not private, (script, private)


def test_cfc_speed_smoke(results):
    pytest.importorskip("ncps")
    run("cfc_speed", "--repeats", 1, "--threads", 1, "--batch", 2, "--steps", 4)
    doc = read(results, "cfc_speed")
    assert doc["max_abs_output_diff"] < 1e-5 and doc["results"]["threads_1"]["forward"]["speedup"] > 0


def test_engines_smoke(results, trained_xor):
    pytest.importorskip("ncps")
    run("engines", "--ckpt-dir", trained_xor["cfc"].parent, "--only", "cfc", "--threads", 1, "--repeats", 1,
        "--batches", 1, "--ltc-batches", 4)
    doc = read(results, "engines")
    entry = doc["results"]["cfc"]
    assert entry["runs"][0]["our_engines_identical_predictions"] is True
    assert {"cfctool-torch", "cfctool-torch-loop", "ncps"} <= set(entry["runs"][0]["engines"])
    assert doc["ltc"]["cfc"][0]["batch"] == 4


def test_prune_smoke(results, trained_xor):
    run("prune", trained_xor["cfc"], "--methods", "unstructured-global", "structured-local", "--ratios", 0.5,
        "--speed-batches", 1, "--repeats", 1)
    cells = read(results, "prune")["runs"]["xor/cfc"]["cells"]
    assert cells["unstructured-global@0.5"]["nonzero_params"] < cells["unpruned"]["nonzero_params"]
    assert cells["unstructured-global@0.5"]["file_bytes_sparse"] > 0
    assert cells["structured-local@0.5"]["speedup"] > 0 and cells["structured-local@0.5"]["units"]


def test_quantize_smoke(results, trained_xor, tmp_path):
    run("quantize", trained_xor["cfc"], "--variants", "static", "--calib", 16, "--batches", 1, "--repeats", 1,
        "--batch-size", 32, "--whole-accuracy", "--out-dir", tmp_path / "q")
    doc = read(results, "quantize")
    assert doc["runs"] and list((tmp_path / "q").glob("*.st"))
    run_ = next(iter(doc["runs"].values()))
    rows = run_["rows"]
    # timed on one batch, accuracy over the whole test split (the tiny fixture's 128 rows)
    assert run_["workload"]["items"] == 32
    assert rows["static"]["accuracy_samples"] == rows["fp32 folded"]["accuracy_samples"] == 128
    assert rows["fp32 eager"]["accuracy"] == rows["fp32 folded"]["accuracy"]


def test_reduce_smoke(results, trained_xor):
    run("reduce", trained_xor["cfc"], "--cells", "svd@4", "--snapshots", 32, "--batch-size", 64)
    run("reduce", trained_xor["cfc"], "--cells", "svd@3", "--snapshots", 32, "--batch-size", 64, "--key", "xor/other")
    doc = read(results, "reduce")
    assert set(doc["runs"]) == {"xor/cfc", "xor/other"}  # another model of the same kind keeps its own cells
    assert "svd@3" in doc["runs"]["xor/other"]["cells"] and "svd@3" not in doc["runs"]["xor/cfc"]["cells"]


def test_distill_smoke(results, trained_xor, tmp_path):
    run("distill", "--teacher", f"xor={trained_xor['cfc-deep']}", "--only", "xor-ncp8", "--epochs", 1,
        "--out-dir", tmp_path / "d")
    doc = read(results, "distill")
    entry = doc["runs"]["xor-ncp8"]
    assert entry["with_teacher"] and entry["rnn_compression"] > 0 and 0 <= entry["test_accuracy"] <= 1


def test_runs_smoke(results, trained_xor):
    run("runs", f"tiny={trained_xor['cfc']}")
    assert "tiny" in read(results, "runs")["runs"]


@pytest.mark.slow
def test_scale_smoke(results):
    run("scale", "--dataset", "xor", "--steps", 4, "--warmup", 1, "--batch-size", 16, "--repeats", 1,
        "--processes", 1)
    doc = read(results, "scale")
    assert doc["samples_per_s"][1] > 0 and doc["speedup"][1] == 1.0


def test_baselines_smoke(results, data_dir, tmp_path):
    run("baselines", "--only", "person_activity-cfc", "--epochs", 1, "--max-steps", 2, "--threads", 1,
        "--data", data_dir, "--out-dir", tmp_path / "b")
    doc = read(results, "baselines")
    entry = doc["runs"]["person_activity-cfc"]
    assert entry["epochs"] == 1 and 0 <= entry["test_accuracy"] <= 1 and (tmp_path / "b" / "person_activity-cfc.st").is_file()


@pytest.mark.slow
def test_ode_rnn_diagnosis_smoke(results, data_dir, tmp_path):
    from cfctool import checkpoint
    from cfctool.configs import resolve
    from cfctool.ops.train import train

    path = tmp_path / "tiny-ode-rnn.st"
    checkpoint.save(train(resolve("pmnist", "ode-rnn", overrides={
        "data_dir": str(data_dir), "hidden": 8, "epochs": 1, "max_steps": 1, "batch_size": 16,
        "max_test_samples": 16, "threads": 1})), path)
    run("ode_rnn_diagnosis", path, "--data", data_dir, "--samples", 16, "--probe", 8)
    entry = read(results, "ode-rnn-diagnosis")["checkpoints"]["tiny-ode-rnn"]
    assert 0 <= entry["saturation_by_step"][784]["saturated_share"] <= 1 and entry["spectrum"]["euler_growing_modes"] >= 0


@pytest.mark.slow
def test_tables_smoke(tmp_path):
    """Every table of the README and the docs is what the committed results say (rerun
    python -m benchmarks.tables), and every table is on some page."""
    run("tables", "--check")
    stale = tmp_path / "scaling.md"
    stale.write_text((ROOT / "docs/results/scaling.md").read_text().replace("<!-- /table:scale -->",
                                                                          "stale row\n<!-- /table:scale -->"))
    with pytest.raises(SystemExit, match="out of date"):
        run("tables", "--check", stale)
    unknown = tmp_path / "unknown.md"
    unknown.write_text("<!-- table:no_such_table -->\n<!-- /table:no_such_table -->\n")
    with pytest.raises(SystemExit, match="unknown table 'no_such_table'"):
        run("tables", "--check", unknown)


def test_study_report_smoke(results, trained_xor):
    run("study_report", "tiny", trained_xor["cfc"], trained_xor["cfc-ncp"])
    rows = read(results, "tiny")["checkpoints"]
    assert [r["arch"] for r in rows] == ["cfc", "cfc-ncp"] and all(r["params"] > 0 for r in rows)


@pytest.mark.parametrize("makefile,target", [("benchmarks/imdb.mk", "quantization"), ("benchmarks/imdb.mk", "pipeline-results"),
                                             ("benchmarks/mor.mk", "tables"), ("benchmarks/quickstart.mk", "results")])
def test_study_makefiles_resolve(makefile, target, tmp_path):
    """Each results target parses and plans its commands (a dry run, nothing trained)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(["make", "-n", "-f", makefile, target, f"OUT={tmp_path}", "DATA=/nonexistent"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "-m benchmarks." in r.stdout


def test_examples_call_only_cfctool():
    """The examples are what a user copies: their recipes run cfctool (and the shell), no repository scripts."""
    for makefile in (ROOT / "examples").glob("*.mk"):
        recipes = [line for line in makefile.read_text().splitlines() if line.startswith("\t")]
        assert recipes, makefile
        assert not [line for line in recipes if "benchmarks" in line or "python" in line.lower()], makefile


def test_committed_reference_checkpoints_match_their_manifest():
    """benchmarks/checkpoints/SHA256SUMS (`sha256sum -c` format) lists every committed
    checkpoint and sidecar, and each file still has its recorded hash."""
    import hashlib

    folder = ROOT / "benchmarks" / "checkpoints"
    listed = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.lstrip("*")] = digest
    present = {p.name for p in folder.iterdir() if p.suffix in (".st", ".yaml")}
    assert set(listed) == present, "update benchmarks/checkpoints/SHA256SUMS (sha256sum *.st *.yaml > SHA256SUMS)"
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_edge_smoke(results, trained_xor):
    import shutil

    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc)")
    pytest.importorskip("ncps")
    from cfctool import checkpoint
    from cfctool.configs import QuantizeConfig
    from cfctool.ops.quantize import quantize

    int8 = trained_xor["cfc"].parent / "cfc-int8-edge.st"
    checkpoint.save(quantize(checkpoint.load(trained_xor["cfc"]), QuantizeConfig(calib=16)), int8)
    run("edge", "--model", f"xor-cfc={trained_xor['cfc']}", "--model", f"xor-int8={int8}", "--sequences", 4,
        "--repeats", 1)
    doc = read(results, "edge")
    fp32, q = doc["latency"]["xor-cfc"], doc["latency"]["xor-int8"]
    assert set(fp32["us_per_step"]) == {"c (fp32)", "folded", "ncps"} and fp32["us_per_step"]["c (fp32)"]["median"] > 0
    assert set(q["us_per_step"]) == {"c (int8)", "folded-int8", "c (fp32, decoded)", "ncps"}
    assert fp32["accuracy"]["c (fp32)"] == fp32["accuracy"]["folded"]
    spans = fp32["c_speedup_interval"]  # one pass: no side can be called
    assert set(spans) == {"folded", "ncps"} and all(v["verdict"] == "no measurable difference" for v in spans.values())
    if shutil.which("arm-none-eabi-gcc") and shutil.which("arm-none-eabi-size"):
        run("edge", "--m4", f"xor-int8={int8}")
        m4 = read(results, "edge")["m4"]["xor-int8"]
        assert m4["encoding"] == "int8" and m4["flash_bytes"] >= m4["weights_bytes"] and m4["bss"] == 0
        assert m4["fits"]["256 KB flash / 64 KB RAM"]


def test_budget_smoke(results, learned_xor, tmp_path):
    run("budget", learned_xor, "--methods", "reduce", "quantize", "--max-drop", 1, "--batches", 1, "--repeats", 1,
        "--out-dir", tmp_path)
    runs = read(results, "budget")["runs"]
    reduce, quantize = runs["xor-reduce"], runs["xor-quantize"]
    assert reduce["found"]["dim"] < 63 and quantize["found"]["bits"] in (4, 8)
    for entry in (reduce, quantize):
        assert entry["val_accuracy"]["original"] - entry["val_accuracy"]["compressed"] <= 0.01 + 1e-9
        assert entry["file_bytes"]["compressed"] < entry["file_bytes"]["original"] and entry["speedup"] > 0


def test_budget_over_seeds_smoke(results, tmp_path):
    """--with: the search holds the mean over the seeds' models; every model's test accuracy at
    the setting found is kept, and the table gives their mean ± sd with n."""
    from cfctool import checkpoint
    from cfctool.ops.train import train
    from tests.helpers import tiny_run

    paths = []
    for seed in (0, 1):
        paths.append(tmp_path / f"s{seed}" / "xor.st")
        paths[-1].parent.mkdir()
        checkpoint.save(train(tiny_run("cfc", seed=seed, epochs=2)), paths[-1])
    run("budget", paths[0], "--with", paths[1], "--methods", "reduce", "--max-drop", 30, "--batches", 1,
        "--repeats", 1, "--out-dir", tmp_path)
    entry = read(results, "budget")["runs"]["xor-reduce-seeds2"]
    seeds = entry["seeds"]
    assert seeds["checkpoints"] == [str(p) for p in paths] and len(seeds["test_accuracy_each"]["compressed"]) == 2
    assert seeds["test_accuracy_each"]["compressed"][0] == entry["test_accuracy"]["compressed"]
    from benchmarks import tables

    page = tables.budget()  # (it reads the results this test wrote)
    assert "xor-reduce-seeds2" in page and "n = 2" in page and "validation drop" in page


def test_seeds_smoke(results, tmp_path):
    """Runs of one recipe group into one entry with their mean ± sd; another recipe is its own entry."""
    import statistics

    from cfctool import checkpoint
    from cfctool.ops.train import train
    from tests.helpers import tiny_run

    paths = []
    for seed, hidden in ((0, 8), (1, 8), (2, 8), (0, 6)):
        paths.append(tmp_path / f"h{hidden}-s{seed}.st")
        checkpoint.save(train(tiny_run("cfc", seed=seed, hidden=hidden)), paths[-1])
    run("seeds", *paths)
    groups = read(results, "seeds")["groups"]
    assert len(groups) == 2 and all(name.startswith("xor-cfc-default-") for name in groups)  # told apart
    three = next(g for g in groups.values() if g["n"] == 3)
    accuracies = [checkpoint.load(p).record["metrics"]["accuracy"] for p in paths[:3]]
    assert [r["seed"] for r in three["runs"]] == [0, 1, 2]
    assert three["test_accuracy"]["mean"] == pytest.approx(statistics.mean(accuracies), abs=1e-6)
    assert three["test_accuracy"]["sd"] == pytest.approx(statistics.stdev(accuracies), abs=1e-6)
    from benchmarks import tables

    page = tables.seeds()
    assert "| 3 |" in page and "| 1 |" in page


def test_deep_search_smoke(results, tmp_path):
    """A finished probe (its baselines entry) and a stopped one (only its training state) both
    come back with their curves; only the finished one has a test accuracy, and the table says so."""
    from cfctool.ops.train import train
    from tests.helpers import tiny_run

    results.mkdir()
    (results / "baselines.yaml").write_text(yaml.safe_dump({"runs": {"imdb-cfc-deep-lr25": {
        "epoch_log": [{"epoch": 1, "train_loss": 0.7, "val_accuracy": 0.6}, {"epoch": 2, "train_loss": 0.5,
                                                                             "val_accuracy": 0.8}],
        "test_accuracy": 0.79, "best_epoch": 2, "sec_per_epoch": 1.0, "threads": 1, "device": "cpu",
        "command": "python -m benchmarks.baselines --only imdb-cfc-deep-lr25"}}}))
    states = tmp_path / "states"
    states.mkdir()
    train(tiny_run("cfc", keep_state=True), output=states / "imdb-cfc-deep-lr1e3.st")  # stands in for a stopped probe
    run("deep_search", "--states", states, "--plot")
    probes = read(results, "deep_search")["probes"]
    assert list(probes) == ["imdb-cfc-deep-lr1e3", "imdb-cfc-deep-lr25"]
    stopped, finished = probes["imdb-cfc-deep-lr1e3"], probes["imdb-cfc-deep-lr25"]
    assert stopped["status"] == "stopped after epoch 1" and stopped["test_accuracy"] is None
    assert len(stopped["epochs"]) == 1 and 0 <= stopped["best_val_accuracy"] <= 1
    assert finished["status"] == "finished" and finished["best_val_accuracy"] == 0.8 and finished["test_accuracy"] == 0.79
    assert finished["changed_from_preset"] == {"lr": 2.5e-4, "lr_decay": 0.85}
    assert (results / "deep-search.png").stat().st_size > 0
    from benchmarks.tables import deep_search
    table = deep_search()
    assert "| imdb-cfc-deep-lr1e3 | reference: lr 0.001, lr_decay 0.8 | 1 (stopped) |" in table
    assert "**79.00%**" in table and "— (stopped)" in table


def test_distill_study_table_and_plot(results):
    """The study's sizes: a pair with and without the teacher gives the difference; a size
    whose runs are missing says so; the plot draws what there is."""
    from benchmarks.distill import plot_study
    from benchmarks.tables import distill_study

    base = {"teacher": "t.st", "teacher_accuracy": 0.86, "teacher_rnn_params": 559104, "rnn_params": 65792,
            "rnn_compression": 8.5, "seed": 0, "threads": 1, "what_else_ran": "nothing",
            "machine": {"cpu": "x", "cores": 2}, "command": "python -m benchmarks.distill --only imdb-8x-seed"}
    results.mkdir()
    (results / "distill.yaml").write_text(yaml.safe_dump({"runs": {
        "imdb-8x-seed": {**base, "test_accuracy": 0.85, "with_teacher": True},
        "imdb-8x-seed-alone": {**base, "test_accuracy": 0.80, "with_teacher": False},
        "imdb-8x-reference-alone": {**base, "test_accuracy": 0.87, "with_teacher": False}}}))
    table = distill_study()
    row = next(line for line in table.splitlines() if line.startswith("| 8x"))
    assert "| 85.00% | 80.00% | +5.00 | — | 87.00% | — |" in row
    assert not any(line.startswith("| 15x") for line in table.splitlines())  # never run: no row
    assert plot_study(results / "study.png").stat().st_size > 0


def test_own_data_smoke(results, data_dir, tmp_path):
    """examples/own-data/Makefile on slices of the real files at one epoch, through the
    benchmark script that records it: the user's conversion, then train, eval, quantize, prune
    and export C for both benchmarks, and each command's time and peak memory."""
    import json
    import shutil

    import numpy as np

    if not (data_dir / "physionet2012" / "set-a.tar.gz").is_file() or not (data_dir / "walker2d").is_dir():
        pytest.skip(f"PhysioNet 2012 or Walker2d not in {data_dir}")
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("needs make and a C compiler")
    out = tmp_path / "out"
    run("own_data", "--data", data_dir, "--out", out, "--epochs", 1, "--also", "the test suite", "--make-args",
        "STAYS=500", "SETS=a", "ROLLOUTS=40", "FINETUNE=0")
    pn = json.loads((out / "physionet-int8.eval.json").read_text())
    wk = json.loads((out / "walker2d-pruned.eval.json").read_text())
    assert pn["samples"] == 100 and 0.3 < pn["auc"] <= 1.0  # one epoch on 400 stays: any ranking will do
    # the data's units: below the test targets' own variance (predicting their mean), after one epoch
    test_y = np.load(out / "walker-test.npz")["y"]
    assert wk["samples"] > 10_000 and wk["mse_units"] < test_y.var(axis=(0, 1)).mean()
    assert (out / "physionet-c" / "physionet.c").is_file() and (out / "walker2d-c" / "walker2d.c").is_file()
    doc = read(results, "own-data")
    for name in ("physionet", "walker2d"):
        r = doc["runs"][name]
        assert set(r["test"]) == {"fp32", "int8", "pruned"} and r["c_flash_bytes"] > 1000
        assert all(r["commands"][verb]["peak_rss_mb"] > 50 for verb in ("train", "quantize", "prune", "export"))
    assert doc["runs"]["walker2d"]["test"]["pruned"]["mse_units"] == wk["mse_units"]
    assert doc["runs"]["physionet"]["test"]["int8"]["auc"] == pn["auc"] and doc["what_else_ran"] == "the test suite"


def test_stream_smoke(results, tmp_path):
    """Tiny tables: the large one under an address-space limit, the small one both ways."""
    pytest.importorskip("pyarrow")
    run("stream", "--gb", 0.003, "--small-gb", 0.002, "--repeats", 1, "--work", tmp_path / "work", "--features", 4,
        "--hidden", 8)
    doc = read(results, "stream")
    assert doc["tables"]["large"]["bytes"] >= 0.003e9 and doc["large"]["address_space_limit_gb"] == 2.0
    assert doc["large"]["peak_rss_mb"] > 50 and doc["large"]["rows_per_s"] > 0
    counts = [sum(doc["small"][path]["runs"][0]["sequences"].values()) for path in ("stream", "in_memory")]
    assert counts[0] == counts[1] == doc["tables"]["small"]["sequences"]  # every sequence, split either way


def test_sparse_int_smoke(results, trained_xor):
    run("sparse_int", trained_xor["cfc"], "--ratio", 0.9, "--finetune", 0, "--scope", "local", "--max-samples", 64)
    doc = read(results, "sparse-int")
    entry = doc["results"]["cfc-local0.9"]
    assert entry["pruned int8"]["recurrent_weight_bytes"] < entry["dense int8"]["recurrent_weight_bytes"]
    assert any(c.startswith("sparse-int8/") for c in entry["pruned int8"]["codecs"])
    assert entry["pruned int8"]["engine"] == "folded-int8" and 0 < entry["recurrent_ratio_to_dense_int8"] < 1


def test_c_products_smoke(results):
    run("c_products", "--repeats", 1, "--reps", 10, "--densities", "0.25", "--kinds", "fp32,int8")
    entry = read(results, "c-products")["runs"]["imdb-cfc-step"]
    assert set(entry["kinds"]) == {"fp32", "int8"} and entry["shapes"] == [[64, 192], [64, 64], [576, 64]]
    for rows in entry["kinds"].values():
        assert [r["density"] for r in rows] == [0.25]
        assert abs(rows[0]["nonzeros"] / 53248 - 0.25) < 0.02  # the seeded masks keep a quarter of the weights
        assert rows[0]["dense_us"]["median"] > 0 and rows[0]["sparse_us"]["median"] > 0


def test_replicate_smoke(results, tmp_path, monkeypatch):
    """One part run in a scratch clone: its steps' file read, checked against the recorded value,
    timed and merged into replication.yaml; a value off the record is flagged."""
    import benchmarks.replicate as rep

    want = rep.recorded(rep.Expect("x", "", "", "baselines", "runs.person_activity-cfc.test_accuracy"))
    parts = tuple(
        rep.Part("person-activity-cfc", name, "a scratch part", (f"mkdir -p {rep.OUT}",
                 f"echo '{{\"accuracy\": {value}}}' > {rep.OUT}/{name}.json"),
                 (rep.Expect("accuracy", f"{rep.OUT}/{name}.json", "accuracy", "baselines",
                             "runs.person_activity-cfc.test_accuracy", 0.0001),))
        for name, value in (("same", want), ("off", want - 0.01)))
    monkeypatch.setattr(rep, "PARTS", parts)
    (tmp_path / "clone").mkdir()
    run("replicate", "--workdir", tmp_path / "clone", "--note", "the smoke test")
    got = read(results, "replication")["parts"]
    assert got["person-activity-cfc/same"]["match"] and not got["person-activity-cfc/off"]["match"]
    assert got["person-activity-cfc/same"]["values"] == {"accuracy": want} and got["person-activity-cfc/same"]["seconds"] >= 0
    assert got["person-activity-cfc/off"]["what_else_ran"] == "the smoke test"
