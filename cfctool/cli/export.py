"""`cfctool export IN.st -o model.onnx` and `cfctool export IN.st --format c -o DIR`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cfctool.cli import options
from cfctool.configs.commands import ExportConfig


def register(app: typer.Typer) -> None:
    def export_command(
        checkpoint: options.Checkpoint,
        output: Annotated[
            str,
            options.output(
                "The ONNX file to write (--format onnx), the directory that receives NAME.h and "
                "NAME.c (--format c), or the .safetensors file (--format ncps)."
            ),
        ],
        data: options.Data = None,
        config: options.Config = None,
        print_config: options.PrintConfig = False,
        quiet: options.Quiet = False,
        **settings,
    ):
        """Export to ONNX (a Scan graph for any length, or a loop unrolled at one length) or to C99, verified against PyTorch.

        ONNX: CfC models and the Euler ODE-RNN export their folded step as the body of a Scan
        (batch and length dynamic; int8 checkpoints as MatMulInteger); other models are unrolled
        at --seq-len; the graph is run with ONNX Runtime on real inputs and refused when it does
        not reproduce PyTorch (the onnx extra). C: a 'default'-mode CfC as NAME.h and NAME.c
        (no heap, only <math.h> and <stdint.h>), compiled with the system compiler and checked
        against the folded engine when one is present; the sizes are printed.
        """
        from pathlib import Path

        from cfctool.cli.io import check_output, read_checkpoint
        from cfctool.cli.progress import status_lines
        from cfctool.errors import ConfigError
        from cfctool.ops.bench import workload
        from cfctool.ops.export import FORMATS

        cfg = options.resolved(ExportConfig, "export", config, settings)
        if print_config:
            options.print_config("export", cfg)
            return
        format, name, seq_len = cfg.format, cfg.name, cfg.seq_len
        fmt = FORMATS[format]
        if name is not None:
            from cfctool.engines.c_source import checked_name

            checked_name(name)
        if fmt.suffix is not None:
            check_output(output, sidecar=False, suffix=fmt.suffix, inputs=(checkpoint, config))
        elif Path(output).exists() and not Path(output).is_dir():
            raise ConfigError(f"--format {format} writes into a directory; {output} is a file")
        elif not Path(output).resolve().parent.is_dir():
            raise ConfigError(f"the directory {Path(output).resolve().parent} does not exist; create it first")
        fmt.require()
        ckpt = read_checkpoint(checkpoint)
        fmt.check(ckpt)
        say = status_lines(quiet)
        batches, _, _ = workload(ckpt, "test", data, 64, seq_len, 1, notify=say)
        say(
            "generating C and checking it against the engine it mirrors"
            if format == "c"
            else f"exporting ({format}) and verifying it"
        )
        extra = (
            {
                "name": name,
                "token_table": cfg.token_table or "auto",
                "row_align": cfg.row_align,
                "sparse": cfg.sparse or "auto",
            }
            if format == "c"
            else {}
        )
        info = fmt.write(ckpt, output, batches[0], **extra)
        if not quiet or format == "onnx":  # the ONNX check is its result line
            print(fmt.summary(info), file=sys.stderr)
        for path in info["outputs"]:
            print(path)

    command = options.with_parameters(export_command, options.setting_parameters({ExportConfig: "Export settings"}))
    epilog = options.example("cfctool export small.st -o small.onnx; cfctool export small.st --format c -o edge/")
    app.command("export", epilog=epilog)(command)
