"""`cfctool import ncps WEIGHTS.safetensors -o OUT.st --dataset NAME`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cfctool.cli import options


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="import", help="Bring a model trained elsewhere into cfctool (ncps).", no_args_is_help=True
    )

    @group.command(
        "ncps",
        epilog=options.example(
            "cfctool import ncps weights.safetensors --dataset person_activity --readout fc -o pa.st"
        ),
    )
    def ncps_command(
        weights: Annotated[
            str,
            typer.Argument(
                help="The state dict of a module holding an ncps CfC or LTC, as safetensors (never a pickle)."
            ),
        ],
        dataset: Annotated[
            str, typer.Option(help="The data set the model reads (its task: input and output sizes, vocabulary).")
        ],
        output: Annotated[str, options.output("The checkpoint to write (.st), or '-' for stdout.")],
        readout: Annotated[
            str | None,
            typer.Option(
                help="Key prefix of the nn.Linear after the ncps module "
                "(e.g. 'fc'); without it the module's outputs are the "
                "logits."
            ),
        ] = None,
        embedding: Annotated[
            str | None, typer.Option(help="Key prefix of the nn.Embedding before it (token data sets).")
        ] = None,
        mode: Annotated[
            str | None,
            typer.Option(
                help="CfC mode: default, no_gate or pure (default: pure when the weights have w_tau, else default)."
            ),
        ] = None,
        activation: Annotated[
            str, typer.Option(help="The CfC backbone's activation (ncps's `activation`).")
        ] = "lecun_tanh",
        backbone_dropout: Annotated[
            float | None, typer.Option(help="ncps's backbone_dropout (needed when the backbone has Dropout layers).")
        ] = None,
        ode_unfolds: Annotated[int, typer.Option(help="LTC: ncps's ode_unfolds.")] = 6,
        ltc_constraints: Annotated[
            str,
            typer.Option(
                help="LTC: implicit (ncps LTC's default: softplus) or explicit (implicit_param_constraints=False)."
            ),
        ] = "implicit",
        wiring_seed: Annotated[
            int | None, typer.Option(help="Wired CfC: the AutoNCP seed, checked against the stored masks (recorded).")
        ] = None,
        sparsity: Annotated[
            float | None,
            typer.Option(help="Wired CfC: AutoNCP's sparsity_level (recorded; default: measured from the masks)."),
        ] = None,
        data: options.Data = None,
        quiet: options.Quiet = False,
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
        from cfctool.ops.import_ncps import ImportNcpsConfig, import_ncps, read_weights

        cfg = ImportNcpsConfig(
            dataset=dataset,
            mode=mode,
            activation=activation,
            readout=readout,
            embedding=embedding,
            backbone_dropout=backbone_dropout,
            ode_unfolds=ode_unfolds,
            ltc_constraints=ltc_constraints,
            wiring_seed=wiring_seed,
            sparsity=sparsity,
            data_dir=data,
        )
        cfg.validate()
        state = read_weights(weights)  # a pickle or a missing file fails before the output is checked or data read
        check_output(output, inputs=(weights,))
        ckpt = import_ncps(weights, cfg, state=state, argv=sys.argv[1:], notify=status_lines(quiet))
        write_checkpoint(ckpt, output)

    app.add_typer(group, name="import")
