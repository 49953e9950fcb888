"""Checkpoint paths on the command line: a file, or '-' for stdin/stdout."""

from __future__ import annotations

import sys
from pathlib import Path

from cfctool.errors import CheckpointError

STDIO = "-"


def read_checkpoint(path: str):
    from cfctool import checkpoint

    if path == STDIO:
        data = sys.stdin.buffer.read()
        if not data:
            raise CheckpointError("<stdin>: no data on standard input; pipe a .st file in, e.g. `cfctool info - < model.st`")
        return checkpoint.load_bytes(data, source="<stdin>")
    return checkpoint.load(path)


def check_output(path: str, sidecar: bool = True, suffix: str | None = ".st") -> None:
    """Fail before any work when the output cannot be written (wrong suffix, missing or
    read-only directory, a directory in the way); '-' (stdout) always can."""
    from cfctool.checkpoint import check_writable
    from cfctool.errors import ConfigError

    if path == STDIO:
        return
    out = Path(path)
    if suffix == ".st" and sidecar and out.suffix != ".st":
        raise ConfigError(f"output {out} must end in .st (its sidecar {out.stem}.yaml is written beside it)")
    if suffix not in (None, ".st") and out.suffix != suffix:
        raise ConfigError(f"output {out} must end in {suffix}")
    check_writable(out, sidecar=sidecar)


def write_checkpoint(ckpt, path: str) -> None:
    """Save, then print the output path on stdout (nothing else goes to stdout). Under
    torchrun only rank 0 writes (every rank holds the same weights)."""
    from cfctool import checkpoint
    from cfctool.runtime import is_main

    if not is_main():
        return
    if path == STDIO:
        sys.stdout.buffer.write(checkpoint.to_bytes(ckpt))
        sys.stdout.buffer.flush()
        return
    checkpoint.save(ckpt, path)
    print(path)


def run_compression(ctx, kind: str, cfg_class, op, validate, checkpoint: str, output: str, data, quiet: bool,
                    settings: dict, summary=None, config: str | None = None) -> None:
    """The shape every checkpoint -> checkpoint command shares: settings from the flags over
    a config file, output and settings checked before any work, the op with progress, one
    summary line on stderr (`summary(out)`), the result written (or piped) last."""
    from cfctool.cli.progress import status_lines, training_progress
    from cfctool.configs import from_settings, load_config_file

    cfg = from_settings(cfg_class, load_config_file(config, kind) if config else None, settings)
    cfg.validate()
    check_output(output)
    ckpt = read_checkpoint(checkpoint)
    validate(ckpt, cfg)
    with training_progress(quiet) as progress:
        out = op(ckpt, cfg, data_dir=data, argv=(ctx.obj or {}).get("argv"), notify=status_lines(quiet),
                 progress=progress)
    line = summary(out) if summary else None
    if line and not quiet:
        print(line, file=sys.stderr)
    write_checkpoint(out, output)
