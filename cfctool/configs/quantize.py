"""Settings of `cfctool quantize`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from cfctool.configs.base import (
    _check_lr_threads,
    _check_max_drop,
    _choice,
    _help,
    _positive,
    choices_of,
    max_drop_with_setting,
)
from cfctool.errors import ConfigError


@dataclass
class QuantizeConfig:
    """Settings of `cfctool quantize` (the flags are derived from these)."""

    scheme: Literal["static", "dynamic", "qat"] = _help(
        "static (calibrated activation scales), dynamic (max|z|/127 per step) or qat "
        "(fake-quantized fine-tuning, then static).",
        "static",
    )
    bits: int = _help("Weight bits: 8 or 4 (int4: two values per byte).", 8)
    granularity: Literal["channel", "tensor"] = _help(
        "Weight scales per output channel (channel) or one per tensor (tensor).", "channel"
    )
    observer: Literal["minmax", "percentile", "mse"] = _help(
        "Activation scales: minmax, percentile (99.99th) or mse (the lowest state error).", "minmax"
    )
    calib: int = _help("Training sequences used for calibration and the state-error report.", 256)
    fuse: bool = _help(
        "Quantize the fused products (Linear + activation; the four heads as one matrix); "
        "--no-fuse adds a quantization point on every Linear output (static, qat).",
        True,
    )
    embedding: bool = _help("Store the token embedding as integers too (per row).", True)
    fold_embedding: bool = _help(
        "First fold the embedding into the first backbone layer's input half (exact): "
        "a vocabulary x units table instead of vocabulary x embedding width.",
        False,
    )
    epochs: int = _help("qat: fine-tuning epochs.", 1)
    lr: float = _help(
        "qat: learning rate (Adam); the starting weights are kept unless an epoch beats them on validation.", 2e-5
    )
    batch_size: int = _help("qat: batch size.", 128)
    seed: int = _help("Seed of the calibration sample and of qat.", 0)
    threads: int | None = _help("CPU threads (default: torch's choice).")
    keep_float: str | None = _help(
        "Products kept in float32, comma-separated (e.g. cells.0.heads,cells.0.backbone.1): "
        "the int8 engine runs them as float products; --max-drop's per-layer fallback "
        "sets it."
    )
    max_drop: float | None = _help(
        "Budget: the most of the validation metric to lose (points of accuracy, or of AUC x 100 for a task that reports AUC; percent more MSE for regression); tries int4 and int8 with "
        "every observer and granularity and keeps the most compact within it (--bits, "
        "--observer and --granularity are then searched, not taken)."
    )
    max_drop_with: list[str] = max_drop_with_setting()

    def validate(self) -> None:
        _check_max_drop(self)
        _choice("scheme", self.scheme, choices_of(type(self), "scheme"))
        if self.bits not in (4, 8):
            raise ConfigError(f"bits must be 8 or 4 (got {self.bits})")
        _choice("granularity", self.granularity, choices_of(type(self), "granularity"))
        _choice("observer", self.observer, choices_of(type(self), "observer"))
        for key in ("calib", "epochs", "batch_size"):
            _positive(key, getattr(self, key))
        _check_lr_threads(self)
        if not self.fuse and self.scheme == "dynamic":
            raise ConfigError(
                "--no-fuse adds calibrated quantization points on every Linear output: it applies "
                "to --scheme static or qat, not dynamic"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
