"""Option definitions shared by every command, and the train flags derived from the configs.

Help texts come from the config dataclasses' field metadata, so a flag and the setting it
sets cannot drift apart; a new setting (in a config dataclass or a model family) becomes
a `train` flag by itself.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields
from typing import Annotated, Any

import typer

from cfctool.configs import ArchConfig, DataConfig, TrainConfig
from cfctool.configs.base import literal_choices
from cfctool.families import arch_settings


def field_help(cls, name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)


Checkpoint = Annotated[str, typer.Argument(help="Checkpoint (.st), or '-' for stdin.")]
Data = Annotated[
    str | None,
    typer.Option(
        "--data", help="Data directory (default: $CFCTOOL_DATA, else the one recorded when the model was trained)."
    ),
]
Threads = Annotated[int | None, typer.Option(help=field_help(TrainConfig, "threads"))]
Json = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Allow -o to be the input checkpoint (replaced atomically once the result is ready)."
    ),
]
Config = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="YAML file of settings (flat keys, e.g. 'lr: 0.01'), or a stored config (a history entry's "
        "`config`); flags override it.",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.")]
PrintConfig = Annotated[
    bool,
    typer.Option(
        "--print-config",
        help="Print the resolved settings (config file + flags) as YAML and exit; --config reads the output back.",
    ),
]


def resolved(cls, kind: str, config: str | None, flags: dict[str, Any]):
    """The command's settings: its defaults < the --config file < the flags given, validated."""
    from cfctool.configs import from_settings, load_config_file

    cfg = from_settings(cls, load_config_file(config, kind) if config else None, flags)
    cfg.validate()
    return cfg


def print_config(kind: str, cfg) -> None:
    """The settings as a stored config (kind, version, settings): what --config reads."""
    import yaml

    from cfctool.configs import stored

    print(yaml.safe_dump(stored(kind, cfg.to_dict()), sort_keys=False), end="")


def example(command: str) -> str:
    """The last line of a command's --help (and of its CLI reference entry)."""
    return f"Example: {command}"


def output(help_text: str) -> Any:
    """The -o option with a command's own help text (required where the parameter has no default)."""
    return typer.Option("--output", "-o", help=help_text)


OutputCheckpoint = Annotated[str | None, output("Output checkpoint (.st), or '-' for stdout (required).")]


def required_output(path: str | None) -> str:
    """-o of a command that writes a checkpoint: optional only with --print-config."""
    if path is None:
        from cfctool.errors import ConfigError

        raise ConfigError("-o/--output is required: the checkpoint to write (.st), or '-' for stdout")
    return path


# train settings chosen by the command line's structure (--arch, the dataset argument); data_dir
# is every command's --data
_NOT_FLAGS = {"name", "dataset"}
_PANELS = {ArchConfig: "Model settings", DataConfig: "Data settings", TrainConfig: "Training settings"}


def setting_parameters(panels: dict | None = None, exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per setting of the config classes in `panels` ({class: panel
    title}; default: the train settings), default None (= the preset's or class default);
    `exclude`: settings a command does not offer."""
    choices: dict[str, tuple[Any, ...]] = {name: s.choices or () for name, s in arch_settings().items()}
    params = []
    for cls, panel in (panels or _PANELS).items():
        choices.update(literal_choices(cls))
        for f in fields(cls):
            if f.name == "data_dir" or (cls in (ArchConfig, DataConfig) and f.name in _NOT_FLAGS) or f.name in exclude:
                continue
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            base: Any = {"int": int, "float": float, "bool": bool}.get(kind.split(" ")[0].split("|")[0].strip(), str)
            default = f.default if f.default is not MISSING else None
            text = f.metadata.get("help", "")
            if choices.get(f.name):
                text += f" One of: {', '.join(choices[f.name])}."
            flag = "--" + f.name.replace("_", "-")
            decl = (f"{flag}/--no-{f.name.replace('_', '-')}",) if base is bool else (flag,)
            if f.metadata.get("flags"):
                decl = (f.metadata["flags"],)
            if default is not None and not (base is bool and "/" not in decl[0]):  # a lone flag: off unless given
                shown = decl[0].split("/")[0 if default else 1] if base is bool else default  # a flag: its spelling
                text += f" [default: {shown}{' unless the preset sets it' if panels is None else ''}]"
            metavar = {"metavar": f.metadata["metavar"]} if f.metadata.get("metavar") else {}
            option = typer.Option(
                *decl,
                help=text.replace("[", "\\["),
                rich_help_panel=panel,
                show_default=False,
                **metavar,
            )
            if f.metadata.get("repeat"):  # a list setting: its flag is given once per value
                base = list[str]
            params.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[base | None, option], default=None
                )
            )
    return params


def with_parameters(func, extra: list[inspect.Parameter]):
    """`func` with `extra` keyword parameters added to the signature Typer reads (to its own
    signature, so that building the app again gives the same command)."""
    if not hasattr(func, "__own_signature__"):
        func.__own_signature__ = inspect.signature(func, eval_str=True)
    sig = func.__own_signature__
    params = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    func.__signature__ = sig.replace(parameters=params + extra)
    func.__annotations__ = {**{p.name: p.annotation for p in params + extra}}
    return func
