"""`cfctool import ncps WEIGHTS.safetensors -o OUT.st --dataset NAME`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cfctool.cli import options
from cfctool.configs.commands import ImportNcpsConfig


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="import", help="Bring a model trained elsewhere into cfctool (ncps).", no_args_is_help=True
    )

    def ncps_command(
        weights: Annotated[
            str,
            typer.Argument(
                help="The state dict of a module holding an ncps CfC or LTC, as safetensors (never a pickle)."
            ),
        ],
        output: Annotated[str, options.output("The checkpoint to write (.st), or '-' for stdout.")],
        data: Annotated[
            str | None,
            typer.Option("--data", help="Data directory of the data set (default: $CFCTOOL_DATA)."),
        ] = None,
        config: options.Config = None,
        print_config: options.PrintConfig = False,
        quiet: options.Quiet = False,
        **settings,
    ):
        """Import a model trained with ncps (CfC in any mode, mixed memory, NCP-wired CfC, LTC).

        In the ncps code, save the weights with safetensors.torch.save_file(model.state_dict(),
        "weights.safetensors"). Sizes come from the tensor shapes, the rest from the options; a
        contradiction between them is an error naming both. The result is an ordinary
        checkpoint (history: import ncps, the file's sha256) that every command takes; its
        forward equals ncps's for the same inputs with dt per step as (batch, 1).
        """
        from cfctool.cli.io import check_output, write_checkpoint
        from cfctool.cli.progress import status_lines
        from cfctool.ops.import_ncps import import_ncps, read_weights

        cfg = options.resolved(ImportNcpsConfig, "import", config, {**settings, "data_dir": data})
        if print_config:
            options.print_config("import", cfg)
            return
        state = read_weights(weights)  # a pickle or a missing file fails before the output is checked or data read
        check_output(output, inputs=(weights, config))
        ckpt = import_ncps(weights, cfg, state=state, argv=sys.argv[1:], notify=status_lines(quiet))
        write_checkpoint(ckpt, output)

    command = options.with_parameters(ncps_command, options.setting_parameters({ImportNcpsConfig: "Import settings"}))
    epilog = options.example("cfctool import ncps weights.safetensors --dataset person_activity --readout fc -o pa.st")
    group.command("ncps", epilog=epilog)(command)
    app.add_typer(group, name="import")
