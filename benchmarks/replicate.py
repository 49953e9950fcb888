"""Each figure of docs/results/replication.md from a fresh clone: the commands, timed, with
their outputs checked against the recorded results.

A row of the page (a figure of one of the papers) has one or more parts; a part is shell
commands run from the repository root, the values they leave in files under runs/replicate/
and the recorded values (benchmarks/results/) those must match. Parts that start from a
model shipped in benchmarks/checkpoints/ are plain cfctool commands; the others are targets
of benchmarks/replicate.mk, which train their model first. A model already in runs/replicate/
is kept (make sees it): its training time is then read from its own record and added.

    python -m benchmarks.replicate --list
    python -m benchmarks.replicate --only mnist-conv-ode pmnist-ode-rnn --note "nothing else ran"

Results: benchmarks/results/replication.yaml (seconds per part, the values it gave, whether
they match, the machine, threads, what else ran, commit); the page's "from a clone" column
is generated from it and from PARTS (`python -m benchmarks.tables`). The suite runs every
figure whose parts took under a minute in all (tests/test_replication.py).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, merge_result

OUT = "runs/replicate"
CKPT = "benchmarks/checkpoints"
DATA = "$CFCTOOL_DATA"
MAKE = "make -f benchmarks/replicate.mk"


@dataclass(frozen=True)
class Expect:
    """One value a part produces (`file` under the working directory, `key` a dotted path into
    its JSON or YAML) against the recorded one (`results`: a file of benchmarks/results/
    without .yaml, `path` dotted likewise). `tol`: the absolute difference allowed; with
    `ratio`, the relative one (timings), and a figure that is a lower bound uses `at_least`."""

    label: str
    file: str
    key: str
    results: str
    path: str
    tol: float = 0.0
    ratio: bool = False
    at_least: float | None = None


@dataclass(frozen=True)
class Part:
    row: str  # the figure's id in benchmarks/papers.yaml
    name: str
    what: str
    steps: tuple[str, ...]
    expects: tuple[Expect, ...]
    trains: tuple[str, ...] = ()  # checkpoints under runs/replicate a make target trains first
    shipped: bool = False
    note: str = ""  # how the clone's recipe relates to the recorded run, where they differ
    # not yet run from a clone: the recorded runs' seconds ((results, dotted path), summed) stand in
    recorded_seconds: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.row}/{self.name}"


def _acc(label: str, file: str, results: str, path: str, tol: float = 0.0001) -> Expect:
    return Expect(label, file, "accuracy", results, path, tol)


def _eval(ckpt: str, out: str, threads: int) -> str:
    return f"cfctool eval {ckpt} --threads {threads} --json -q > {OUT}/{out}.eval.json"


def _speed(row: str, what: str, model: str, against: str, out: str, results: str, path: str) -> Part:
    """`model` timed against `against` on the whole test split, one thread, its speed-up checked
    against the recorded one (a timing: within 35%)."""
    return Part(row, "speed", f"{what} against the full model, whole test split",
                (f"cfctool bench {model} --against {against} --threads 1 --json -q > {OUT}/{out}.bench.json",),
                (Expect("speed-up", f"{OUT}/{out}.bench.json", "ratios.0.speedup", results, path, 0.35, ratio=True),),
                shipped=True)


_DISTILL = [(ratio, recipe, teacher) for ratio in ("8x", "15x", "30x") for recipe in ("seed", "reference")
            for teacher in (True, False)]

PARTS: tuple[Part, ...] = (
    Part("cfc-speed", "ltc-vs-cfc", "seconds per training step, LTC over CfC", (f"{MAKE} ltc-vs-cfc",),
         (Expect("LTC / CfC per step", f"{OUT}/results/baselines.yaml", "runs.ltc-vs-cfc.ltc_over_cfc",
                 "baselines", "runs.ltc-vs-cfc.ltc_over_cfc", at_least=10.0),)),
    Part("cfc-imdb-reference", "imdb-cfc", "IMDB CfC, test accuracy", (f"{MAKE} imdb-cfc",),
         (_acc("accuracy", f"{OUT}/imdb-cfc.eval.json", "baselines", "runs.imdb-cfc-reference.test_accuracy"),),
         trains=("imdb-cfc.st",),
         note="The target trains the reference code's recipe for 20 epochs (`--preset default`); the recorded run "
         "went on to 26, but keeps, like every training, the model of its best validation epoch (the 8th): the "
         "same model."),
    Part("imdb-cfc-deep", "imdb-cfc-deep", "IMDB CfC-Deep, test accuracy", (f"{MAKE} imdb-cfc-deep",),
         (_acc("accuracy", f"{OUT}/imdb-cfc-deep.eval.json", "baselines",
               "runs.imdb-cfc-deep-lr25-3x312.test_accuracy"),),
         trains=("imdb-cfc-deep.st",),
         note="The recorded run trained with 2 threads; the target's 1 thread gives the same test accuracy from the "
         "same seed (a rerun here)."),
    Part("imdb-cfc-ncp", "imdb-cfc-ncp", "IMDB CfC-NCP, test accuracy", (f"{MAKE} imdb-cfc-ncp",),
         (_acc("accuracy", f"{OUT}/imdb-cfc-ncp.eval.json", "baselines", "runs.imdb-cfc-ncp-reference.test_accuracy"),),
         trains=("imdb-cfc-ncp.st",)),
    Part("person-activity-cfc", "person-activity-cfc", "Person Activity CfC, test accuracy",
         (f"{MAKE} person-activity-cfc",),
         (_acc("accuracy", f"{OUT}/person-activity-cfc.eval.json", "baselines", "runs.person_activity-cfc.test_accuracy"),),
         trains=("person-activity-cfc.st",)),
    *(Part(fid, f"{arch}-int8", f"IMDB {label} static and QAT int8, speed-up over fp32 eager",
           (f"{MAKE} {arch}-int8",),
           (*(Expect(f"{v} accuracy", f"{OUT}/results/quantize.yaml", f"runs.imdb/{arch[5:]}.rows.{v}.accuracy",
                     "quantize", f"runs.imdb/{arch[5:]}.rows.{v}.accuracy", 0.0001) for v in ("static", "qat")),
            Expect("static speed-up", f"{OUT}/results/quantize.yaml", f"runs.imdb/{arch[5:]}.rows.static.speedup_vs_eager_fp32",
                   "quantize", f"runs.imdb/{arch[5:]}.rows.static.speedup_vs_eager_fp32", 0.35, ratio=True)),
           trains=(f"{arch}.st",))
      for fid, arch, label in (("imdb-cfc-int8", "imdb-cfc", "CfC"), ("imdb-cfc-deep-int8", "imdb-cfc-deep", "CfC-Deep"))),
    Part("pruning", "pruning", "95% global pruning + fine-tuning: IMDB CfC (3 epochs), Person Activity CfC (10)",
         (f"{MAKE} pruning",),
         (_acc("IMDB", f"{OUT}/imdb/prune-acceptance/global95.eval.json", "prune-acceptance", "checkpoints.1.accuracy"),
          Expect("Person Activity", f"{OUT}/results/prune.yaml",
                 "runs.person_activity/cfc.cells.unstructured-global@0.95+ft10.accuracy", "prune",
                 "runs.person_activity/cfc.cells.unstructured-global@0.95+ft10.accuracy", 0.0001)),
         trains=("imdb-cfc.st", "person-activity-cfc.st")),
    Part("distillation", "distillation", "twelve students of the CfC-Deep, with and without it", (f"{MAKE} distillation",),
         tuple(Expect(f"{ratio} {recipe}{'' if teacher else ' alone'}", f"{OUT}/results/distill.yaml",
                      f"runs.imdb-{ratio}-{recipe}{'' if teacher else '-alone'}.test_accuracy", "distill",
                      f"runs.imdb-{ratio}-{recipe}{'' if teacher else '-alone'}.test_accuracy", 0.0001)
               for ratio, recipe, teacher in _DISTILL),
         trains=("imdb-cfc-deep.st",),
         note="Its time is the recorded runs': the teacher's training (2 threads) and the twelve students' (one "
         "thread each, one other job beside them).",
         recorded_seconds=(("baselines", "runs.imdb-cfc-deep-lr25-3x312.train_seconds_total"),  # the teacher
                           *(("distill", f"runs.imdb-{ratio}-{recipe}{'' if teacher else '-alone'}.seconds")
                             for ratio, recipe, teacher in _DISTILL))),
    Part("mnist-conv-ode", "accuracy", "the shipped conv Neural ODE, and POD-DEIM at 50 (least-squares rebuild "
         "from 120 points; the DEIM form)",
         (f"mkdir -p {OUT}", _eval(f"{CKPT}/mnist-conv-ode.st", "conv-ode", 1),
          f"cfctool reduce {CKPT}/mnist-conv-ode.st --method pod-deim --dim 50 --points 120 --interpolation lstsq "
          f"--every 1 --threads 1 -q -o {OUT}/conv-ode-lstsq50.st",
          _eval(f"{OUT}/conv-ode-lstsq50.st", "conv-ode-lstsq50", 1),
          f"cfctool reduce {CKPT}/mnist-conv-ode.st --method pod-deim --dim 50 --every 1 --threads 1 -q "
          f"-o {OUT}/conv-ode-deim50.st",
          _eval(f"{OUT}/conv-ode-deim50.st", "conv-ode-deim50", 1)),
         (_acc("full model", f"{OUT}/conv-ode.eval.json", "reduce", "runs.mnist/conv-ode.cells.original.accuracy"),
          _acc("POD-DEIM 50, least squares", f"{OUT}/conv-ode-lstsq50.eval.json", "reduce",
               "runs.mnist/conv-ode.cells.pod-deim/lstsq@50:120.accuracy"),
          _acc("POD-DEIM 50, DEIM form", f"{OUT}/conv-ode-deim50.eval.json", "reduce",
               "runs.mnist/conv-ode.cells.pod-deim@50.accuracy")), shipped=True),
    _speed("mnist-conv-ode", "POD-DEIM 50 (least squares)", f"{OUT}/conv-ode-lstsq50.st", f"{CKPT}/mnist-conv-ode.st",
           "conv-ode-lstsq50", "reduce", "runs.mnist/conv-ode.cells.pod-deim/lstsq@50:120.speedup"),
    Part("pmnist-ode-rnn", "accuracy", "the shipped 40-epoch ODE-RNN; SVD rank 125 with least-squares interpolation "
         "(also shipped) and plain SVD",
         (f"mkdir -p {OUT}", _eval(f"{CKPT}/pmnist-ode-rnn-scratch.st", "ode-rnn", 2),
          _eval(f"{CKPT}/pmnist-ode-rnn-scratch-svd125.st", "ode-rnn-svd-lstsq125", 2),
          f"cfctool reduce {CKPT}/pmnist-ode-rnn-scratch.st --method svd --dim 125 --threads 1 -q "
          f"-o {OUT}/ode-rnn-svd125.st",
          _eval(f"{OUT}/ode-rnn-svd125.st", "ode-rnn-svd125", 2)),
         (_acc("full model", f"{OUT}/ode-rnn.eval.json", "baselines", "runs.pmnist-ode-rnn-scratch.test_accuracy"),
          _acc("SVD 125, least squares", f"{OUT}/ode-rnn-svd-lstsq125.eval.json", "bench-pmnist-ode-rnn-scratch-svd125",
               "results.0.accuracy"),
          _acc("SVD 125, plain", f"{OUT}/ode-rnn-svd125.eval.json", "reduce",
               "runs.pmnist/ode-rnn-40ep.cells.svd@125.accuracy")), shipped=True),
    _speed("pmnist-ode-rnn", "SVD rank 125 (least squares)", f"{CKPT}/pmnist-ode-rnn-scratch-svd125.st",
           f"{CKPT}/pmnist-ode-rnn-scratch.st", "ode-rnn-svd-lstsq125", "bench-pmnist-ode-rnn-scratch-svd125",
           "ratios.0.speedup"),
)


# figures whose numbers come from another figure's parts (the same model)
SAME_AS = {"imdb-cfc": "cfc-imdb-reference"}


def parts_of(fid: str) -> list[Part]:
    return [p for p in PARTS if p.row == SAME_AS.get(fid, fid)]


def lookup(doc: Any, path: str) -> Any:
    """A dotted path into nested dicts and lists. A key may itself hold dots
    ('unstructured-global@0.95+ft10'): at each level the longest key the path starts with wins."""
    rest = path
    while rest:
        if isinstance(doc, dict):
            key = next((k for k in sorted(map(str, doc), key=len, reverse=True)
                        if rest == k or rest.startswith(f"{k}.")), None)
            if key is None:
                raise KeyError(f"{path}: no key at {rest!r}")
            doc = doc[key]
        else:
            key = rest.split(".", 1)[0]
            doc = doc[int(key)]
        rest = rest[len(key) + 1:]
    return doc


def _read(path: Path) -> Any:
    import yaml

    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


@functools.cache
def _recorded_file(name: str) -> Any:
    """A file of benchmarks/results/, read once (reduce.yaml alone is 7,000 lines; every expected
    value and every check reads one)."""
    return _read(RESULTS / f"{name}.yaml")


def recorded(e: Expect) -> Any:
    return lookup(_recorded_file(e.results), e.path)


def recorded_seconds(part: Part) -> float | None:
    """What the recorded runs of a part not yet run from a clone took, summed."""
    if not part.recorded_seconds:
        return None
    return float(sum(lookup(_recorded_file(name), path) for name, path in part.recorded_seconds))


def part_seconds(entry: dict) -> float:
    """A timed part's whole time from a clone: its commands, plus the recorded training of the
    models it found already trained."""
    return entry["seconds"] + sum((entry.get("training_seconds_recorded") or {}).values())


def check(e: Expect, got: float) -> bool:
    want = recorded(e)
    if e.at_least is not None:
        return got >= e.at_least
    if e.ratio:
        return abs(got / want - 1) <= e.tol
    return abs(got - want) <= e.tol + 1e-12


def run_part(part: Part, workdir: Path, env: dict[str, str] | None = None) -> dict:
    """Run a part's steps in `workdir` (a clone's root); its values, checked, and its seconds
    (plus the recorded training of models that were already there)."""
    from cfctool import checkpoint

    already = {name: (workdir / OUT / name).is_file() for name in part.trains}
    start = time.perf_counter()
    for step in part.steps:
        subprocess.run(step, shell=True, cwd=workdir, env=env, check=True)
    seconds = time.perf_counter() - start
    values = {e.label: lookup(_read(workdir / e.file), e.key) for e in part.expects}
    trained = {name: round(checkpoint.load(workdir / OUT / name).record["metrics"]["train_seconds"], 1)
               for name, was in already.items() if was}
    return {"seconds": round(seconds, 1), "training_seconds_recorded": trained or None,
            "values": values, "recorded": {e.label: recorded(e) for e in part.expects},
            "match": all(check(e, values[e.label]) for e in part.expects)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=[], help="rows (figure ids) or parts (ROW/PART)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--note", default="nothing", help="what else ran on the machine meanwhile")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the clone to run in (default: this one)")
    args = parser.parse_args(argv)
    if args.list:
        for p in PARTS:
            print(f"{p.id}: {p.what}")
        return
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("CFCTOOL_BENCH_RESULTS", None)
    for part in PARTS:
        if args.only and part.row not in args.only and part.id not in args.only:
            continue
        print(f"[{part.id}] {part.what}", file=sys.stderr)
        entry = {**run_part(part, args.workdir, env), "steps": list(part.steps), "threads": "as each command says",
                 "machine": machine(), "what_else_ran": args.note}
        merge_result("replication", "parts", part.id, entry, {"benchmark": "the replication page, from a clone"})
        print(f"[{part.id}] {entry['seconds']} s, values {entry['values']}, "
              f"{'match' if entry['match'] else 'DIFFER from'} the recorded {entry['recorded']}", file=sys.stderr)


if __name__ == "__main__":
    main()
