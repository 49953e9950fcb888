"""The training state: everything `fit()` needs to continue a run bit for bit (weights,
optimiser, scheduler, random generators, best epoch, history, weight average), written
after every epoch as one safetensors file (tensors + JSON metadata: no pickles)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load

from cfctool.checkpoint import atomic_write, read_header, safetensors_bytes
from cfctool.configs import resolve
from cfctool.errors import CfcError, CheckpointError, ConfigError
from cfctool.files import CHECKPOINT_LIMIT, read_bounded
from cfctool.training.averaging import WeightAverage

_STATE_FORMAT = "cfctool.train-state"


def state_path_for(output: str | Path) -> Path:
    """Where a run writing `output` keeps its training state: beside it."""
    output = Path(output)
    return output.with_name(output.name + ".train-state")


def require_state(path: str | Path | None) -> Path:
    """--resume needs the training state; checked before any data is loaded."""
    if path is None or not Path(path).is_file():
        raise ConfigError(f"--resume: no training state at {path}; run without --resume to start afresh")
    return Path(path)


def write_state(
    path: Path,
    model,
    optimizer,
    scheduler,
    shuffle,
    best_state,
    best_score,
    best_epoch,
    step,
    epoch,
    history,
    identity,
    elapsed_s: float,
    average: WeightAverage | None = None,
    partial: dict[str, Any] | None = None,
) -> None:
    """Weights, optimiser, scheduler, RNG states and bookkeeping as one safetensors file
    (tensors + JSON metadata: no pickles), written atomically. `epoch` is the last finished
    epoch; `partial` describes the one in progress, if any ({"epoch", "next" (the index of
    the next batch in its shuffle), "tally", "shuffle_at_start"}: the shuffle generator's
    state before the epoch drew its order)."""
    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu() for k, v in best_state.items()})
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, st in opt["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value.detach().cpu()
            else:
                opt_scalars.setdefault(str(idx), {})[key] = value
    if average is not None:
        tensors.update({f"ema.{k}": v.detach().cpu() for k, v in average.shadow.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    if partial is not None:
        tensors["rng.shuffle_at_epoch_start"] = partial["shuffle_at_start"]
        partial = {k: v for k, v in partial.items() if k != "shuffle_at_start"}
    meta = {
        "epoch": epoch,
        "step": step,
        "best_score": best_score if math.isfinite(best_score) else None,
        "best_epoch": best_epoch,
        "history": history,
        "param_groups": opt["param_groups"],
        "opt_scalars": opt_scalars,
        "opt_indices": sorted(opt["state"]),
        "scheduler": scheduler.state_dict(),
        "identity": identity,
        "has_best": best_state is not None,
        "elapsed_s": round(elapsed_s, 3),
        "ema_updates": None if average is None else average.updates,
        "partial": partial,
    }
    atomic_write(path, safetensors_bytes(tensors, {_STATE_FORMAT: "1", "state": json.dumps(meta, sort_keys=True)}))


def state_summary(path: str | Path) -> dict[str, Any] | None:
    """What a training state says about its run (no tensors): epochs done, steps, seconds,
    validation per epoch, the current learning rates and the settings; None when the file
    is not a training state. A long run can be followed, or a stopped one reported, before
    it has written a checkpoint."""
    if not Path(path).is_file():
        return None
    try:
        meta = (
            read_header(read_bounded(path, CHECKPOINT_LIMIT, "training state", CheckpointError), str(path)).get(
                "__metadata__"
            )
            or {}
        )
    except CheckpointError:  # not safetensors, or truncated: the checkpoint reader says which
        return None
    if _STATE_FORMAT not in meta:
        return None
    state = json.loads(meta["state"])
    settings = state["identity"] or {}
    return {
        "source": str(path),
        "epochs_done": state["epoch"],
        "steps": state["step"],
        "train_seconds": state.get("elapsed_s"),
        "best_epoch": state["best_epoch"],
        "weight_average": state.get("ema_updates") is not None,
        "lr_now": [g["lr"] for g in state["param_groups"]],
        "epochs": state["history"],
        "epoch_in_progress": (
            {"epoch": state["partial"]["epoch"], "next_batch_index": state["partial"]["next"]}
            if state.get("partial")
            else None
        ),
        "changed_settings": _beyond_preset(settings),
        "settings": settings,
    }


def _beyond_preset(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that differ from the data set's default preset for the arch (what a
    reader wants of a run: what was chosen), or all of them when that preset is unknown."""
    try:
        run = resolve(settings["dataset"], settings["name"], preset=settings.get("preset", "default"))
    except (CfcError, KeyError):
        return dict(settings)
    preset = {k: v for section in ("arch", "data", "train") for k, v in run.to_dict()[section].items()}
    return {k: v for k, v in settings.items() if k not in preset or preset[k] != v}


def read_state(path: Path, identity) -> dict[str, Any]:
    data = read_bounded(path, CHECKPOINT_LIMIT, "training state", CheckpointError)
    meta_raw = read_header(data, str(path)).get("__metadata__") or {}
    if _STATE_FORMAT not in meta_raw:
        raise CheckpointError(f"{path}: not a cfctool training state; delete it or run without --resume")
    meta = json.loads(meta_raw["state"])
    if meta["identity"] != identity:
        changed = sorted(
            k
            for k in set(meta["identity"] or {}) | set(identity or {})
            if (meta["identity"] or {}).get(k) != (identity or {}).get(k)
        )
        raise ConfigError(
            f"--resume: the training state at {path} was written with other settings "
            f"({', '.join(changed[:6])} differ); resume with the same settings, or delete it to start afresh"
        )
    tensors = load(data)
    state: dict[int, dict[str, Any]] = {int(i): {} for i in meta["opt_indices"]}
    for key, t in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state[int(idx)][name] = t
    for idx, scalars in meta["opt_scalars"].items():
        state[int(idx)].update(scalars)
    pick = lambda prefix: {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    return {
        "model": pick("model."),
        "best": pick("best.") if meta["has_best"] else None,
        "optimizer": {"state": state, "param_groups": meta["param_groups"]},
        "scheduler": meta["scheduler"],
        "rng_torch": tensors["rng.torch"],
        "rng_shuffle": tensors["rng.shuffle"],
        "best_score": -math.inf if meta["best_score"] is None else meta["best_score"],
        "best_epoch": meta["best_epoch"],
        "step": meta["step"],
        "epoch": meta["epoch"],
        "history": meta["history"],
        "elapsed_s": float(meta.get("elapsed_s", 0.0)),
        "ema": pick("ema.") if meta.get("ema_updates") is not None else None,
        "ema_updates": meta.get("ema_updates") or 0,
        "partial": (
            {**meta["partial"], "shuffle_at_start": tensors["rng.shuffle_at_epoch_start"]}
            if meta.get("partial")
            else None
        ),
    }
