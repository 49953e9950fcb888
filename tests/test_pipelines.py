"""The main job: examples/quickstart.mk end to end at a tiny size, `cfctool report`, and
pipes through '-' against the same steps through files."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cfctool import checkpoint

ROOT = Path(__file__).resolve().parents[1]
CFCTOOL = f"{sys.executable} -m cfctool"

pytestmark = pytest.mark.slow  # end-to-end runs through make and pipes


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_quickstart_makefile_runs_every_step_and_reports_them(tmp_path):
    out = tmp_path / "qs"
    args = ["make", "-s", "-f", str(ROOT / "examples/quickstart.mk"), f"OUT={out}", "TRAIN_SIZE=256", "EPOCHS=1",
            "BENCH=--batches 1 --repeats 1 --warmup 0", f"CFCTOOL={CFCTOOL}", "-j2"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    report = (out / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines()
            if line.startswith("| ") and ".st" in line.split("|")[1]}
    assert set(rows) == {f"qs/{m}.st" for m in ("teacher", "pruned", "student", "student-int8")}
    assert "train cfc-deep -> prune 0.8 global +ft2 -> distill -> cfc-ncp (alpha 0.25) -> quantize static int8" in \
        rows["qs/student-int8.st"]
    assert "| train cfc-deep |" in rows["qs/teacher.st"] and "folded-int8" in rows["qs/student-int8.st"]
    # accuracy and a speed-up for each; one timed pass cannot call a side, and the table says so
    assert all("%" in row and "x (no measurable difference) |" in row for row in rows.values())
    assert "student-int8.st" in first.stdout  # the table printed at the end
    # nothing changed: nothing is rebuilt (only the report is printed again)
    models = ("teacher", "pruned", "student", "student-int8")
    stamp = {m: (out / f"{m}.st").stat().st_mtime_ns for m in models}
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and {m: (out / f"{m}.st").stat().st_mtime_ns for m in models} == stamp
    # one step's settings changed: that step and what follows are redone, the teacher is kept
    changed = subprocess.run([*args, "PRUNE=--global --ratio 0.5"], capture_output=True, text=True, timeout=600,
                             cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert (out / "teacher.st").stat().st_mtime_ns == stamp["teacher"]
    assert all((out / f"{m}.st").stat().st_mtime_ns != stamp[m] for m in ("pruned", "student"))
    assert "prune 0.5 global" in (out / "report.md").read_text() and not list(out.glob("*.tmp*"))
    data = json.loads(subprocess.run([*CFCTOOL.split(), "report", str(out), "--json"], capture_output=True,
                                     text=True, timeout=120).stdout)
    assert [Path(r["path"]).name for r in data] == ["pruned.st", "student-int8.st", "student.st", "teacher.st"]
    student = next(r for r in data if r["path"].endswith("/student.st"))
    assert student["accuracy_from"] == "student.eval.json" and student["against"].endswith("teacher.st")


def test_report_errors(cli, tmp_path, trained_xor):
    trained_xor = trained_xor["cfc"]
    r = cli("report", tmp_path)
    assert r.code == 1 and "no .st checkpoints" in r.err
    r = cli("report", tmp_path / "nope")  # a missing input file: 1, as in every command (2 is for usage)
    assert r.code == 1 and "no such file or directory" in r.err
    r = cli("report", trained_xor, "--plot", tmp_path / "new" / "dir" / "p.png")  # validated like -o
    assert r.code == 1 and "does not exist" in r.err and not (tmp_path / "new").exists()
    r = cli("report", trained_xor, "--plot", tmp_path / "p.txt")
    assert r.code == 2 and "give a .png, .pdf or .svg path" in r.err
    r = cli("report", trained_xor, "-o", tmp_path / "r.txt")
    assert r.code == 2 and "must end in .md" in r.err
    r = cli("report", trained_xor, "-o", tmp_path / "r.yaml")
    assert r.code == 0 and yaml.safe_load((tmp_path / "r.yaml").read_text())["checkpoints"][0]["arch"] == "cfc"
    (tmp_path / "m.st").write_bytes(Path(trained_xor).read_bytes())
    (tmp_path / "m.yaml").write_bytes(Path(trained_xor).with_suffix(".yaml").read_bytes())
    (tmp_path / "m.eval.json").write_text("{not json")
    r = cli("report", tmp_path / "m.st")
    assert r.code == 1 and "m.eval.json: not a readable eval report" in r.err


def test_report_without_matplotlib_says_how_to_get_it(cli, trained_xor, tmp_path, monkeypatch):
    trained_xor = trained_xor["cfc"]
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = cli("report", trained_xor, "--plot", tmp_path / "p.png", "-o", tmp_path / "report.md")
    assert r.code == 1 and "pip install 'cfctool[plot]'" in r.err and "nothing was written" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # failed before any work: neither the table nor the plot


def test_pareto_front():
    from cfctool.ops.report import pareto_front

    pts = [(10, 0.9), (5, 0.8), (20, 0.85), (5, 0.7), (30, 0.95)]
    assert pareto_front(pts) == [(5, 0.8), (10, 0.9), (30, 0.95)]


def _provenance_free(ckpt) -> dict:
    """The record less what says how and when each step ran (times, argv, input paths)."""
    record = json.loads(json.dumps(ckpt.record))
    for entry in record["history"]:
        for key in ("utc", "wall_time_s", "argv", "inputs"):
            entry.pop(key)
    return record


def test_a_pipe_gives_the_same_checkpoint_as_files(tmp_path, trained_xor):
    """`prune -o - | quantize -` against the same two steps through a file: identical tensor
    bytes and an identical record up to provenance (argv, input paths, times), which by
    design says how each was run."""
    trained_xor = trained_xor["cfc"]
    run = lambda *a, **k: subprocess.run([*CFCTOOL.split(), *map(str, a)], capture_output=True, timeout=300,  # noqa: E731
                                         cwd=tmp_path, **k)
    prune = ["prune", trained_xor, "--global", "--ratio", "0.9"]
    quant = ["--scheme", "dynamic", "-q"]
    assert run(*prune, "-q", "-o", "a.st").returncode == 0
    assert run("quantize", "a.st", *quant, "-o", "files.st").returncode == 0
    piped = run(*prune, "-q", "-o", "-")
    assert piped.returncode == 0 and piped.stdout[:8] != b""
    second = run("quantize", "-", *quant, "-o", "pipe.st", input=piped.stdout)
    assert second.returncode == 0, second.stderr
    a, b = checkpoint.load(tmp_path / "files.st"), checkpoint.load(tmp_path / "pipe.st")
    assert checkpoint.safetensors_bytes(a.tensors, {}) == checkpoint.safetensors_bytes(b.tensors, {})
    assert _provenance_free(a) == _provenance_free(b)
    assert b.record["history"][-2]["argv"][-1] == "-"  # the pipe is recorded as such


def test_report_prints_markdown_when_piped(cli, trained_xor, tmp_path):
    """Piped (stdout not a terminal), the table is the Markdown that -o x.md writes, not a box drawing."""
    r = cli("report", trained_xor["cfc"])
    assert r.code == 0, r.err
    written = tmp_path / "r.md"
    assert cli("report", trained_xor["cfc"], "-o", written).code == 0
    assert r.out == written.read_text() and r.out.lstrip().startswith(("|", "#")) and "┃" not in r.out


def test_report_groups_checkpoints_that_differ_only_by_seed(cli, tmp_path):
    """Three seeds of one recipe make one row: n, mean ± sd and the 95% t-interval of their
    accuracies (checked against a computation of its own); a fourth checkpoint trained for
    another number of epochs is a recipe of its own, and a copy of one seed is not a seed."""
    import statistics

    from cfctool.ops.report import report, seed_groups

    paths = []
    for seed, epochs in ((0, 1), (1, 1), (2, 1), (0, 2)):
        out = tmp_path / f"s{seed}-e{epochs}.st"
        r = cli("train", "xor", "--train-size", 300, "--test-size", 200, "--epochs", epochs, "--seed", seed,
                "--threads", 1, "-q", "-o", out)
        assert r.code == 0, r.err
        paths.append(out)
    shutil.copy(paths[0], tmp_path / "copy.st")
    shutil.copy(paths[0].with_suffix(".yaml"), tmp_path / "copy.yaml")
    rows = report([*paths, tmp_path / "copy.st"])
    groups = seed_groups(rows)
    assert len(groups) == 1 and [Path(r.path).name for r in groups[0].rows] == ["s0-e1.st", "s1-e1.st", "s2-e1.st"]
    accs = [checkpoint.load(p).record["metrics"]["accuracy"] for p in paths[:3]]
    s = groups[0].summary()
    mean, sd = statistics.mean(accs), statistics.stdev(accs)
    assert s["n"] == 3 and s["seeds"] == [0, 1, 2] and sd > 0
    assert abs(s["mean"] - mean) < 1e-12 and abs(s["sd"] - sd) < 1e-12
    assert abs(s["high"] - (mean + 4.303 * sd / 3**0.5)) < 1e-9  # t(0.975, 2 df) = 4.303
    md = cli("report", *paths, tmp_path / "copy.st").out
    assert "Recipes run with several seeds" in md and "| 3 | 0, 1, 2 |" in md
    assert f"accuracy {100 * mean:.2f}% ± {100 * sd:.2f}" in md
    # one seed of each recipe: no group, no extra table
    assert "several seeds" not in cli("report", paths[0], paths[3]).out


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
@pytest.mark.parametrize("makefile,target", [("quickstart.mk", "all"), ("imdb.mk", "pipeline"),
                                             ("imdb.mk", "pruning-acceptance"), ("mor.mk", "reduced")])
def test_example_makefiles_run_each_seed_in_its_own_directory(makefile, target, tmp_path):
    """SEEDS="0 1": one sub-make per seed, in OUT/seed-S, every step with --seed S, and a report
    over both seeds' checkpoints; one seed (the default) keeps OUT as it is."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    out = tmp_path / "o"

    def dry(*extra: str) -> str:
        run = subprocess.run(["make", "-n", "-f", f"examples/{makefile}", target, f"OUT={out}", *extra],
                             cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout.replace("\\\n", " ")  # a command continued over lines: one line

    several = dry("SEEDS=0 1")
    for seed in (0, 1):
        assert f"OUT={out}/seed-{seed} SEEDS={seed}" in several
        trains = [line for line in several.split("\n") if f"{out}/seed-{seed}/" in line and " --seed " in line]
        assert trains and all(f"--seed {seed} " in line for line in trains)
    report = next(line for line in several.split("\n") if line.startswith("cfctool report") and " -o " not in line)
    assert f"{out}/seed-0/" in report and f"{out}/seed-1/" in report
    single = dry()
    assert "/seed-" not in single and "--seed 0 " in single
