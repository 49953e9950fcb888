"""The NCP-wired CfC (Lechner et al. 2020 wiring, CfC cells): three wired cells, inter ->
command -> motor, without backbone.

The wiring is generated from a seed only for a fresh model; the record keeps the layer
sizes (`ncp_layers`) and the masks travel as tensors, so a model with neurons removed is
an ordinary record with other sizes and its own masks.
"""

from __future__ import annotations

from typing import Any

from cfctool.families import cfc
from cfctool.families.base import EMBEDDING, HIDDEN, Family, front_end
from cfctool.settings import Setting

SETTINGS = (
    HIDDEN,
    cfc.MODE,
    cfc.HEAD_ACTIVATION,
    Setting("sparsity", float, 0.5, "Wiring sparsity (fraction of synapses left out).", low=0.1, high=0.9),
    Setting("wiring_seed", int, 22222, "Seed of the generated wiring."),
    cfc.MIXED_MEMORY,
    *EMBEDDING,
)


def _auto_layers(hidden: int, motor: int, sparsity: float) -> list[int]:
    from cfctool.models.wiring import NcpShape

    shape = NcpShape.auto(hidden, motor, sparsity)
    return [shape.inter, shape.command, shape.motor]


def validate(values: dict[str, Any]) -> None:
    if values["hidden"] < 4:
        raise ValueError(f"cfc-ncp needs hidden >= 4 units (got {values['hidden']})")


def record(values: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    motor = task["output"]["size"]
    return {
        "name": values["name"],
        "hidden": values["hidden"],
        "mode": values["mode"],
        "motor": motor,
        "sparsity": values["sparsity"],
        "wiring_seed": values["wiring_seed"],
        "ncp_layers": _auto_layers(values["hidden"], motor, values["sparsity"]),
        "head_activation": values["head_activation"],
        "mixed_memory": values["mixed_memory"],
        **front_end(values, task),
    }


def upgrade(arch: dict[str, Any]) -> dict[str, Any]:
    """Format 1 regenerated the layer sizes from hidden, motor and sparsity; heads were tanh."""
    arch = {"head_activation": "tanh", **arch}
    if "ncp_layers" in arch:
        return arch
    return {**arch, "ncp_layers": _auto_layers(arch["hidden"], arch["motor"], arch["sparsity"])}


def build(arch: dict[str, Any], features: int):
    import torch

    from cfctool.models.cfc import CfC, CfCCell
    from cfctool.models.wiring import NcpShape, cfc_layer_masks, ncp_adjacency

    sizes = [int(n) for n in arch["ncp_layers"]]
    masks = None
    try:
        shape = NcpShape.auto(sum(sizes), arch["motor"], arch["sparsity"])
    except ValueError:
        shape = None
    # a seed of -1: the masks were imported (cfctool import ncps) and come with the tensors
    if shape is not None and [shape.inter, shape.command, shape.motor] == sizes and arch["wiring_seed"] >= 0:
        sensory, internal = ncp_adjacency(shape, features, arch["wiring_seed"])
        masks = [torch.from_numpy(m) for m in cfc_layer_masks(shape, sensory, internal)]
    cells, width = [], features
    for k, n in enumerate(sizes):
        # other sizes come from a checkpoint, whose mask tensors replace these placeholders
        mask = masks[k] if masks is not None else torch.ones(n, width + n)
        cells.append(
            CfCCell(
                width, n, arch["mode"], backbone_widths=(), sparsity_mask=mask, head_activation=arch["head_activation"]
            )
        )
        width = n
    return CfC(cells, mixed_memory=arch["mixed_memory"])


FAMILY = Family(
    name="cfc-ncp",
    summary="NCP-wired CfC: inter, command and motor cells, no backbone.",
    settings=SETTINGS,
    record=record,
    build=build,
    macs_per_step=cfc.macs_per_step,
    counts=cfc.counts,
    upgrade=upgrade,
    validate=validate,
    unit_groups=cfc.unit_groups,
    resize=cfc.resize,
    heads=cfc.HEADS,
    proof=lambda arch: {f"rnn.cells.{k}.sparsity_mask": [n, None] for k, n in enumerate(arch["ncp_layers"])},
    record_keys=(
        Setting("motor", int, None, "Motor neurons (the task's outputs).", low=1),
        Setting("ncp_layers", list, None, "Inter, command and motor neurons.", low=1),
    ),
)
