"""The seed's distillation study (the compression study) on this machine: students of several sizes
distilled from a teacher, each also trained without the teacher (alpha 1, same epochs, same
seed), accuracy against compression.

Each entry distils one student with `cfctool.ops.distill` (its settings: the teacher's data
set preset for the student arch, plus the entry's changes), saves it under --out-dir and
merges accuracy, parameters with and without the embedding, and the compression of the
recurrent parameters against the teacher into benchmarks/results/distill.yaml. Entries
are independent processes (run two at a time, one thread each); `--resume` continues an
interrupted one from its training state. `--plot` draws accuracy vs compression.

    python -m benchmarks.distill --teacher imdb=/work/runs/baselines/imdb-cfc-deep-reference.st \\
        --only imdb-ncp64 imdb-ncp64-alone --threads 1 --data ../shared/data
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.common import machine, merge_result, panels, progress_lines, results_dir, save_figure

# the study's student sizes against the CfC-Deep teacher (~556k recurrent parameters): about 8x, 15x
# and 30x fewer, each under the study's recipe (--preset seed, 10 epochs) and ours (the reference
# recipe at 20 epochs, IMDB's default preset): the study table and plot
STUDY_SIZES = (("8x", "cfc", {"hidden": 64, "backbone_layers": 0}),
               ("15x", "cfc-ncp", {"hidden": 64}),
               ("30x", "cfc", {"hidden": 20, "backbone_layers": 0}))
STUDY_RECIPES = {"seed": "seed", "reference": "default"}  # label: preset


def study_entry(ratio: str, recipe: str, with_teacher: bool = True) -> str:
    return f"imdb-{ratio}-{recipe}" + ("" if with_teacher else "-alone")


def study_entries() -> set[str]:
    return {study_entry(ratio, recipe, w) for ratio, *_ in STUDY_SIZES for recipe in STUDY_RECIPES for w in (True, False)}


def study_runs(runs: dict) -> dict[tuple[str, str, bool], dict]:
    """(ratio, recipe, with teacher) -> the result, for the study's runs among `runs`, sizes in order."""
    return {(ratio, recipe, w): runs[e] for ratio, *_ in STUDY_SIZES for recipe in STUDY_RECIPES for w in (True, False)
            if (e := study_entry(ratio, recipe, w)) in runs}


def study_teacher(study: dict[tuple[str, str, bool], dict]) -> dict:
    """A run that names the teacher: one trained with it (a run without it records whichever
    teacher was given, unused), else any."""
    return next((r for (_, _, with_teacher), r in study.items() if with_teacher), next(iter(study.values())))


# name: (data set, student arch, student settings); every student also runs alone ('-alone', alpha 1)
STUDENTS = {
    "imdb-ncp64": ("imdb", "cfc-ncp", {"hidden": 64}),
    "imdb-ncp32": ("imdb", "cfc-ncp", {"hidden": 32}),
    "imdb-cfc64-nobackbone": ("imdb", "cfc", {"hidden": 64, "backbone_layers": 0}),
    "imdb-cfc32-nobackbone": ("imdb", "cfc", {"hidden": 32, "backbone_layers": 0}),
    "imdb-cfc64-bb64": ("imdb", "cfc", {"hidden": 64, "backbone_units": 64, "backbone_layers": 1}),
    # the IMDB pipeline's student: a CfC-NCP whose embedding was pruned to 16 columns (structured),
    # started from it (--init imdb-ncp64-emb16=PATH, from `make -f examples/imdb.mk`), 10 epochs
    "imdb-ncp64-emb16": ("imdb", "cfc-ncp", {"hidden": 64, "embedding_dim": 16, "epochs": 10, "init": True}),
    "person_activity-cfc64": ("person_activity", "cfc", {"hidden": 64}),
    "person_activity-ncp32": ("person_activity", "cfc-ncp", {"hidden": 32}),
    **{study_entry(ratio, label): ("imdb", arch, {**size, "preset": preset})
       for ratio, arch, size in STUDY_SIZES for label, preset in STUDY_RECIPES.items()},
    # the bit-stream XOR: a run of seconds that needs no data (the smoke test's)
    "xor-ncp8": ("xor", "cfc-ncp", {"hidden": 8}),
}
ENTRIES = {**{k: (*v, 0.25) for k, v in STUDENTS.items()}, **{f"{k}-alone": (*v, 1.0) for k, v in STUDENTS.items()}}
SEED = ("the compression study: CfC-Deep (IMDB) into NCP-style f, g, h students without backbone, loss 0.25 CE + 0.75 KD: "
        "8-15x compression without accuracy loss, beyond 15x accuracy fell; students without the teacher were "
        "5-10 points worse or failed to train")


def run_entry(name: str, teachers: dict[str, Path], args) -> tuple[str, dict]:
    from cfctool import checkpoint
    from cfctool.configs import DistillConfig
    from cfctool.metrics import parameter_counts
    from cfctool.ops.distill import distill

    dataset, arch, changes, alpha = ENTRIES[name]
    if dataset not in teachers:
        raise SystemExit(f"{name}: give --teacher {dataset}=PATH")
    teacher = checkpoint.load(teachers[dataset])
    changes = dict(changes)
    preset = changes.pop("preset", "default")
    init = None
    if changes.pop("init", False):
        student_name = name.removesuffix("-alone")
        if student_name not in args.inits:
            raise SystemExit(f"{name}: give --init {student_name}=PATH (the checkpoint it starts from)")
        init = str(args.inits[student_name])
    overrides = {**changes, "seed": args.seed, "threads": args.threads}
    if args.epochs:
        overrides["epochs"] = args.epochs
    out = Path(args.out_dir) / f"{name}.st"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    student = distill(teacher, DistillConfig(student=arch, alpha=alpha, init_checkpoint=init, preset=preset), overrides,
                      data_dir=args.data,
                      argv=sys.argv, output=out, resume=args.resume,
                      notify=lambda m: print(f"[{name}] {m}", file=sys.stderr),
                      progress=progress_lines(name))
    checkpoint.save(student, out)
    from cfctool.families.build import model_from_checkpoint

    t_counts = student.record["compression"]["distillation"]["teacher"]
    s_counts = parameter_counts(model_from_checkpoint(student))
    metrics = student.record["metrics"]
    return name, {
        "command": f"python -m benchmarks.distill {' '.join(sys.argv[1:])}", "teacher": str(teachers[dataset]),
        "teacher_arch": t_counts["arch"], "teacher_accuracy": t_counts.get("accuracy"),
        "student": arch, "changes": changes, "preset": preset, "init": init, "alpha": alpha, "with_teacher": alpha < 1,
        "epochs": metrics["epochs_run"], "best_epoch": metrics["best_epoch"], "seed": args.seed,
        "test_accuracy": metrics["accuracy"], "rnn_params": s_counts["rnn_params"], "params": s_counts["params"],
        "params_without_embedding": s_counts["params"] - _embedding(student),
        "teacher_rnn_params": t_counts["rnn_params"], "teacher_params": t_counts["params"],
        "rnn_compression": t_counts["rnn_params"] / s_counts["rnn_params"],
        # a resumed run: the training time of all its sittings, and this one's wall time
        "seconds": metrics.get("train_seconds", round(time.perf_counter() - start, 1)),
        "this_run_seconds": round(time.perf_counter() - start, 1),
        **({"resumed_after_epoch": metrics["resumed_after_epoch"]} if metrics.get("resumed_after_epoch") else {}),
        "checkpoint": str(out), "threads": args.threads,
        "device": "cpu", "machine": machine(), "what_else_ran": args.note, "seed_reference": SEED,
    }


def _embedding(ckpt) -> int:
    t = ckpt.tensors.get("embedding.weight")
    return 0 if t is None else t.numel()


def plot(out: Path) -> Path:
    import yaml

    runs = yaml.safe_load((results_dir() / "distill.yaml").read_text())["runs"]
    runs = {k: r for k, r in runs.items() if k not in study_entries()}  # plot_study draws those
    datasets = sorted({r["teacher"] for r in runs.values()})
    fig, axes = panels(len(datasets))
    for ax, teacher in zip(axes, datasets):
        presets = sorted({r.get("preset", "default") for r in runs.values() if r["teacher"] == teacher})
        for preset in presets:
            for with_teacher, marker in ((True, "o"), (False, "x")):
                pts = sorted((r["rnn_compression"], r["test_accuracy"]) for r in runs.values()
                             if r["teacher"] == teacher and r["with_teacher"] == with_teacher
                             and r.get("preset", "default") == preset)
                if pts:  # one curve per recipe and condition
                    ax.plot(*zip(*pts), marker=marker, label=("distilled" if with_teacher else "without teacher")
                            + ("" if len(presets) == 1 else f", --preset {preset}"))
        acc = next(r["teacher_accuracy"] for r in runs.values() if r["teacher"] == teacher)
        if acc:
            ax.axhline(acc, color="grey", lw=0.8, label="teacher")
        ax.set(xscale="log", xlabel="recurrent parameters: teacher / student", ylabel="test accuracy",
               title=Path(teacher).stem)
        ax.legend(fontsize=7)
    return save_figure(fig, out)


def plot_study(out: Path) -> Path | None:
    """The study's sizes: accuracy against compression, one curve per recipe and condition."""
    import yaml

    study = study_runs(yaml.safe_load((results_dir() / "distill.yaml").read_text())["runs"])
    curves = {(recipe, with_teacher): [r for (_, rec, w), r in study.items() if (rec, w) == (recipe, with_teacher)]
              for recipe in STUDY_RECIPES for with_teacher in (True, False)}
    if not study:
        return None
    fig, (ax,) = panels(1)
    for (recipe, with_teacher), rows in curves.items():
        if rows:
            ax.plot([r["rnn_compression"] for r in rows], [r["test_accuracy"] for r in rows],
                    marker="o" if with_teacher else "x", ls="-" if with_teacher else "--",
                    color="C0" if recipe == "seed" else "C1",  # a colour per recipe, a line style per condition
                    label=f"{'with' if with_teacher else 'without'} the teacher, "
                          f"{'--preset seed' if recipe == 'seed' else 'reference recipe'}")
    ax.axhline(study_teacher(study)["teacher_accuracy"], color="grey", lw=0.8, label="teacher (CfC-Deep)")
    ax.set(xscale="log", xlabel="recurrent parameters: teacher / student", ylabel="test accuracy",
           title="IMDB: CfC-Deep into smaller students")
    ax.legend(fontsize=7)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(ENTRIES), default=[])
    parser.add_argument("--teacher", action="append", default=[], help="DATASET=PATH of a teacher checkpoint")
    parser.add_argument("--init", action="append", default=[], help="STUDENT=PATH: the checkpoint an entry "
                        "marked init starts from (both it and its -alone twin)")
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA", "../shared/data"))
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (recorded)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="runs/distill")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--note", default="nothing else", help="what else ran on the machine meanwhile")
    parser.add_argument("--plot", action="store_true", help="write benchmarks/results/distill.png and "
                        "distill-study.png")
    args = parser.parse_args(argv)
    teachers = dict(t.split("=", 1) for t in args.teacher)
    args.inits = dict(t.split("=", 1) for t in args.init)
    for name in args.only:
        key, entry = run_entry(name, {k: Path(v) for k, v in teachers.items()}, args)
        print(merge_result("distill", "runs", key, entry, {"benchmark": "distillation (the compression study)"}))
    if args.plot:
        print(plot(results_dir() / "distill.png"))
        print(plot_study(results_dir() / "distill-study.png"))


if __name__ == "__main__":
    main()
