"""`bench` counts by hand, its accuracy against `eval`, its errors, and ONNX parity."""

import json
import os
from pathlib import Path

import pytest
import torch

from cfctool.checkpoint import load
from cfctool.families.build import build_model
from cfctool.ops.bench import bench, macs_per_sequence
from cfctool.ops.evaluate import evaluate

TASK = {"dataset": "xor", "input": {"kind": "features", "size": 3},
        "output": {"kind": "classification", "size": 2, "per_step": False}}


def test_macs_by_hand():
    cfc = build_model(dict(name="cfc", hidden=4, mode="default", backbone_units=5, backbone_layers=2,
                           backbone_activation="relu", backbone_dropout=0.0, mixed_memory=True), TASK)
    per_step = (3 + 4) * 5 + 5 * 5 + 4 * 4 * 5 + (3 * 16 + 4 * 16)  # backbone, heads, LSTM memory
    assert macs_per_sequence(cfc, 7) == 7 * per_step + 4 * 2
    ltc = build_model(dict(name="ltc", hidden=6, ode_unfolds=6), TASK)
    assert macs_per_sequence(ltc, 5) == 5 * (6 * 2 * 36 + 2 * 3 * 6) + 6 * 2
    ncp = build_model(dict(name="cfc-ncp", hidden=10, mode="default", sparsity=0.5, wiring_seed=1, motor=2,
                           mixed_memory=False), {**TASK, "output": {**TASK["output"], "per_step": True}})
    sizes = [len(c.ff1.bias) for c in ncp.rnn.cells]
    inputs = [3] + sizes[:-1]
    per_step = sum(4 * h * (i + h) for i, h in zip(inputs, sizes))
    assert macs_per_sequence(ncp, 4) == 4 * per_step + 4 * (2 * 2)  # per-step readout


def test_bench_accuracy_equals_eval_and_self_ratios(trained_xor):
    ckpt = load(trained_xor["cfc"])
    report = bench(ckpt, against=load(trained_xor["cfc"]), repeats=2, warmup=0, threads=1, batch_size=50)
    r = report["results"][0]
    assert r["accuracy"] == pytest.approx(evaluate(ckpt)["accuracy"])
    assert report["workload"]["items"] == 128 and report["workload"]["batches"] == 3
    assert r["split_seconds"]["min"] <= r["split_seconds"]["median"] <= r["split_seconds"]["max"]
    assert r["file_bytes"] == trained_xor["cfc"].stat().st_size
    q = report["ratios"][0]
    assert q["params_ratio"] == 1.0 and q["accuracy_delta"] == 0.0 and q["size_ratio"] == 1.0
    assert report["peak_rss_mb"] > 10


def test_bench_synthetic_workload(trained_xor):
    report = bench(load(trained_xor["ltc"]), seq_len=12, batches=2, batch_size=8, repeats=1, warmup=0)
    assert report["workload"] == {"items": 16, "batch_size": 8, "seq_len": 12, "batches": 2, "synthetic": True}
    assert report["results"][0]["accuracy"] is None


@pytest.mark.parametrize("args,message,code", [
    (["bench", "missing.st"], "no such checkpoint file", 1),
    (["bench", "CKPT", "--threads", "0"], "--threads must be >= 1", 2),
    (["bench", "CKPT", "--repeats", "0"], "--repeats must be >= 1", 2),
    (["bench", "CKPT", "--engine", "tensorrt"], "engine must be one of", 2),
    (["bench", "CKPT", "--split", "valid"], "'split' must be one of test, train (got 'valid')", 2),
    (["bench", "CKPT", "--seq-len", "0"], "--seq-len must be >= 1", 2),
    (["export", "CKPT", "--seq-len", "0", "-o", "m.onnx"], "--seq-len must be >= 1", 2),
    (["bench", "BAD"], "truncated", 1),
    (["bench", "CKPT", "--device", "tpu"], "'device' must be one of cpu, cuda (got 'tpu')", 2),
    (["bench", "CKPT", "-o", "/proc/report.yaml"], "cannot write", 1),
])
def test_bench_errors(cli, trained_xor, tmp_path, args, message, code):
    bad = tmp_path / "bad.st"
    bad.write_bytes(trained_xor["cfc"].read_bytes()[:300])
    args = [str(trained_xor["cfc"]) if a == "CKPT" else str(bad) if a == "BAD" else a for a in args]
    before = trained_xor["cfc"].read_bytes()
    r = cli(*args)
    assert r.code == code and r.err.startswith("error: ") and message in r.err, r.err
    assert trained_xor["cfc"].read_bytes() == before


def test_bench_cli_json_and_report_file(cli, trained_xor, tmp_path):
    out = tmp_path / "report.yaml"
    r = cli("bench", trained_xor["cfc-ncp"], "--cpu", "--repeats", "1", "--json", "-o", out)
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["results"][0]["engine"] == "folded" and out.exists()  # the engine that ran, by name
    # and the machine: ratios differ between CPUs, so a report names the one it ran on
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["cores"] == os.cpu_count()
    assert report["machine"]["cpu"] and report["machine"]["cpu"] != "unknown"


@pytest.mark.parametrize("arch,graph", [("cfc", "scan"), ("cfc-deep", "scan"), ("cfc-ncp", "scan"),
                                        ("ltc", "unrolled")])
@pytest.mark.slow
def test_onnx_export_matches_pytorch(trained_xor, tmp_path, arch, graph):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    import onnxruntime as ort

    from cfctool.data.xor import generate
    from cfctool.families.build import model_from_checkpoint
    from cfctool.ops.export import export_onnx, graph_inputs

    ckpt = load(trained_xor[arch])
    example = generate(ckpt.task, "test", 16)
    info = export_onnx(ckpt, tmp_path / "m.onnx", example)
    assert info["graph"] == graph and info["max_abs_diff"] <= 1e-4 and info["argmax_mismatches"] == 0
    # an independent batch of another size: the graph's batch dimension is dynamic
    other = generate(ckpt.task, "train", 40)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    lengths = [other.x.shape[1]] + ([3] if graph == "scan" else [])  # a Scan graph takes any length
    for length in lengths:
        inputs = {k: v[:, :length] for k, v in graph_inputs(other, names).items()}
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
        with torch.no_grad():
            want = model_from_checkpoint(ckpt)(inputs["x"], inputs.get("dt"), inputs.get("mask")).numpy()
        assert abs(got - want).max() <= 1e-4
        assert (got.argmax(-1) == want.argmax(-1)).all()


@pytest.mark.slow
def test_onnx_scan_export_with_irregular_dt_takes_dt_as_an_input(tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    import onnxruntime as ort
    from helpers import tiny_run

    from cfctool.data.xor import generate
    from cfctool.families.build import model_from_checkpoint
    from cfctool.ops.export import export_onnx
    from cfctool.ops.train import train

    ckpt = train(tiny_run("cfc", encoding="event"))
    example = generate(ckpt.task, "test", 16)
    assert example.dt is not None and example.dt.unique().numel() > 1
    info = export_onnx(ckpt, tmp_path / "m.onnx", example)
    assert info["graph"] == "scan" and "dt" in info["inputs"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    feed = {"x": example.x, "dt": example.dt.float() * 3.0, "mask": example.mask}  # new dt values reach the graph
    feed = {k: v for k, v in feed.items() if k in info["inputs"]}
    got = session.run(None, {k: v.numpy() for k, v in feed.items()})[0]
    with torch.no_grad():
        want = model_from_checkpoint(ckpt)(feed["x"], feed["dt"], feed.get("mask")).numpy()
    assert abs(got - want).max() <= 1e-4


def test_eval_and_bench_name_the_engine_and_do_not_fold_encoded_models(trained_xor, tmp_path):
    from cfctool import encodings
    from cfctool.checkpoint import save

    ckpt = load(trained_xor["cfc"])
    plain = evaluate(ckpt)
    assert plain["engine"] == "folded" and "engine_note" not in plain
    enc = ckpt.encode({"rnn.cells.0.backbone.0.weight": encodings.quantize_spec(8, [0])})
    save(enc, tmp_path / "q.st")
    q = load(tmp_path / "q.st")
    report = evaluate(q)
    assert report["engine"] == "loop" and "simulated" in report["engine_note"]
    from cfctool.data.xor import generate
    from cfctool.families.build import model_from_checkpoint

    test = generate(q.task, "test")
    with torch.no_grad():  # the accuracy is that of the decoded model run by the loop
        want = (model_from_checkpoint(q)(test.x, test.dt, test.mask).argmax(-1) == test.y).float().mean().item()
    assert report["accuracy"] == pytest.approx(want)
    timing = bench(q, repeats=1, warmup=0)["results"][0]
    assert timing["engine"] == "loop" and "simulated" in timing["engine_note"]


def test_bench_batches_take_a_seeded_random_subset(trained_xor):
    ckpt = load(trained_xor["cfc"])
    a = bench(ckpt, batches=1, batch_size=40, repeats=1, warmup=0)
    b = bench(ckpt, batches=1, batch_size=40, repeats=1, warmup=0)
    assert a["workload"]["items"] == 40 and "subset" in a["workload"]
    assert a["results"][0]["accuracy"] == b["results"][0]["accuracy"]  # seeded: the same subset


def test_recorded_data_dir_is_the_last_resort(trained_xor, tmp_path, monkeypatch):
    from cfctool.task_data import resolve_data_dir

    ckpt = load(trained_xor["cfc"])
    entry = ckpt.record["history"][0]
    recorded = ckpt.derive(history=[{**entry, "config": {**entry["config"], "data": {"data_dir": str(tmp_path)}}}])
    monkeypatch.delenv("CFCTOOL_DATA", raising=False)
    assert resolve_data_dir(recorded, None) == (tmp_path, f"using the data directory recorded at training: {tmp_path} "
                                                           "(pass --data to override)")
    assert resolve_data_dir(recorded, "/given")[0].as_posix() == "/given"
    monkeypatch.setenv("CFCTOOL_DATA", "/env")
    assert resolve_data_dir(recorded, None) == (Path("/env"), None)


@pytest.mark.slow
def test_export_cli_prints_no_exporter_chatter(trained_xor, tmp_path):
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    import subprocess
    import sys

    out = tmp_path / "m.onnx"
    proc = subprocess.run([sys.executable, "-m", "cfctool", "export", str(trained_xor["cfc"]), "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out) and "max abs diff" in proc.stderr
    assert "torchvision" not in proc.stderr and "Skipping" not in proc.stderr


@pytest.mark.slow
def test_quiet_commands_print_only_their_result(trained_xor, tmp_path, cli):
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    out = tmp_path / "q.onnx"
    r = cli("export", trained_xor["cfc"], "-q", "-o", out)
    assert r.code == 0 and r.out.strip() == str(out) and out.is_file(), r.err
    r = cli("eval", trained_xor["cfc"], "-q")
    assert r.code == 0 and "accuracy" in r.out and "[" not in r.err


def test_the_median_interval_has_its_coverage_and_the_verdict_follows_it():
    """Order-statistic intervals: 5 values give [min, max] at 94%, more values a narrower one;
    a known ratio sits in its interval, equal timings are no measurable difference."""
    import random

    from cfctool.metrics import median_interval, paired_ratio

    assert median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0, 0.9375)
    low, high, coverage = median_interval(list(range(20)))
    assert (low, high) == (5, 14) and coverage >= 0.95
    rng = random.Random(0)
    base = [1.0 + rng.gauss(0, 0.02) for _ in range(9)]
    model = [b / 2.0 * (1 + rng.gauss(0, 0.02)) for b in base]  # truly 2x faster, with noise
    r = paired_ratio(base, model)
    assert r["interval"][0] <= 2.0 <= r["interval"][1] and r["verdict"] == "faster"
    same = [1.0 + rng.gauss(0, 0.05) for _ in range(9)]
    r = paired_ratio(same, [t * (1 + rng.gauss(0, 0.05)) for t in same])
    assert r["verdict"] == "no measurable difference" and r["interval"][0] < 1 < r["interval"][1]
    # three passes: [min, max] covers the median 75% of the time, too little to call a side,
    # even when every ratio is above 1; five passes (94%) are enough
    r = paired_ratio([2.0, 2.1, 2.05], [1.0, 1.0, 1.0])
    assert r["interval"][0] > 1 and r["coverage"] == 0.75 and r["verdict"] == "no measurable difference"
    assert paired_ratio([2.0, 2.1, 2.05, 2.0, 2.02], [1.0] * 5)["verdict"] == "faster"


def test_timed_passes_last_long_enough_and_ratios_carry_their_interval(trained_xor):
    """A tiny workload is looped until a pass lasts MIN_PASS_S; the ratio comes with the
    interval of its paired passes (its verdict's statistics are tested above, seeded)."""
    from cfctool.ops.bench import MIN_PASS_S

    ckpt = load(trained_xor["cfc"])
    report = bench(ckpt, against=ckpt, batches=1, batch_size=8, repeats=5, threads=1)
    for r in (*report["results"], *report["against"]):
        assert r["loops_per_pass"] > 1 and r["loops_per_pass"] * r["split_seconds"]["median"] >= 0.5 * MIN_PASS_S
    for r in (*report["results"], *report["against"]):  # every engine: microseconds per step at batch 1
        u = r["us_per_step"]
        assert u["batch"] == 1 and 0 < u["min"] <= u["median"] <= u["max"] and u["timed"].startswith("around")
    ratio = report["ratios"][0]
    low, high = ratio["speedup_interval"]
    assert low <= ratio["speedup"] <= high and ratio["interval_coverage"] == 0.938
    assert ratio["verdict"] in ("faster", "slower", "no measurable difference")
