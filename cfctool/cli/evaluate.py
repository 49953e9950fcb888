"""`cfctool eval IN.st [--split test] [--json]`."""

from __future__ import annotations

import json

import typer

from cfctool.cli import options
from cfctool.configs.commands import EvalConfig


def register(app: typer.Typer) -> None:
    def eval_command(
        checkpoint: options.Checkpoint,
        data: options.Data = None,
        config: options.Config = None,
        print_config: options.PrintConfig = False,
        as_json: options.Json = False,
        quiet: options.Quiet = False,
        **settings,
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

        cfg = options.resolved(EvalConfig, "eval", config, settings)
        if print_config:
            options.print_config("eval", cfg)
            return
        ckpt = read_checkpoint(checkpoint)
        report = evaluate(ckpt, **cfg.to_dict(), data_dir=data, notify=status_lines(quiet))
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

    command = options.with_parameters(eval_command, options.setting_parameters({EvalConfig: "Evaluation settings"}))
    app.command("eval", epilog=options.example("cfctool eval model.st --json > model.eval.json"))(command)
