"""Training curves of named runs into benchmarks/results/runs.yaml: validation per epoch,
epochs, steps and seconds, and the settings chosen beyond the preset, read from each run's
training state (a run still going, stopped before its end, or kept after it with
--keep-state) or from its finished checkpoint. Experiments whose runs live in scratch folders keep their
numbers this way after the folders are gone.

    python -m benchmarks.runs kd-t2=/work/runs/kd-t2.st.train-state \\
        wd=runs/pmnist-ode-rnn-wd.st.train-state --test --note "1 thread each, two at a time"

An entry is replaced when its name is given again (a run measured further along).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks.common import machine, merge_result


def entry(path: Path, test: tuple[str, int] | None = None) -> dict:
    """The run's record; with `test` (data directory, threads), a training state's weights
    are also tested as they are now."""
    from cfctool import checkpoint
    from cfctool.checkpoint import file_sha256
    from cfctool.training.state import state_summary

    state = state_summary(path)
    if state is not None:
        tested = {"test_now": state_test(path, state, *test)} if test else {}
        state.pop("settings")  # all of them; the ones chosen are in changed_settings
        return {"kind": "training state", **state, "sha256": file_sha256(path), **tested}
    ckpt = checkpoint.load(path)  # a clear error for anything that is neither
    metrics = ckpt.record.get("metrics") or {}
    last = (ckpt.record.get("history") or [{}])[-1]
    return {"kind": "checkpoint", "source": str(path), "sha256": file_sha256(path), "trained_by": last.get("argv"),
            "epochs_done": metrics.get("epochs_run"), "steps": metrics.get("steps"),
            "train_seconds": metrics.get("train_seconds"), "best_epoch": metrics.get("best_epoch"),
            "test": {k: metrics.get(k) for k in ("accuracy", "loss", "engine") if k in metrics},
            "epochs": metrics.get("epochs")}


def state_test(path: Path, summary: dict, data_dir: str, threads: int) -> dict:
    """Test-split metrics of the weights a training state holds now (its weight average when
    it keeps one), on the family's fastest exact engine: how good a stopped run is."""
    import torch
    from safetensors.torch import load_file

    from cfctool.configs import all_keys, owner_of, resolve
    from cfctool.data.registry import load_dataset
    from cfctool.engines import fastest
    from cfctool.families.build import arch_record, build_model
    from cfctool.metrics import split_metrics

    torch.set_num_threads(threads)
    chosen = {k: v for k, v in summary["changed_settings"].items()
              if k in all_keys() and owner_of(k) in ("arch", "data")}
    run = resolve(summary["settings"]["dataset"], summary["settings"]["name"],
                  overrides={**chosen, "data_dir": data_dir})
    dataset = load_dataset(run.data, seed=summary["settings"]["seed"])
    model = build_model(arch_record(run.arch, dataset.task), dataset.task).eval()
    which = "ema" if summary["weight_average"] else "model"
    tensors = load_file(str(path))
    model.load_state_dict({k[len(which) + 1:]: v for k, v in tensors.items() if k.startswith(which + ".")})
    chosen = fastest(model)
    engine_name, engine = chosen.name, chosen.module
    metrics = split_metrics(engine, dataset.splits["test"], dataset.task, 500)
    return {**{k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}, "engine": engine_name,
            "weights": "the weight average" if which == "ema" else "the current weights",
            "after_epoch": summary["epochs_done"], "threads": threads}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=PATH", help="a training state or a checkpoint")
    parser.add_argument("--note", default="", help="what ran beside them, threads, why they stopped")
    parser.add_argument("--test", action="store_true", help="also test the weights each training state holds now")
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA", "../shared/data"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    named = []
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SystemExit(f"{item}: expected NAME=PATH of an existing training state or checkpoint")
        named.append((name, Path(path)))
    for name, path in named:
        found = entry(path, (args.data, args.threads) if args.test else None)
        out = merge_result("runs", "runs", name, {**found, "note": args.note, "machine": machine(),
                                                  "command": "python -m benchmarks.runs " + " ".join(sys.argv[1:])},
                           {"benchmark": "training curves of named runs (validation per epoch)"})
    print(out)


if __name__ == "__main__":
    main()
