"""The `cfctool` command: registers the commands and turns CfcError into `error: ...` + exit 1."""

from __future__ import annotations

import os
import sys

import typer

from cfctool import __version__
from cfctool.cli import bench, compress, distill, evaluate, export, info, report, train
from cfctool.errors import CfcError, ConfigError
from cfctool.ops.methods import METHODS

EXIT_USAGE = 2  # the command line or a config file asks for something invalid
EXIT_FAILURE = 1  # anything else went wrong (files, data, training, writing)
EXIT_BROKEN_PIPE = 141  # what a Unix tool killed by SIGPIPE reports (128 + 13)

def _version(value: bool):
    if value:
        typer.echo(f"cfctool {__version__}")
        raise typer.Exit()


def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    pass


# the order of `cfctool --help`; a compression method not named here follows `reduce`
ORDER = ("train", "quantize", "prune", "distill", "reduce", "eval", "info", "bench", "export", "report")


def build_app() -> typer.Typer:
    """The `cfctool` command with every command registered (the compression methods from
    their registry)."""
    app = typer.Typer(
        name="cfctool",
        help="Train and compress Closed-form Continuous-time (CfC) networks. Commands read and write NAME.st "
        "checkpoints (safetensors) with NAME.yaml sidecars; '-' means stdin/stdout.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)

    others = {"train": train, "distill": distill, "eval": evaluate, "info": info, "bench": bench, "export": export,
              "report": report}
    names = list(ORDER)
    names[names.index("reduce") + 1:names.index("reduce") + 1] = [m for m in METHODS if m not in ORDER]
    for name in names:
        if name in METHODS:
            compress.register(app, METHODS[name])
        else:
            others[name].register(app)
    for command in app.registered_commands:
        command.callback = _guarded(command.callback)
    return app


class _PipeClosed(Exception):
    """stdout's reader went away (raised past Typer, which would exit 1)."""


class _Interrupted(Exception):
    """Ctrl-C inside a command (raised past Typer, which would exit 130 silently)."""


def _guarded(callback):
    import functools

    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            result = callback(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
            return result
        except BrokenPipeError:
            raise _PipeClosed() from None
        except KeyboardInterrupt:
            raise _Interrupted() from None
    return run


app = build_app()


def main(argv: list[str] | None = None) -> None:
    """Entry point; set CFCTOOL_TRACEBACK=1 to see the Python traceback of an error.

    Exit codes: 0 success; 2 usage errors (unknown command or option, a value of the wrong
    type or out of range, from the command line or a --config file: ConfigError); 1 any
    other error; 141 when stdout was closed early (e.g. `cfctool info x.st | head -1`);
    130 when interrupted.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # commands record their own invocation in checkpoint history via ctx.obj["argv"]
        app(args=args, prog_name="cfctool", obj={"argv": ["cfctool", *args]}, standalone_mode=True)
        sys.stdout.flush()
    except CfcError as exc:
        if os.environ.get("CFCTOOL_TRACEBACK"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE)
    except (_PipeClosed, BrokenPipeError):
        _quiet_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except (_Interrupted, KeyboardInterrupt):
        print("error: interrupted; no output was written", file=sys.stderr)
        sys.exit(130)


def _quiet_stdout() -> None:
    """The reader went away: point stdout at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
