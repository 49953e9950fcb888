"""`cfctool info IN.st [--json]`."""

from __future__ import annotations

import json

import typer

from cfctool.cli import options


def _flat(mapping: dict, skip=()) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items() if k not in skip)


def _compression(c: dict) -> str:
    """One readable line per compression step; the full record is in --json."""
    parts = []
    q = c.get("quantization")
    if q:
        mse = (q.get("state_mse") or {}).get("mean")
        parts.append(f"int{q['bits']} {q['scheme']} ({q['granularity']} weight scales"
                     + (f", {q['observer']} observer" if q.get("observer") else "")
                     + f", {len(q.get('activation_scales') or {})} activation scales"
                     + (f", state MSE vs fp32 {mse:.3g}" if mse is not None else "") + ")")
    if c.get("embedding_folded"):
        e = c["embedding_folded"]
        parts.append(f"embedding folded ({e['from_width']} -> {e['to_width']} wide)")
    p = c.get("pruning")
    if p:
        how = (f"{'structured' if p['structured'] else 'unstructured'} {'global' if p['global'] else 'local'} "
               f"{p['ratio']:.0%} of {p['scope']}" + (" (embedding included)" if p.get("embedding_included") else ""))
        if p["structured"]:
            how += ", units " + ", ".join(f"{g} {u['before']}->{u['after']}" for g, u in p["units"].items())
        ft = p.get("finetune_result")
        if ft:
            how += f", fine-tuned {ft['epochs']} epoch(s) (kept {ft['kept_epoch']})"
        parts.append(f"pruned {how}, weight sparsity {p['sparsity']['overall']:.1%}, {p['storage']} storage")
    rest = {k: v for k, v in c.items() if k not in ("quantization", "embedding_folded", "pruning")}
    if rest:
        parts.append(_flat(rest))
    return "; ".join(parts) or "none"


def _state_lines(s: dict) -> str:
    settings = s["settings"]
    lines = [f"training state  {s['source']}",
             f"run            {settings.get('dataset')} / {settings.get('name', '?')}: {s['epochs_done']} epoch(s), "
             f"{s['steps']} steps, {s['train_seconds']} s of training; best epoch {s['best_epoch']}"
             + ("; weights averaged" if s["weight_average"] else "")
             + f"; lr now {', '.join(f'{lr:.3g}' for lr in s['lr_now'])}",
             f"settings       {_flat(s['changed_settings']) or 'the preset'} (beyond the preset; all in --json)",
             "epochs"]
    for e in s["epochs"]:
        lines.append(f"  {e['epoch']:>3}  " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in e.items() if k != "epoch"))
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info_command(
        checkpoint: options.Checkpoint,
        as_json: options.Json = False,
    ):
        """Architecture, task, compression state, metrics, sizes and history of a checkpoint;
        for a training state (OUT.st.train-state), the run's progress so far."""
        from cfctool.cli.io import STDIO, read_checkpoint
        from cfctool.ops.info import describe
        from cfctool.training.state import state_summary

        state = state_summary(checkpoint) if checkpoint != STDIO else None
        if state is not None:
            print(json.dumps(state, indent=2) if as_json else _state_lines(state))
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
            "history",
        ]
        for i, h in enumerate(d["history"], 1):
            argv = " ".join(h.get("argv") or [h["command"]])
            lines.append(f"  {i}. {h['utc']}  {argv}  (seed {h.get('seed')}, {h.get('wall_time_s')} s, "
                         f"cfctool {h.get('cfctool_version')}, torch {h.get('torch_version')})")
        print("\n".join(lines))
