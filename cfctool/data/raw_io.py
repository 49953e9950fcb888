"""A model of your own data at its edges: raw values in, your units out.

Training standardises your features with the training split's mean and std (`own` records
them as `task.x_mean` and `task.x_std`) and, for regression and forecasting, the targets too.
An exported model should not make the device repeat that: `export --format c` folds the
standardisation into the first product (the columns of the input half divided by std, the
mean moved into the bias, or, with the missing-value indicator, into the indicator's
columns, so that a missing value is simply given as 0) and maps the outputs back to your
units; the ONNX graph does the same arithmetic as its first and last ops. This module is
that arithmetic, in one place, for both exports and for the checks that compare them with
the model on standardised inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class RawIO:
    mean: torch.Tensor  # (F,) the training steps' feature means
    std: torch.Tensor  # (F,) and standard deviations (never 0)
    indicator: bool  # the input is [values (F), observed 0/1 (F)]
    out_scale: torch.Tensor | None  # (outputs,) your units per standardised unit (regression, forecast)
    out_shift: torch.Tensor | None

    @property
    def features(self) -> int:
        return int(self.mean.numel())

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs (a missing value given as 0 with its indicator 0) -> what the model reads."""
        import torch

        f = self.features
        if self.indicator:
            values, observed = x[..., :f], x[..., f:]
            return torch.cat([(values - self.mean) / self.std * observed, observed], -1)
        return (x - self.mean) / self.std

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, c) with raw = M x + c for what the model reads x: diag(std) and the means; with
        the indicator, a value is std * x + mean * observed (0 where missing), so the means sit
        in M's indicator columns and c is 0."""
        import torch

        f = self.features
        if not self.indicator:
            return torch.diag(self.std), self.mean.clone()
        m = torch.eye(2 * f)
        m[:f, :f] = torch.diag(self.std)
        m[:f, f:] = torch.diag(self.mean)
        return m, torch.zeros(2 * f)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """What the model reads -> the raw inputs `standardise` takes back (for the checks)."""
        m, c = self.affine()
        return x @ m.t() + c

    def fold_first(self, w_t: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A first product `u = x W + b` (w_t: inputs x outputs) on standardised x, as one on raw x."""
        import torch

        f = self.features
        w_x = w_t[:f] / self.std.unsqueeze(1)
        shift = self.mean @ w_x  # what the means contribute: subtracted once per observed value
        if self.indicator:
            return torch.cat([w_x, w_t[f : 2 * f] - self.mean.unsqueeze(1) * w_x, w_t[2 * f :]]), b
        return torch.cat([w_x, w_t[f:]]), b - shift

    def output(self, y: torch.Tensor) -> torch.Tensor:
        """The model's outputs in your units (classification logits pass unchanged)."""
        return y if self.out_scale is None else y * self.out_scale + self.out_shift

    def describe(self) -> str:
        """The exported file's account of its inputs and outputs (fixed words and counts only)."""
        f = self.features
        text = (
            f"raw features: the standardisation fitted on the training split (mean and std of {f} features) "
            "is folded into the first product"
        )
        if self.indicator:
            text += (
                f"; the {2 * f} inputs are {f} values (0 where missing) then {f} observed flags (1 observed, 0 missing)"
            )
        if self.out_scale is not None:
            text += "; outputs in the units of the data (the recorded target mean and std applied)"
        return text


def of(task: dict[str, Any], tensors: dict[str, torch.Tensor]) -> RawIO | None:
    """The raw-value edges of a model trained on your own features; None for the built-in
    tasks and token inputs (nothing was standardised)."""
    import torch

    if task.get("dataset") != "own" or "x_mean" not in tensors or "x_std" not in tensors:
        return None
    p = task.get("preprocessing") or {}
    mean, std = tensors["x_mean"].float(), tensors["x_std"].float()
    scale = shift = None
    if p.get("forecast"):
        scale, shift = std, mean
    elif task["output"]["kind"] == "regression" and "y_std" in p:
        scale = torch.tensor(p["y_std"], dtype=torch.float32).reshape(-1)  # one target, or K per step
        shift = torch.tensor(p["y_mean"], dtype=torch.float32).reshape(-1)
    return RawIO(mean, std, p.get("missing") == "indicator", scale, shift)
