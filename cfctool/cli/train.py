"""`cfctool train DATASET --arch ARCH [settings] -o OUT.st`; the setting flags are derived
from the config dataclasses and the model families (see cli.options)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cfctool.cli import options
from cfctool.configs import ARCHS
from cfctool.data.names import DATASETS


def train_command(
    ctx: typer.Context,
    dataset: Annotated[
        str,
        typer.Argument(
            help=f"Data set: {', '.join(DATASETS)} (xor is generated: no files "
            "needed), a description of your own data (.yaml), or your own data "
            "file or folder."
        ),
    ] = "xor",
    arch: Annotated[str, typer.Option(help=f"Architecture: {', '.join(ARCHS)}.")] = "cfc",
    output: Annotated[
        str | None, options.output("Output checkpoint (.st), or '-' for stdout. Default: DATASET-ARCH.st")
    ] = None,
    preset: Annotated[str, typer.Option(help="Named preset of the data set (e.g. xor: default, paper).")] = "default",
    config: options.Config = None,
    data: options.Data = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted run from the training state "
            "written beside the output after every epoch (OUT.st.train-state).",
        ),
    ] = False,
    init_from: Annotated[
        str | None,
        typer.Option(
            "--init-from",
            help="Warm-start from this checkpoint's weights "
            "(same arch and data set; fresh optimiser and schedule; its "
            "weights compete as epoch 0).",
        ),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config", help="Print the resolved settings (preset + config file + flags) as YAML and exit."
        ),
    ] = False,
    quiet: options.Quiet = False,
    **settings,
):
    """Train a model and write its checkpoint; prints the output path.

    Settings come from the preset of the (data set, architecture) pair, then --config FILE, then
    the flags; --print-config shows what a run would use. The weights kept are those of the best
    validation epoch. The training state is written beside the output every epoch (and every
    --state-every minutes), so --resume continues an interrupted run to the same weights.
    """
    from cfctool.cli.io import check_output, write_checkpoint
    from cfctool.cli.progress import interrupted_run, status_lines, training_progress
    from cfctool.configs import dataset_argument, load_config_file, resolve, stored
    from cfctool.errors import ConfigError

    overrides = {k: v for k, v in settings.items() if v is not None}
    if data is not None:
        overrides["data_dir"] = data
    name, described = dataset_argument(dataset)  # a description < --config < the flags
    run = resolve(
        name,
        arch,
        preset=preset,
        file_values={**described, **(load_config_file(config) if config else {})},
        overrides=overrides,
    )
    if print_config:
        import yaml

        print(yaml.safe_dump(stored("train", run.to_dict()), sort_keys=False), end="")
        return
    out = output or f"{dataset if name == dataset else Path(dataset).stem}-{arch}.st"
    if resume and out == "-":
        raise ConfigError("--resume needs an output file (its training state is kept beside it), not '-'")
    check_output(out, inputs=(init_from, config))

    from cfctool.ops.train import state_path_for, train

    if out != "-":
        check_output(str(state_path_for(out)), sidecar=False)
    try:
        with training_progress(quiet) as progress:
            ckpt = train(
                run,
                progress=progress,
                argv=(ctx.obj or {}).get("argv"),
                output=None if out == "-" else out,
                resume=resume,
                init_from=init_from,
                notify=status_lines(quiet),
            )
    except KeyboardInterrupt:
        raise interrupted_run(out, "run the same command with --resume to continue") from None
    write_checkpoint(ckpt, out)
    if ckpt.record["metrics"].get("test_subset") and not quiet:
        sub = ckpt.record["metrics"]["test_subset"]
        print(f"note: tested on {sub['samples']} of {sub['of']} test samples (--max-test-samples)", file=sys.stderr)


def register(app: typer.Typer) -> None:
    options.with_parameters(train_command, options.setting_parameters())
    app.command("train", epilog=options.example("cfctool train imdb --arch cfc-deep --threads 1 -o deep.st"))(
        train_command
    )
