"""`cfctool eval IN.st [--split test] [--json]`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cfctool import engine_catalog as catalog
from cfctool.cli import options


def register(app: typer.Typer) -> None:
    @app.command("eval", epilog=options.example("cfctool eval model.st --json > model.eval.json"))
    def eval_command(
        checkpoint: options.Checkpoint,
        split: Annotated[str, typer.Option(help="Split to evaluate: test, val or train.")] = "test",
        data: options.Data = None,
        batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 512,
        max_samples: Annotated[int | None, typer.Option(help="Evaluate a seeded random subset of N samples.")] = None,
        threads: options.Threads = None,
        engine: Annotated[
            str,
            typer.Option(
                help="auto (the fastest exact engine for the checkpoint) or an engine by "
                "name: " + catalog.listing(catalog.RUNNABLE) + "."
            ),
        ] = "auto",
        as_json: options.Json = False,
        quiet: options.Quiet = False,
    ):
        """Accuracy, loss and sizes of a checkpoint on a split of its task; names the engine that ran.

        Runs the whole split (or a seeded subset, --max-samples) on the fastest exact engine for the
        checkpoint (folded, folded-int8 for a quantized CfC, else the training loop) and prints
        accuracy (top-3 where it applies), loss, parameters, non-zeros, file bytes, sparsity and the
        size-aware normalised accuracy; --json for scripts. Data comes from --data, $CFCTOOL_DATA or
        the directory recorded at training.
        """
        from cfctool.cli.io import read_checkpoint
        from cfctool.cli.progress import status_lines
        from cfctool.ops.evaluate import evaluate

        ckpt = read_checkpoint(checkpoint)
        report = evaluate(
            ckpt,
            split=split,
            data_dir=data,
            batch_size=batch_size,
            threads=threads,
            max_samples=max_samples,
            notify=status_lines(quiet),
            engine=engine,
        )
        report = {"checkpoint": checkpoint, "arch": ckpt.arch["name"], "dataset": ckpt.task["dataset"], **report}
        if as_json:
            print(json.dumps(report, indent=2))
            return
        width = max(map(len, report))
        for key, value in report.items():
            if isinstance(value, dict):  # e.g. sparsity per tensor: one indented line each
                print(key)
                inner = max(map(len, value), default=0)
                for name, v in value.items():
                    print(f"  {name:<{inner}}  {v:.6g}" if isinstance(v, float) else f"  {name:<{inner}}  {v}")
                continue
            shown = f"{value:.6g}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
