"""The `cfctool` command: registers the commands and turns CfcError into `error: ...` + exit 1."""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from cfctool import __version__
from cfctool.cli import bench, compress, distill, evaluate, export, importer, info, report, train
from cfctool.errors import CfcError, ConfigError
from cfctool.escape import terminal
from cfctool.ops.methods import METHODS

EXIT_USAGE = 2  # the command line or a config file asks for something invalid
EXIT_FAILURE = 1  # anything else went wrong (files, data, training, writing)
EXIT_INTERNAL = 3  # a failure cfctool did not foresee: a bug to report
EXIT_BROKEN_PIPE = 141  # what a Unix tool killed by SIGPIPE reports (128 + 13)


def _version(value: bool):
    if value:
        typer.echo(f"cfctool {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
):
    pass


def _without_flag_types(params):
    """A plain flag (--quiet, --global/--local) takes no value: its help shows no `<bool>`."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.display_type_rich = lambda ctx: None
    return params


class _Command(TyperCommand):
    def get_params(self, ctx):
        return _without_flag_types(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx):
        return _without_flag_types(super().get_params(ctx))


# the commands in the order of `cfctool --help`, each with its module (`register(app)`), or
# None for a compression method (registered from METHODS; a method not named here follows reduce)
COMMANDS = (
    ("train", train),
    ("quantize", None),
    ("prune", None),
    ("distill", distill),
    ("reduce", None),
    ("eval", evaluate),
    ("info", info),
    ("bench", bench),
    ("export", export),
    ("import", importer),
    ("report", report),
)


def build_app() -> typer.Typer:
    """The `cfctool` command with every command registered (the compression methods from
    their registry)."""
    app = typer.Typer(
        name="cfctool",
        cls=_Group,
        help="Train and compress Closed-form Continuous-time (CfC) networks. Commands read and write NAME.st "
        "checkpoints (safetensors) with NAME.yaml sidecars; '-' means stdin/stdout.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)

    modules = dict(COMMANDS)
    names = [name for name, _ in COMMANDS]
    names[names.index("reduce") + 1 : names.index("reduce") + 1] = [m for m in METHODS if m not in modules]
    for name in names:
        module = modules.get(name)
        if module is None:
            compress.register(app, METHODS[name])
        else:
            module.register(app)
    groups = [g.typer_instance for g in app.registered_groups if g.typer_instance is not None]
    for command in [c for t in (app, *groups) for c in t.registered_commands]:
        command.callback = _guarded(command.callback)
        command.cls = _Command
    return app


class _PipeClosed(Exception):
    """stdout's reader went away (raised past Typer, which would exit 1)."""


class _Interrupted(Exception):
    """Ctrl-C inside a command (raised past Typer, which would exit 130 silently); the
    message, when there is one, says what was kept (a training state)."""


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
        except KeyboardInterrupt as exc:
            raise _Interrupted(str(exc)) from None

    return run


app = build_app()


def main(argv: list[str] | None = None) -> None:
    """Entry point; set CFCTOOL_TRACEBACK=1 to see the Python traceback of an error.

    Exit codes: 0 success; 2 usage errors (unknown command or option, a value of the wrong
    type or out of range, from the command line or a --config file: ConfigError); 1 any
    other error; 3 an internal error (a bug: one `error: internal error ...` line); 141 when
    stdout was closed early (e.g. `cfctool info x.st | head -1`); 130 when interrupted.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # commands record their own invocation in checkpoint history via ctx.obj["argv"]
        code = app(args=args, prog_name="cfctool", obj={"argv": ["cfctool", *args]}, standalone_mode=False)
        sys.stdout.flush()
        if isinstance(code, int) and code:
            sys.exit(code)
    except CfcError as exc:
        if os.environ.get("CFCTOOL_TRACEBACK"):
            raise
        print(f"error: {terminal(exc, lines=True)}", file=sys.stderr)
        sys.exit(EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE)
    except (_PipeClosed, BrokenPipeError):
        _quiet_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except (_Interrupted, KeyboardInterrupt) as exc:
        print(f"error: {str(exc) or 'interrupted; no output was written'}", file=sys.stderr)
        sys.exit(130)
    except MemoryError:  # the machine's, or a limit's (ulimit -v, a scheduler's memory limit)
        if os.environ.get("CFCTOOL_TRACEBACK"):
            raise
        print(
            "error: out of memory; nothing was written. Lower --batch-size (or --stream-buffer), train a table "
            "larger than memory with --stream, or allow more memory",
            file=sys.stderr,
        )
        sys.exit(EXIT_FAILURE)
    except Exception as exc:
        if type(exc).__name__ == "Abort":  # Ctrl-C while the command line was being read
            print("error: interrupted; no output was written", file=sys.stderr)
            sys.exit(130)
        usage = _usage_error(exc)
        if usage is None:
            if os.environ.get("CFCTOOL_TRACEBACK"):
                raise
            # the last resort: a bug of cfctool's (or a failure nobody foresaw), one line, not a traceback
            print(
                f"error: internal error ({type(exc).__name__}: {terminal(exc, 300)}); please report it with the "
                "command line, and run it again with CFCTOOL_TRACEBACK=1 for the details",
                file=sys.stderr,
            )
            sys.exit(EXIT_INTERNAL)
        if usage:
            print(f"error: {terminal(usage, lines=True)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _usage_error(exc: Exception) -> str | None:
    """The one-line message of a command-line usage error (an unknown option, a value of the
    wrong type, a missing argument: the parser's exceptions, recognised by their interface),
    '' when the parser already printed the help instead, None for anything else."""
    if getattr(exc, "exit_code", None) != EXIT_USAGE or not hasattr(exc, "format_message"):
        return None
    if type(exc).__name__ == "NoArgsIsHelpError":
        return ""
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None and getattr(ctx, "command_path", None) else ""
    return f"{exc.format_message()}{where}"


def _quiet_stdout() -> None:
    """The reader went away: point stdout at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
