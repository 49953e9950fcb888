"""`cfctool prune IN.st --ratio R [--global|--local] [--structured] [--scope ...] -o OUT.st`;
the flags are derived from `configs.PruneConfig`."""

from __future__ import annotations

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
    from cfctool.cli.io import run_compression
    from cfctool.ops.prune import prune, validate

    run_compression(ctx, PruneConfig, prune, validate, checkpoint, output, data, quiet, settings,
                    lambda out: f"weight sparsity {out.record['compression']['pruning']['sparsity']['overall']:.1%} "
                                "overall")


def register(app: typer.Typer) -> None:
    options.with_parameters(prune_command, options.setting_parameters({PruneConfig: "Pruning settings"}))
    app.command("prune")(prune_command)
