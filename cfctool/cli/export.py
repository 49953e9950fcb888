"""`cfctool export IN.st -o model.onnx` and `cfctool export IN.st --format c -o DIR`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cfctool.cli import options


def register(app: typer.Typer) -> None:
    @app.command(
        "export",
        epilog=options.example("cfctool export small.st -o small.onnx; cfctool export small.st --format c -o edge/"),
    )
    def export_command(
        checkpoint: options.Checkpoint,
        output: Annotated[
            str,
            options.output(
                "The ONNX file to write (--format onnx), the directory that receives NAME.h and "
                "NAME.c (--format c), or the .safetensors file (--format ncps)."
            ),
        ],
        format: Annotated[
            str,
            typer.Option(
                "--format",
                help="onnx (an ONNX graph), c (C99 source for any CPU or "
                "microcontroller) or ncps (the weights in ncps's "
                "layout).",
            ),
        ] = "onnx",
        name: Annotated[
            str | None, typer.Option(help="--format c: the C name of the model (default: the checkpoint's file name).")
        ] = None,
        token_table: Annotated[
            str | None,
            typer.Option(
                help="--format c, token models: how token ids enter. folded: one float row per token (a lookup, the "
                "fastest; vocabulary x first width floats); embedding: the embedding rows (int8 where quantized, "
                "only the non-zeros where pruned), projected at every step (the smallest flash); auto (default): "
                "embedding when the embedding is at least half zeros, else folded."
            ),
        ] = None,
        sparse: Annotated[
            str | None,
            typer.Option(
                help="--format c: how each weight product runs. auto (default): only its non-zeros where the "
                "product is sparse enough to run faster so (measured per form), else dense; always; never."
            ),
        ] = None,
        row_align: Annotated[
            int | None,
            typer.Option(
                help="--format c, quantized models: pad each integer row to a multiple of this many bytes (default "
                "16: whole vector registers on a desktop CPU; 4 suits a Cortex-M4's 32-bit multiply-adds).",
                min=1,
                max=4096,
            ),
        ] = None,
        seq_len: Annotated[
            int | None,
            typer.Option(help="Length of the verification inputs and of an unrolled graph (default: the task's)."),
        ] = None,
        data: options.Data = None,
        quiet: options.Quiet = False,
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

        if format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)} (got '{format}')")
        fmt = FORMATS[format]
        if row_align is not None and format != "c":
            raise ConfigError("--row-align applies to --format c")
        if name is not None:
            from cfctool.engines.c_source import checked_name

            if format != "c":
                raise ConfigError("--name applies to --format c")
            checked_name(name)
        if token_table is not None:
            from cfctool.engines.c_source import TOKEN_TABLES

            if format != "c":
                raise ConfigError("--token-table applies to --format c")
            if token_table not in TOKEN_TABLES:
                raise ConfigError(f"--token-table must be one of {', '.join(TOKEN_TABLES)} (got '{token_table}')")
        if sparse is not None:
            from cfctool.engines.c_products import SPARSE_CHOICES

            if format != "c":
                raise ConfigError("--sparse applies to --format c")
            if sparse not in SPARSE_CHOICES:
                raise ConfigError(f"--sparse must be one of {', '.join(SPARSE_CHOICES)} (got '{sparse}')")
        if fmt.suffix is not None:
            check_output(output, sidecar=False, suffix=fmt.suffix, inputs=(checkpoint,))
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
            {"name": name, "token_table": token_table or "auto", "row_align": row_align, "sparse": sparse or "auto"}
            if format == "c"
            else {}
        )
        info = fmt.write(ckpt, output, batches[0], **extra)
        if not quiet or format == "onnx":  # the ONNX check is its result line
            print(fmt.summary(info), file=sys.stderr)
        for path in info["outputs"]:
            print(path)
