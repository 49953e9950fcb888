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


# the most parameters a model built from settings may have (1 GiB of float32 weights, 4 with
# Adam's moments): far beyond the models of this field, refused before minutes of work
MAX_PARAMS = 1 << 28


def check_size(arch: dict[str, Any], task: dict[str, Any]) -> None:
    """Refuse settings whose model would not fit in memory, counted on the meta device (no
    memory spent), before any data are read or weights made."""
    from cfctool.errors import ConfigError

    units = arch.get("hidden")
    if family_of_name(arch["name"]).proof is not None and isinstance(units, int) and units * units > MAX_PARAMS:
        # a wiring (units x units) is made in memory even for the meta device
        raise ConfigError(
            f"a wired {arch['name']} of {units:,} units needs a {units:,} x {units:,} wiring, more than "
            f"the {MAX_PARAMS:,} entries cfctool builds; choose fewer units"
        )
    with torch.device("meta"):
        model = build_model(arch, task)
    n = sum(t.numel() for t in model.state_dict().values())
    if n > MAX_PARAMS:
        raise ConfigError(
            f"these settings make a model of {n:,} parameters ({4 * n / 2**30:.0f} GiB in float32), "
            f"more than the {MAX_PARAMS:,} cfctool builds; choose smaller sizes"
        )


def check_run(run) -> None:
    """A training run's settings against its data set's task, before the data are read: the
    arch must fit the task and be of a size that can be built (where the data set can tell
    its task without reading its data)."""
    from cfctool.data.registry import preview_task

    preview = preview_task(run.data)
    if preview is not None:
        check_size(arch_record(run.arch, preview), preview)


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
