"""`cfctool reduce IN.st --method {pod-deim,qdeim,odeim,pod,svd,apoz} --dim K ... -o OUT.st`;
the flags are derived from `configs.ReduceConfig`."""

from __future__ import annotations

import typer

from cfctool.cli import options
from cfctool.configs import ReduceConfig


def reduce_command(
    ctx: typer.Context,
    checkpoint: options.Checkpoint,
    output: options.output("Output checkpoint (.st), or '-' for stdout.", required=True),
    data: options.Data = None,
    quiet: options.Quiet = False,
    **settings,
):
    """Model-order reduction of a Neural ODE or a CfC (POD-DEIM, Q-DEIM, ODEIM, POD, SVD, APoZ)."""
    from cfctool.cli.io import run_compression
    from cfctool.ops.reduce import reduce, validate

    def summary(out) -> str:
        r = out.record["compression"]["reduction"]
        if "heads_shape" in r:
            return f"svd: heads {r['heads_shape'][0]}x{r['heads_shape'][1]} -> rank {out.arch['head_rank']}"
        return f"{r['method']}: state {r.get('state_size')} -> {out.arch.get('dim', out.arch.get('hidden'))}"

    run_compression(ctx, ReduceConfig, reduce, validate, checkpoint, output, data, quiet, settings, summary)


def register(app: typer.Typer) -> None:
    options.with_parameters(reduce_command, options.setting_parameters({ReduceConfig: "Reduction settings"}))
    app.command("reduce")(reduce_command)
