"""Typed sections of a checkpoint's record, each with one writer (`to_dict`) and one reader
(`read`), so the command that writes a section and the engines that read it share one spelling.

`compression.quantization` is written by `cfctool quantize` and read by the integer engines
(folded-int8, the generated C, the ONNX integer graph) and the models' integer path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from cfctool.errors import CheckpointError

INTEGER_SCHEMES = ("static", "dynamic", "qat")  # the schemes whose checkpoints the integer engines run


@dataclass(frozen=True)
class QuantizationRecord:
    """What `quantize` did: enough for an engine to run the stored integers as calibrated."""

    scheme: str
    bits: int
    granularity: str
    observer: str | None
    calib_sequences: int
    fuse: bool = True  # (files written before fuse existed were fused)
    embedding: bool = True
    weights: int = 0
    activations: str = "static"
    activation_scales: dict[str, float] = field(default_factory=dict)
    state_scale: str = "1/127 (y in [0, 1])"
    state_mse: dict[str, float] = field(default_factory=dict)
    state_mse_against: str = "the fp32 input model"
    integer_engine: bool = False
    float_units: list[str] | None = None  # --keep-float: the products kept in float32 ...
    float_layers: list[str] | None = None  # ... and their weights
    qat_kept_epoch: int | None = None  # qat: the fine-tuned epoch kept (0: the starting weights)
    budget: dict[str, Any] | None = None  # --max-drop: the search (ops.budget)

    SECTION = "quantization"
    _OPTIONAL = ("float_units", "float_layers", "qat_kept_epoch", "budget")  # written only when set

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if not (k in self._OPTIONAL and v is None)}

    @property
    def runs_on_integers(self) -> bool:
        return self.scheme in INTEGER_SCHEMES

    @classmethod
    def read(cls, record: dict[str, Any]) -> QuantizationRecord | None:
        """The section of a record (None when the checkpoint is not quantized); a section that
        lacks what a reader needs, or holds what no writer wrote, is a CheckpointError."""
        section = (record.get("compression") or {}).get(cls.SECTION)
        if section is not None and not isinstance(section, dict):
            raise CheckpointError("the record's compression.quantization is not a mapping")
        if not section or "scheme" not in section:  # none, or mid-quantization (float_layers only)
            return None
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - names)
        missing = [n for n in ("scheme", "bits", "granularity", "calib_sequences") if n not in section]
        if unknown or missing:
            raise CheckpointError(
                "the record's compression.quantization "
                + (f"holds unknown keys {unknown[:5]}" if unknown else f"lacks {', '.join(missing)}")
                + "; the file was altered or written by a faulty tool"
            )
        return cls(**{"observer": None, **section})


def float_layers(record: dict[str, Any]) -> list[str]:
    """Weights a quantized checkpoint keeps in float32 (quantize --keep-float); also read from a
    checkpoint mid-quantization, whose section holds only them."""
    section = (record.get("compression") or {}).get(QuantizationRecord.SECTION) or {}
    return list(section.get("float_layers") or [])
