"""From a checkpoint record's `arch` and `task` sections to a module, and back.

The record is the single source of truth: `arch_record` writes exactly the keys an
architecture uses, `build_model` rebuilds the module from them, and `expected_tensors`
lets checkpoint loading check a file's tensors against its architecture.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from cfctool.configs import ArchConfig

_KEYS = {
    "cfc": ("name", "hidden", "mode", "backbone_units", "backbone_layers", "backbone_activation",
            "backbone_dropout", "mixed_memory"),
    "cfc-ncp": ("name", "hidden", "mode", "sparsity", "wiring_seed", "motor", "mixed_memory"),
    "ltc": ("name", "hidden", "ode_unfolds"),
}
_KEYS["cfc-deep"] = _KEYS["cfc"]


def arch_record(cfg: ArchConfig, task: dict[str, Any]) -> dict[str, Any]:
    """The arch section for a checkpoint: only what this architecture uses."""
    values = asdict(cfg)
    values["motor"] = task["output"]["size"]
    record = {k: values[k] for k in _KEYS[cfg.name]}
    if task["input"]["kind"] == "tokens":
        record["embedding_dim"] = cfg.embedding_dim
        if cfg.embedding_dropout:
            record["embedding_dropout"] = cfg.embedding_dropout
    return record


def build_model(arch: dict[str, Any], task: dict[str, Any]) -> torch.nn.Module:
    from cfctool.models.network import SequenceModel

    inp, out = task["input"], task["output"]
    tokens = inp["kind"] == "tokens"
    features = arch["embedding_dim"] if tokens else inp["size"]
    rnn = build_core(arch, features)
    return SequenceModel(
        rnn,
        n_outputs=out["size"],
        per_step=bool(out.get("per_step", False)),
        vocab_size=inp["vocab_size"] if tokens else None,
        embedding_dim=arch.get("embedding_dim"),
        embedding_dropout=arch.get("embedding_dropout", 0.0),
    )


def build_core(arch: dict[str, Any], features: int) -> torch.nn.Module:
    name = arch["name"]
    if name in ("cfc", "cfc-deep"):
        from cfctool.models.cfc import CfC, CfCCell

        cell = CfCCell(features, arch["hidden"], arch["mode"], arch["backbone_units"], arch["backbone_layers"],
                       arch["backbone_activation"], arch["backbone_dropout"])
        return CfC([cell], mixed_memory=arch["mixed_memory"])
    if name == "cfc-ncp":
        from cfctool.models.cfc import CfC, CfCCell
        from cfctool.models.wiring import NcpShape, cfc_layer_masks, ncp_adjacency

        shape = NcpShape.auto(arch["hidden"], arch["motor"], arch["sparsity"])
        sensory, internal = ncp_adjacency(shape, features, arch["wiring_seed"])
        cells, width = [], features
        for neurons, mask in zip(shape.layers(), cfc_layer_masks(shape, sensory, internal)):
            cells.append(CfCCell(width, len(neurons), arch["mode"], backbone_layers=0,
                                 sparsity_mask=torch.from_numpy(mask)))
            width = len(neurons)
        return CfC(cells, mixed_memory=arch["mixed_memory"])
    if name == "ltc":
        from cfctool.models.ltc import LTC

        return LTC(features, arch["hidden"], ode_unfolds=arch["ode_unfolds"])
    raise ValueError(f"unknown architecture '{name}'")


def expected_tensors(record: dict[str, Any]) -> dict[str, list[int]]:
    """Names and shapes of the tensors the recorded architecture has (built without memory)."""
    with torch.device("meta"):
        model = build_model(record["arch"], record["task"])
    return {name: list(t.shape) for name, t in model.state_dict().items()}


def model_from_checkpoint(ckpt) -> torch.nn.Module:
    """A ready module in eval mode holding the checkpoint's weights."""
    model = build_model(ckpt.arch, ckpt.task)
    model.load_state_dict(ckpt.model_tensors(), strict=True)
    return model.eval()
