"""One flat setting (a flag, a config-file key): what model families and data sets declare,
so that a new family or data set brings its own flags. Torch-free: `--help` reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One flat setting key: its type, default, one-line help, and allowed values if any."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None  # inclusive lower bound
    high: float | None = None  # inclusive upper bound
    below: float | None = None  # exclusive upper bound

    def check(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)} (got '{value}')"
        for v in (value if isinstance(value, list) else [value]):
            if self.low is not None and v < self.low:
                return f"{self.name} must be >= {self.low:g} (got {value})"
            if self.high is not None and v > self.high:
                return f"{self.name} must be <= {self.high:g} (got {value})"
            if self.below is not None and v >= self.below:
                return f"{self.name} must be < {self.below:g} (got {value})"
        return None
