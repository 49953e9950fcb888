"""`cfctool quantize IN.st --scheme {static,dynamic,qat} [--bits 8|4] ... -o OUT.st`; the
flags are derived from `configs.QuantizeConfig`."""

from __future__ import annotations

import typer

from cfctool.cli import options
from cfctool.configs import QuantizeConfig


def quantize_command(
    ctx: typer.Context,
    checkpoint: options.Checkpoint,
    output: options.output("Output checkpoint (.st), or '-' for stdout.", required=True),
    data: options.Data = None,
    quiet: options.Quiet = False,
    **settings,
):
    """Store weights as int8/int4 with calibrated activation scales; eval and bench then run the int8 engine."""
    from cfctool.cli.io import run_compression
    from cfctool.ops.quantize import quantize, validate

    def summary(out) -> str | None:
        q = out.record["compression"]["quantization"]
        if not q.get("state_mse"):
            return None
        return (f"state MSE vs fp32 on {q['calib_sequences']} calibration sequences: {q['state_mse']['mean']:.3g} "
                f"(final state {q['state_mse']['final_state_last_cell']:.3g})")

    run_compression(ctx, QuantizeConfig, quantize, validate, checkpoint, output, data, quiet, settings, summary)


def register(app: typer.Typer) -> None:
    options.with_parameters(quantize_command,
                            options.setting_parameters({QuantizeConfig: "Quantization settings"}))
    app.command("quantize")(quantize_command)
