"""`cfctool info`: what a checkpoint is, where it came from, and how big it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfctool.checkpoint import Checkpoint
from cfctool.encodings import stored_tensors
from cfctool.families.build import model_from_checkpoint
from cfctool.metrics import parameter_counts


def tensor_bytes(ckpt: Checkpoint) -> int:
    """Bytes of the tensors the file holds (encoded parts as stored): the file less its
    header, which for tiny models can outweigh the weights."""
    stored = stored_tensors(ckpt.tensors, ckpt.encodings, ckpt.parts)
    return sum(t.numel() * t.element_size() for t in stored.values())


def describe(ckpt: Checkpoint) -> dict[str, Any]:
    model = model_from_checkpoint(ckpt)
    sizes: dict[str, Any] = parameter_counts(model)
    sizes["tensors"] = len(ckpt.tensors)
    sizes["tensor_bytes"] = tensor_bytes(ckpt)
    if ckpt.source and Path(ckpt.source).is_file():
        sizes["file_bytes"] = Path(ckpt.source).stat().st_size
    codecs: dict[str, int] = {}
    for spec in ckpt.encodings.values():
        key = spec["codec"] + (f"/{spec['layout']}" if spec.get("layout") else "")
        codecs[key] = codecs.get(key, 0) + 1
    return {
        "source": ckpt.source,
        "encodings": {f"{codec} tensors": n for codec, n in sorted(codecs.items())},
        "arch": ckpt.arch,
        "task": ckpt.task,
        "compression": ckpt.record.get("compression") or {"state": "none"},
        "metrics": ckpt.record.get("metrics", {}),
        "sizes": sizes,
        "integrity": _integrity(ckpt),
        "history": ckpt.record.get("history", []),
    }


def _integrity(ckpt: Checkpoint) -> dict[str, Any]:
    """What the in-file hashes cover: header and data (current files), the data only (files
    written before the header hash), or nothing (before either)."""
    if ckpt.header_sha256:
        return {
            "sha256": ckpt.header_sha256,
            "covers": "header (record, tensor table) and tensor data",
            "verified": "at load",
        }
    if ckpt.data_sha256:
        return {
            "data_sha256": ckpt.data_sha256,
            "verified": "at load",
            "note": "no header hash (written before checkpoints carried one): an edited record is not detected",
        }
    return {
        "data_sha256": None,
        "note": "written before checkpoints carried the sha256 of their tensor data: only a "
        "sidecar's file hash can check it",
    }
