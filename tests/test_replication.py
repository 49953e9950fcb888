"""The replication page's "from a clone" commands: every figure measured under a minute runs here,
from a directory laid out like a clone, and must give the recorded values; the longer ones are
make targets that must resolve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.replicate import MAKE, PARTS, SAME_AS, check, lookup, part_seconds, parts_of, recorded, run_part

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "replication.yaml"
DATA = Path(os.environ.get("CFCTOOL_DATA", ROOT.parent / "shared" / "data"))


def _timed() -> dict:
    return (yaml.safe_load(RESULTS.read_text()) or {}).get("parts") or {} if RESULTS.exists() else {}


def _quick_rows() -> list[str]:
    """The figures whose parts, run in order (a later part reads what an earlier one wrote), took
    under a minute in all."""
    rows = dict.fromkeys(p.row for p in PARTS)
    timed = _timed()
    return [row for row in rows if all(p.id in timed for p in PARTS if p.row == row)
            and sum(part_seconds(timed[p.id]) for p in PARTS if p.row == row) < 60]


QUICK = _quick_rows()


def _clone_env(tmp_path: Path) -> dict[str, str]:
    """A clone's root: the shipped models, the benchmark scripts and the Makefiles, linked."""
    for name in ("benchmarks", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "CFCTOOL_DATA": str(DATA), "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("CFCTOOL_BENCH_RESULTS", None)
    return env


def test_every_figure_has_a_way_from_a_clone_and_its_expected_values_are_recorded():
    figures = yaml.safe_load((ROOT / "benchmarks" / "papers.yaml").read_text())["figures"]
    page = (ROOT / "docs" / "results" / "replication.md").read_text()
    for f in figures:
        if f"({f['id']})" not in page.replace("#", ""):  # a figure the page does not show yet
            continue
        parts = parts_of(f["id"])
        assert parts, f"{f['id']} has no commands from a clone"
        for p in parts:
            for e in p.expects:
                value = recorded(e)  # raises if the results do not hold it
                assert isinstance(value, (int, float)), (p.id, e.label, value)
    assert set(SAME_AS.values()) <= {p.row for p in PARTS}
    assert QUICK, "no figure was measured under a minute: the page's times are missing"


def test_every_make_target_a_part_names_resolves_to_commands(tmp_path):
    """Dry runs: each model a part trains, from nothing; each part's target once its models exist
    (a target that hands over to examples/imdb.mk needs them on disk even in a dry run)."""
    env = _clone_env(tmp_path)

    def dry(target: str) -> str:
        run = subprocess.run(f"{MAKE} -n {target}", shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, (target, run.stderr)
        return run.stdout

    models = sorted({m for p in PARTS for m in p.trains})
    for model in models:
        assert "cfctool train" in dry(f"runs/replicate/{model}")
    (tmp_path / "runs" / "replicate").mkdir(parents=True)
    for model in models:
        (tmp_path / "runs" / "replicate" / model).touch()
    targets = sorted({step.split()[-1] for p in PARTS for step in p.steps if step.startswith(MAKE)})
    assert len(targets) >= 8
    for target in targets:
        assert "cfctool train" not in dry(target), target  # the models are there: nothing retrains


def test_a_value_that_differs_from_the_record_fails_the_check():
    part = next(p for p in PARTS if p.id == "mnist-conv-ode/accuracy")
    e = part.expects[0]
    assert check(e, recorded(e)) and not check(e, recorded(e) - 0.001)
    timing = next(e for p in PARTS for e in p.expects if e.ratio)
    assert check(timing, recorded(timing) * 1.3) and not check(timing, recorded(timing) * 1.5)
    assert lookup({"cells": {"a@0.95+ft10": {"x": [1, 2]}}}, "cells.a@0.95+ft10.x.1") == 2


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "mnist").is_dir() or not (DATA / "person_activity").is_dir(),
                    reason="needs the MNIST and Person Activity data in $CFCTOOL_DATA (../shared/data here)")
@pytest.mark.parametrize("row", QUICK)
def test_a_figure_under_a_minute_gives_the_recorded_values_from_a_clone(row, tmp_path):
    env = _clone_env(tmp_path)
    for part in (p for p in PARTS if p.row == row):
        result = run_part(part, tmp_path, env)
        assert result["match"], (part.id, result["values"], result["recorded"])
