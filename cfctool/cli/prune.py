"""`cfctool prune IN.st --ratio R [--global|--local] [--structured] [--scope ...] -o OUT.st`;
the flags are derived from `configs.PruneConfig`."""

from __future__ import annotations

import sys

import typer

from cfctool.cli import options
from cfctool.configs import PruneConfig


def prune_command(
    ctx: typer.Context,
    checkpoint: options.Checkpoint,
    output: options.output("Output checkpoint (.st), or '-' for stdout.", required=True),
    data: options.Data = None,
    quiet: options.Quiet = False,
    **settings,
):
    """Remove weights (unstructured) or whole units (--structured, a physically smaller model), then fine-tune."""
    from dataclasses import fields

    from cfctool.cli.io import check_output, read_checkpoint, write_checkpoint
    from cfctool.cli.progress import status_lines, training_progress
    from cfctool.ops.prune import prune, validate

    given = {f.name: settings[f.name] for f in fields(PruneConfig) if settings.get(f.name) is not None}
    cfg = PruneConfig(**given)
    cfg.validate()
    check_output(output)
    ckpt = read_checkpoint(checkpoint)
    validate(ckpt, cfg)
    say = status_lines(quiet)
    with training_progress(quiet) as progress:
        out = prune(ckpt, cfg, data_dir=data, argv=(ctx.obj or {}).get("argv"), notify=say, progress=progress)
    if not quiet:
        s = out.record["compression"]["pruning"]["sparsity"]
        print(f"weight sparsity {s['overall']:.1%} overall", file=sys.stderr)
    write_checkpoint(out, output)


def register(app: typer.Typer) -> None:
    options.with_parameters(prune_command, options.setting_parameters({PruneConfig: "Pruning settings"}))
    app.command("prune")(prune_command)
