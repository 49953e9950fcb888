"""`cfctool eval IN.st [--split test] [--json]`."""

from __future__ import annotations

import json
from typing import Optional

import typer
from typing_extensions import Annotated


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        checkpoint: Annotated[str, typer.Argument(help="Checkpoint (.st), or '-' for stdin.")],
        split: Annotated[str, typer.Option(help="Split to evaluate: test, val or train.")] = "test",
        data: Annotated[Optional[str], typer.Option("--data", help="Data directory (default: $CFCTOOL_DATA).")] = None,
        batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 512,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ):
        """Accuracy, loss and sizes of a checkpoint on a split of its task."""
        from cfctool.cli.io import read_checkpoint
        from cfctool.errors import ConfigError
        from cfctool.ops.evaluate import evaluate

        if split not in ("test", "val", "train"):
            raise ConfigError(f"--split must be test, val or train (got '{split}')")
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1 (got {batch_size})")
        ckpt = read_checkpoint(checkpoint)
        report = evaluate(ckpt, split=split, data_dir=data, batch_size=batch_size, threads=threads)
        report = {"checkpoint": checkpoint, "arch": ckpt.arch["name"], "dataset": ckpt.task["dataset"], **report}
        if as_json:
            print(json.dumps(report, indent=2))
            return
        width = max(map(len, report))
        for key, value in report.items():
            shown = f"{value:.6g}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
