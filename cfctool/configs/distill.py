"""Settings of `cfctool distill` (the student's own training settings are a run's)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from cfctool.configs.base import _choice, _help, choices_of
from cfctool.configs.run import ARCHS
from cfctool.errors import ConfigError


@dataclass
class DistillConfig:
    """Settings of `cfctool distill` beyond the student's arch and training settings (those
    are the train flags, defaulting to the teacher's data set preset for the student arch)."""

    student: str | None = _help(f"Student architecture: one of {', '.join(ARCHS)}.")
    alpha: float = _help(
        "Weight of the hard-label loss: alpha * CE(student, labels) + (1 - alpha) * "
        "KD(student, teacher); 1 trains without the teacher.",
        0.25,
    )
    temperature: float = _help("Softmax temperature of the KL distillation loss (scaled by T^2).", 1.0)
    kd_loss: Literal["kl", "mse"] = _help(
        "Distillation loss: kl (softened class distributions) or mse (on the logits).", "kl"
    )
    init_checkpoint: str | None = _help(
        "Start the student from this checkpoint (e.g. a pruned one); its shapes must match the student settings.",
        flags="--init",
    )
    preset: str = _help(
        "Preset of the student's data set (the teacher's unless --dataset) for its settings.", "default"
    )

    def validate(self) -> None:
        if self.student is None:
            raise ConfigError(f"--student is required: one of {', '.join(ARCHS)}")
        _choice("student", self.student, ARCHS)
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"--alpha must be in [0, 1] (got {self.alpha})")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be > 0 (got {self.temperature})")
        _choice("kd_loss", self.kd_loss, choices_of(type(self), "kd_loss"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
