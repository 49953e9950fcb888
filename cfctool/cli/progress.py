"""Progress on stderr: a rich bar when stderr is a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import contextlib
import sys
import time


def _fmt_val(val) -> str:
    if not val:
        return ""
    parts = [f"val_loss {val['loss']:.4f}"]
    if "accuracy" in val:
        parts.append(f"val_acc {val['accuracy']:.4f}")
    if val.get("auc") is not None:
        parts.append(f"val_auc {val['auc']:.4f}")
    return " " + " ".join(parts)


def _silent(quiet: bool) -> bool:
    """Quiet by request, and on every rank but 0 of a torchrun world (rank 0 reports)."""
    from cfctool.runtime import is_main

    return quiet or not is_main()


@contextlib.contextmanager
def training_progress(quiet: bool = False, every_s: float = 30.0):
    """Yields a callback for cfctool.training.fit.Progress events."""
    if _silent(quiet):
        yield None
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(stderr=True)
        bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        task_id = None

        def show(p):
            nonlocal task_id
            stats = f"loss {p.loss:.4f}" + (f" acc {p.accuracy:.4f}" if p.accuracy is not None else "")
            if task_id is None:
                task_id = bar.add_task("train", total=p.steps, epoch=p.epoch, epochs=p.epochs, stats="")
            bar.update(task_id, completed=p.step, epoch=p.epoch, stats=stats)
            if p.phase == "epoch":
                console.print(f"epoch {p.epoch}/{p.epochs} loss {p.loss:.4f}{_fmt_val(p.val)}")

        with bar:
            yield show
        return

    last = [time.monotonic()]

    def plain(p):
        now = time.monotonic()
        if p.phase == "epoch":
            print(
                f"epoch {p.epoch}/{p.epochs} step {p.step}/{p.steps} loss {p.loss:.4f}{_fmt_val(p.val)}",
                file=sys.stderr,
                flush=True,
            )
            last[0] = now
        elif now - last[0] >= every_s:
            acc = f" acc {p.accuracy:.4f}" if p.accuracy is not None else ""
            print(
                f"epoch {p.epoch}/{p.epochs} step {p.step}/{p.steps} loss {p.loss:.4f}{acc}",
                file=sys.stderr,
                flush=True,
            )
            last[0] = now

    yield plain


def interrupted_run(output, resume_hint: str) -> KeyboardInterrupt:
    """Ctrl-C during a training command: what was kept and how to continue."""
    from cfctool.training.state import state_path_for, state_summary

    state = state_summary(state_path_for(output)) if output not in (None, "-") else None
    if state is None:
        return KeyboardInterrupt()
    where = f"after epoch {state['epochs_done']}, step {state['steps']}"
    if state.get("epoch_in_progress"):
        where = f"in epoch {state['epoch_in_progress']['epoch']}, step {state['steps']}"
    return KeyboardInterrupt(
        f"interrupted; no checkpoint was written, but the training state "
        f"{state_path_for(output)} was kept ({where}): {resume_hint}"
    )


def status_lines(quiet: bool = False):
    """A `notify(message)` callback for ops: one plain line on stderr per message, with the
    seconds since the command started (silent when quiet)."""
    if _silent(quiet):
        return lambda message: None
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:5.1f}s] {message}", file=sys.stderr, flush=True)

    return say
