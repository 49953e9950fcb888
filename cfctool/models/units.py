"""Whole units taken out of a model's tensors: what structured pruning and the CfC
reductions that drop hidden units (apoz) both do, given the family's unit groups."""

from __future__ import annotations

from typing import Any

import torch


def remove_units(
    tensors: dict[str, torch.Tensor], groups: Any, drop: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every tensor with the dropped units' rows/columns taken out, all groups at once (so
    offsets of groups sharing a tensor, e.g. input and state columns, stay valid)."""
    keep: dict[tuple[str, int], torch.Tensor] = {}
    for g in groups:
        gone = drop.get(g.name)
        if gone is None or not len(gone):
            continue
        for name, dim, offset, _ in g.slices:
            mask = keep.setdefault((name, dim), torch.ones(tensors[name].shape[dim], dtype=torch.bool))
            mask[offset + gone] = False
    out = dict(tensors)
    for (name, dim), mask in sorted(keep.items()):
        out[name] = out[name].index_select(dim, torch.nonzero(mask).reshape(-1)).contiguous()
    return out
