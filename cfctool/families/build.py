"""From a checkpoint record's `arch` and `task` sections to a module, and back.

The record is the single source of truth: a family's `record` hook writes exactly the
keys its architecture uses, `build_model` rebuilds the module from them, and
`expected_tensors` lets checkpoint loading check a file's tensors against its
architecture. Everything family-specific lives in `cfctool.families`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from cfctool.families import get as family_of_name
from cfctool.families import normalise
from cfctool.models.network import SequenceModel


def arch_record(cfg, task: dict[str, Any]) -> dict[str, Any]:
    """The arch section for a checkpoint: only what this architecture uses, every size explicit."""
    return family_of_name(cfg.name).record(dataclasses.asdict(cfg), task)


def build_model(arch: dict[str, Any], task: dict[str, Any]) -> torch.nn.Module:
    arch = normalise(arch)
    inp, out = task["input"], task["output"]
    tokens = inp["kind"] == "tokens"
    features = arch["embedding_dim"] if tokens else inp["size"]
    model = SequenceModel(
        build_core(arch, features),
        n_outputs=out["size"],
        per_step=bool(out.get("per_step", False)),
        vocab_size=inp["vocab_size"] if tokens else None,
        embedding_dim=arch.get("embedding_dim"),
        embedding_dropout=arch.get("embedding_dropout", 0.0),
    )
    model.family = arch["name"]
    return model


def build_core(arch: dict[str, Any], features: int) -> torch.nn.Module:
    arch = normalise(arch)
    return family_of_name(arch["name"]).build(arch, features)


def family_of(model: torch.nn.Module):
    return family_of_name(model.family)


def expected_tensors(record: dict[str, Any]) -> dict[str, list[int]]:
    """Names and shapes of the tensors the recorded architecture has (built without memory)."""
    with torch.device("meta"):
        model = build_model(record["arch"], record["task"])
    return {name: list(t.shape) for name, t in model.state_dict().items()}


def model_from_checkpoint(ckpt) -> torch.nn.Module:
    """A ready module in eval mode holding the checkpoint's (decoded) weights."""
    model = build_model(ckpt.arch, ckpt.task)
    model.load_state_dict(ckpt.model_tensors(), strict=True)
    return model.eval()
