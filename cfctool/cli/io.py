"""Checkpoint paths on the command line: a file, or '-' for stdin/stdout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cfctool.errors import CheckpointError, OutputError

STDIO = "-"


def read_checkpoint(path: str):
    from cfctool import checkpoint

    if path == STDIO:
        from cfctool.files import CHECKPOINT_LIMIT, read_stdin

        data = read_stdin(CHECKPOINT_LIMIT, "checkpoint", CheckpointError)
        if not data:
            raise CheckpointError(
                "<stdin>: no data on standard input; pipe a .st file in, e.g. `cfctool info - < model.st`"
            )
        return checkpoint.load_bytes(data, source="<stdin>")
    return checkpoint.load(path)


def check_output(
    path: str, sidecar: bool = True, suffix: str | None = ".st", inputs=(), overwrite: bool = False
) -> None:
    """Fail before any work when the output cannot be written (wrong suffix, missing or
    read-only directory, a directory in the way) or would replace one of the command's
    `inputs` or their sidecars (the same file by device and inode, whatever its name);
    `overwrite` allows replacing an input checkpoint (the write is atomic all the same).
    '-' (stdout) always can be written."""
    from cfctool.checkpoint import check_writable, sidecar_path
    from cfctool.errors import ConfigError

    if path == STDIO:
        if sys.stdout.isatty():
            raise ConfigError(
                "-o -: refusing to write a binary checkpoint to a terminal; redirect it (> out.st) or "
                "pipe it (| cfctool info -)"
            )
        return
    out = Path(path)
    if suffix == ".st" and sidecar and out.suffix != ".st":
        raise ConfigError(f"output {out} must end in .st (its sidecar {out.stem}.yaml is written beside it)")
    if suffix not in (None, ".st") and out.suffix != suffix:
        raise ConfigError(f"output {out} must end in {suffix}")
    written = [out, *([sidecar_path(out)] if sidecar else [])]
    for given in inputs:
        if given is None or str(given) == STDIO:
            continue
        checkpoint_input = Path(given).suffix == ".st"
        # an input's sidecar whatever its name ends in: `model` and `model.st` share model.yaml
        read = [Path(given), sidecar_path(given)]
        same_pair = out.exists() and Path(given).exists() and os.path.samefile(out, given)
        for w in written:
            for r in read:
                if not (w.exists() and r.exists() and os.path.samefile(w, r)):
                    continue
                if overwrite and same_pair:
                    continue  # replacing the input pair on purpose: still one atomic write each
                hint = " (or --overwrite to replace the input checkpoint)" if checkpoint_input and sidecar else ""
                raise ConfigError(
                    f"output {w} is the input {r}: writing it would destroy the input; choose another -o{hint}"
                )
    check_writable(out, sidecar=sidecar)


def write_checkpoint(ckpt, path: str) -> None:
    """Save, then print the output path on stdout (nothing else goes to stdout). Under
    torchrun only rank 0 writes (every rank holds the same weights)."""
    from cfctool import checkpoint
    from cfctool.runtime import is_main

    if not is_main():
        return
    if path == STDIO:
        write_stdout(checkpoint.to_bytes(ckpt))
        return
    checkpoint.save(
        ckpt,
        path,
        on_wait=lambda message: print(f"{message}; the output is written when it is released", file=sys.stderr),
    )
    print(path)


def write_stdout(payload: bytes) -> None:
    """All of `payload` to standard output, every write checked: a short write is continued,
    a closed reader raises BrokenPipeError (exit 141), any other failure (a full disk) is an
    OutputError (exit 1) - whether or not Python buffers stdout (PYTHONUNBUFFERED)."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (an in-process capture)
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    view = memoryview(payload)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(
                f"cannot write the checkpoint to standard output: {exc.strerror or exc}; the output there is incomplete"
            ) from None
        view = view[written:]


def run_compression(
    ctx,
    method,
    checkpoint: str,
    output: str | None,
    data,
    quiet: bool,
    settings: dict,
    config: str | None,
    overwrite: bool,
    print_config: bool = False,
) -> None:
    """The shape every checkpoint -> checkpoint command shares: settings from the flags over
    a config file (validated once, by the driver), output and checkpoint checked before any
    work, the method with progress, its summary line on stderr, the result written (or piped) last."""
    from cfctool.cli.options import required_output
    from cfctool.cli.progress import status_lines, training_progress
    from cfctool.configs import from_settings, load_config_file
    from cfctool.ops.compress import Compression

    cfg = from_settings(method.config, load_config_file(config, method.name) if config else None, settings)
    job = Compression.of(cfg, method.name)
    if print_config:
        from cfctool.cli.options import print_config as show

        show(method.name, cfg)
        return
    output = required_output(output)
    others = tuple(getattr(cfg, "max_drop_with", None) or ())  # --max-drop-with: read, never written
    check_output(output, inputs=(checkpoint, config, *others), overwrite=overwrite)
    job = job.on(read_checkpoint(checkpoint))
    with training_progress(quiet) as progress:
        out = job.run(data_dir=data, argv=(ctx.obj or {}).get("argv"), notify=status_lines(quiet), progress=progress)
    summary = getattr(method.hooks(), "result_line", None)
    line = summary(out) if summary else None
    if line and not quiet:
        print(line, file=sys.stderr)
    write_checkpoint(out, output)
