"""`cfctool info IN.st [--json]`."""

from __future__ import annotations

import json

import typer

from cfctool.cli import options
from cfctool.configs.commands import InfoConfig


def _flat(mapping: dict, skip=()) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items() if k not in skip)


def _compression(c: dict) -> str:
    """One readable line per compression step (each method says how its record reads); the
    full record is in --json."""
    from cfctool.ops.methods import METHODS

    described: dict[str, str] = {}
    for method in METHODS.values():
        describe = getattr(method.hooks(), "describe", None) if method.section in c else None
        if describe is not None:
            described.update(describe(c))
    rest = {k: v for k, v in c.items() if k not in described}
    parts = list(described.values()) + ([_flat(rest)] if rest else [])
    return "; ".join(parts) or "none"


def _state_lines(s: dict) -> str:
    settings = s["settings"]
    lines = [
        f"training state  {s['source']}",
        f"run            {settings.get('dataset')} / {settings.get('name', '?')}: {s['epochs_done']} epoch(s), "
        f"{s['steps']} steps, {s['train_seconds']} s of training; best epoch {s['best_epoch']}"
        + ("; weights averaged" if s["weight_average"] else "")
        + f"; lr now {', '.join(f'{lr:.3g}' for lr in s['lr_now'])}"
        + (
            f"; epoch {s['epoch_in_progress']['epoch']} in progress (written mid-epoch: --resume continues from there)"
            if s.get("epoch_in_progress")
            else ""
        ),
        f"settings       {_flat(s['changed_settings']) or 'the preset'} (beyond the preset; all in --json)",
        "epochs",
    ]
    for e in s["epochs"]:
        lines.append(
            f"  {e['epoch']:>3}  "
            + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in e.items() if k != "epoch")
        )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    def info_command(
        checkpoint: options.Checkpoint,
        config: options.Config = None,
        print_config: options.PrintConfig = False,
        as_json: options.Json = False,
        **settings,
    ):
        """Architecture, task, compression state, metrics, sizes and history of a checkpoint;
        for a training state (OUT.st.train-state), the run's progress so far.

        Reads only the file's header and record (fast, no data needed): one line per compression
        step, the recorded test metrics and every command that made the checkpoint, with its
        settings. Of a training state: epochs and steps done, seconds, validation per epoch and the
        learning rate now. '-' reads stdin; --json prints the whole record.
        """
        from cfctool.cli.io import STDIO, read_checkpoint
        from cfctool.escape import terminal
        from cfctool.ops.info import describe
        from cfctool.training.state import state_summary

        cfg = options.resolved(InfoConfig, "info", config, settings)
        if print_config:
            options.print_config("info", cfg)
            return
        state = state_summary(checkpoint) if checkpoint != STDIO else None
        if state is not None:
            print(json.dumps(state, indent=2) if as_json else terminal(_state_lines(state), lines=True))
            return
        d = describe(read_checkpoint(checkpoint))
        if as_json:
            print(json.dumps(d, indent=2, default=str))
            return
        task = d["task"]
        metrics = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in d["metrics"].items() if k != "epochs"}
        lines = [
            f"checkpoint   {d['source']}",
            f"arch         {d['arch']['name']} ({_flat(d['arch'], skip=('name',))})",
            f"task         {task['dataset']}: input {_flat(task['input'])}; output {_flat(task['output'])}",
            f"preprocess   {_flat(task.get('preprocessing', {}))}",
            f"compression  {_compression(d['compression']) if d['compression'] != {'state': 'none'} else 'none'}",
            f"encodings    {_flat(d['encodings']) or 'none (every tensor stored plain)'}",
            f"metrics      {_flat(metrics) or 'none recorded (run cfctool eval)'}",
            f"sizes        {_flat(d['sizes'])}",
            "integrity    "
            + (
                f"header and data sha256 {d['integrity']['sha256'][:16]}..., verified at load"
                if d["integrity"].get("sha256")
                else f"tensor data sha256 {d['integrity']['data_sha256'][:16]}..., verified at load; "
                f"{d['integrity']['note']}"
                if d["integrity"]["data_sha256"]
                else f"no hash in the file ({d['integrity']['note']})"
            ),
            "history",
        ]
        for i, h in enumerate(d["history"], 1):
            argv = " ".join(h.get("argv") or [str(h.get("command", "?"))])
            if h.get("argv") and h.get("command") not in h["argv"]:  # the record disagrees with itself: show both
                argv += f"  [recorded command: {h.get('command')}]"
            lines.append(
                f"  {i}. {h.get('utc')}  {argv}  (seed {h.get('seed')}, {h.get('wall_time_s')} s, "
                f"cfctool {h.get('cfctool_version')}, torch {h.get('torch_version')})"
            )
        print("\n".join(terminal(line) for line in lines))  # record text: no escape sequences reach the terminal

    command = options.with_parameters(info_command, options.setting_parameters({InfoConfig: "Info settings"}))
    app.command("info", epilog=options.example("cfctool info model.st --json"))(command)
