"""`cfctool quantize IN.st --scheme {static,dynamic,qat} [--bits 8|4] ... -o OUT.st`; the
flags are derived from `configs.QuantizeConfig`."""

from __future__ import annotations

import sys

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
    from dataclasses import fields

    from cfctool.cli.io import check_output, read_checkpoint, write_checkpoint
    from cfctool.cli.progress import status_lines, training_progress
    from cfctool.ops.quantize import quantize, validate

    given = {f.name: settings[f.name] for f in fields(QuantizeConfig) if settings.get(f.name) is not None}
    cfg = QuantizeConfig(**given)
    cfg.validate()
    check_output(output)
    ckpt = read_checkpoint(checkpoint)
    validate(ckpt, cfg)
    say = status_lines(quiet)
    with training_progress(quiet) as progress:
        out = quantize(ckpt, cfg, data_dir=data, argv=(ctx.obj or {}).get("argv"), notify=say, progress=progress)
    q = out.record["compression"]["quantization"]
    if not quiet and q.get("state_mse"):
        print(f"state MSE vs fp32 on {q['calib_sequences']} calibration sequences: {q['state_mse']['mean']:.3g} "
              f"(final state {q['state_mse']['final_state_last_cell']:.3g})", file=sys.stderr)
    write_checkpoint(out, output)


def register(app: typer.Typer) -> None:
    options.with_parameters(quantize_command,
                            options.setting_parameters({QuantizeConfig: "Quantization settings"}))
    app.command("quantize")(quantize_command)
