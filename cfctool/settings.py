"""One flat setting (a flag, a config-file key): what model families and data sets declare,
so that a new family or data set brings its own flags. Torch-free: `--help` reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# the largest size (units, widths, channels, steps) a file may claim: beyond any model here, far
# below what would exhaust memory before the tensors' own shapes are compared
MAX_SIZE = 1 << 20
MAX_THREADS = 1024  # beyond any machine's cores; more fails inside the OpenMP runtime
_KIND = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list of sizes"}


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

    def check_stored(self, value: Any) -> str | None:
        """Why a value read from a file is not allowed: the wrong type, or what `check` says;
        None when it is fine."""
        if value is None:
            return None if self.default is None else f"must be {_KIND.get(self.type, self.type.__name__)} (got null)"
        items = value if self.type is list else [value]
        if self.type is list and not isinstance(value, list):
            return f"must be a list of sizes (got {type(value).__name__})"
        for item in items:
            kind = int if self.type is list else self.type
            fits = (
                (isinstance(item, (int, float)) and not isinstance(item, bool))
                if kind is float
                else (isinstance(item, int) and not isinstance(item, bool))
                if kind is int
                else isinstance(item, kind)
            )
            if not fits:
                return f"must be {_KIND.get(kind, kind.__name__)} (got {type(item).__name__} {str(item)[:40]!r})"
        return self.check(value)

    def check(self, value: Any) -> str | None:
        """Why `value` is not allowed (a choice not among the choices, out of bounds, a size
        above MAX_SIZE), or None."""
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)} (got '{value}')"
        for v in value if isinstance(value, list) else [value]:
            if self.low is not None and v < self.low:
                return f"{self.name} must be >= {self.low:g} (got {value})"
            if self.type in (int, list) and self.low is not None and self.low >= 1 and v > MAX_SIZE:
                return f"{self.name} must be at most {MAX_SIZE:,} (got {v:,})"
            if self.high is not None and v > self.high:
                return f"{self.name} must be <= {self.high:g} (got {value})"
            if self.below is not None and v >= self.below:
                return f"{self.name} must be < {self.below:g} (got {value})"
        return None
