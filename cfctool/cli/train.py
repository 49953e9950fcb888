"""`cfctool train DATASET --arch ARCH [settings] -o OUT.st`."""

from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

from cfctool.configs import ARCHS

_SETTINGS = "Settings (override the preset)"


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        ctx: typer.Context,
        dataset: Annotated[str, typer.Argument(help="Data set: xor (generated, no files needed), imdb, person_activity, mnist, pmnist, fashion-mnist.")] = "xor",
        arch: Annotated[str, typer.Option(help=f"Architecture: {', '.join(ARCHS)}.")] = "cfc",
        output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output checkpoint (.st), or '-' for stdout. Default: DATASET-ARCH.st")] = None,
        preset: Annotated[str, typer.Option(help="Named preset of the data set (e.g. xor: default, paper).")] = "default",
        config: Annotated[Optional[str], typer.Option(help="YAML file of settings (flat keys, e.g. 'lr: 0.01').")] = None,
        data: Annotated[Optional[str], typer.Option("--data", help="Data directory (default: $CFCTOOL_DATA).")] = None,
        epochs: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS)] = None,
        batch_size: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS)] = None,
        lr: Annotated[Optional[float], typer.Option(rich_help_panel=_SETTINGS, help="Learning rate.")] = None,
        lr_decay: Annotated[Optional[float], typer.Option(rich_help_panel=_SETTINGS, help="Learning-rate factor per epoch.")] = None,
        clipnorm: Annotated[Optional[float], typer.Option(rich_help_panel=_SETTINGS, help="Clip the gradient norm to this value.")] = None,
        weight_decay: Annotated[Optional[float], typer.Option(rich_help_panel=_SETTINGS)] = None,
        optimizer: Annotated[Optional[str], typer.Option(rich_help_panel=_SETTINGS, help="adam, adamw, sgd or rmsprop.")] = None,
        hidden: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="State size (units).")] = None,
        mode: Annotated[Optional[str], typer.Option(rich_help_panel=_SETTINGS, help="CfC mode: default, no_gate, pure.")] = None,
        backbone_units: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS)] = None,
        backbone_layers: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS)] = None,
        backbone_activation: Annotated[Optional[str], typer.Option(rich_help_panel=_SETTINGS, help="relu, silu, tanh, gelu or lecun_tanh.")] = None,
        backbone_dropout: Annotated[Optional[float], typer.Option(rich_help_panel=_SETTINGS)] = None,
        embedding_dropout: Annotated[Optional[float], typer.Option(rich_help_panel=_SETTINGS, help="Dropout on embedded tokens (token inputs).")] = None,
        mixed_memory: Annotated[Optional[bool], typer.Option("--mixed-memory/--no-mixed-memory", rich_help_panel=_SETTINGS)] = None,
        sparsity: Annotated[Optional[float], typer.Option(rich_help_panel=_SETTINGS, help="cfc-ncp wiring sparsity.")] = None,
        wiring_seed: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="cfc-ncp wiring seed.")] = None,
        ode_unfolds: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="ltc solver steps per input step.")] = None,
        bits: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="xor: longest stream.")] = None,
        min_bits: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="xor: shortest stream.")] = None,
        encoding: Annotated[Optional[str], typer.Option(rich_help_panel=_SETTINGS, help="xor: dense or event.")] = None,
        train_size: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="xor: training streams.")] = None,
        vocab_size: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="imdb: vocabulary words.")] = None,
        seq_len: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="imdb: tokens kept (the last ones).")] = None,
        embedding_dim: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="Token embedding width.")] = None,
        window: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="person_activity: steps per window.")] = None,
        window_stride: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="person_activity: window stride.")] = None,
        max_samples: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="Use at most N training samples.")] = None,
        max_steps: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="Stop after N optimiser steps.")] = None,
        val_fraction: Annotated[Optional[float], typer.Option(rich_help_panel=_SETTINGS, help="Hold-out for best-epoch selection.")] = None,
        seed: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS)] = None,
        threads: Annotated[Optional[int], typer.Option(rich_help_panel=_SETTINGS, help="CPU threads.")] = None,
        device: Annotated[Optional[str], typer.Option(rich_help_panel=_SETTINGS, help="auto, cpu or cuda.")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ):
        """Train a model and write its checkpoint; prints the output path."""
        given = dict(locals())  # first statement: exactly the command's parameters
        from cfctool.cli.io import check_output, write_checkpoint
        from cfctool.cli.progress import training_progress
        from cfctool.configs import load_config_file, resolve

        not_settings = {"ctx", "dataset", "arch", "output", "preset", "config", "quiet", "data"}
        overrides = {k: v for k, v in given.items() if k not in not_settings and v is not None}
        if data is not None:
            overrides["data_dir"] = data
        run = resolve(dataset, arch, preset=preset,
                      file_values=load_config_file(config) if config else None, overrides=overrides)
        out = output or f"{dataset}-{arch}.st"
        check_output(out)

        from cfctool.ops.train import train

        with training_progress(quiet) as progress:
            ckpt = train(run, progress=progress, argv=(ctx.obj or {}).get("argv"))
        write_checkpoint(ckpt, out)
