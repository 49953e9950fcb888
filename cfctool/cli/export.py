"""`cfctool export IN.st -o model.onnx`."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from typing_extensions import Annotated

from cfctool.cli import options


def register(app: typer.Typer) -> None:
    @app.command("export", epilog=options.example("cfctool export small.st -o small.onnx"))
    def export_command(
        checkpoint: options.Checkpoint,
        output: options.output("ONNX file to write.", required=True),
        seq_len: Annotated[Optional[int], typer.Option(help="Length of the verification inputs and of an unrolled graph (default: the task's).")] = None,
        data: options.Data = None,
        quiet: options.Quiet = False,
    ):
        """Export to ONNX (a Scan graph for any length, or a loop unrolled at one length), verified against PyTorch.

        CfC models and the Euler ODE-RNN export their folded step as the body of a Scan (batch
        and length dynamic; int8 checkpoints as MatMulInteger); other models are unrolled at
        --seq-len. The graph is run with ONNX Runtime on real inputs and refused when it does
        not reproduce PyTorch (the onnx extra).
        """
        from cfctool.cli.io import check_output, read_checkpoint
        from cfctool.cli.progress import status_lines
        from cfctool.ops.bench import workload
        from cfctool.ops.export import export_onnx, require_onnx

        check_output(output, sidecar=False, suffix=".onnx", inputs=(checkpoint,))
        require_onnx()
        ckpt = read_checkpoint(checkpoint)
        say = status_lines(quiet)
        batches, _, _ = workload(ckpt, "test", data, 64, seq_len, 1, notify=say)
        say("exporting and verifying against PyTorch")
        info = export_onnx(ckpt, output, batches[0])
        print(f"max abs diff vs PyTorch ({info['verified_against']}) {info['max_abs_diff']:.3g} (allowed "
              f"{info['allowed_diff']:.3g}; {info['rows_within_allowed']} of {info['rows']} rows within it), "
              f"{info['argmax_mismatches']} changed predictions, on {info['verified_on']} sequences "
              f"of {'/'.join(map(str, info['verified_seq_lens']))} steps ({info['graph']} graph, inputs "
              f"{', '.join(info['inputs'])})", file=sys.stderr)
        print(output)
