"""`cfctool METHOD IN.st [settings] -o OUT.st` for every compression method of
`cfctool.ops.methods.METHODS` (quantize, prune, reduce, ...): the flags are derived from
the method's config dataclass, the help from its record."""

from __future__ import annotations

import typer

from cfctool.cli import options
from cfctool.ops.methods import Method


def command(method: Method):
    """The Typer command of one method: settings from the flags, then `run_compression`."""

    def compress_command(
        ctx: typer.Context,
        checkpoint: options.Checkpoint,
        output: options.OutputCheckpoint = None,
        data: options.Data = None,
        config: options.Config = None,
        print_config: options.PrintConfig = False,
        overwrite: options.Overwrite = False,
        quiet: options.Quiet = False,
        **settings,
    ):
        from cfctool.cli.io import run_compression

        run_compression(ctx, method, checkpoint, output, data, quiet, settings, config, overwrite, print_config)

    compress_command.__name__ = f"{method.name}_command"
    compress_command.__doc__ = f"{method.help}\n\n{method.description}"
    return options.with_parameters(compress_command, options.setting_parameters({method.config: method.panel}))


def register(app: typer.Typer, method: Method) -> None:
    app.command(method.name, epilog=options.example(method.example))(command(method))
