"""The `cfctool` command: registers the commands and turns CfcError into `error: ...` + exit 1."""

from __future__ import annotations

import os
import sys

import typer

from cfctool import __version__
from cfctool.errors import CfcError

app = typer.Typer(
    name="cfctool",
    help="Train and compress Closed-form Continuous-time (CfC) networks. "
    "Commands read and write NAME.st checkpoints (safetensors) with NAME.yaml sidecars; '-' means stdin/stdout.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"cfctool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    pass


def _register() -> None:
    from cfctool.cli import bench, evaluate, info, pending, train

    for module in (train, evaluate, info, bench, pending):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point; set CFCTOOL_TRACEBACK=1 to see the Python traceback of an error."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # commands record their own invocation in checkpoint history via ctx.obj["argv"]
        app(args=args, prog_name="cfctool", obj={"argv": ["cfctool", *args]})
    except CfcError as exc:
        if os.environ.get("CFCTOOL_TRACEBACK"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted; no output was written", file=sys.stderr)
        sys.exit(130)
