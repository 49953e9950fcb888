"""What every data module returns: splits of tensors plus the task record they imply."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cfctool.errors import DataError

if TYPE_CHECKING:  # torch and numpy load inside the functions: `cfctool --help` reads this module's settings
    import torch


@dataclass
class Split:
    """Batch-first tensors of one split.

    x: (N, T, F) float features or (N, T) int64 token ids; y: (N,) or (N, T) targets;
    dt: (N, T) elapsed time per step (None = 1.0); mask: (N, T) bool valid steps (None = all).
    extra: more per-row tensors that travel with the rows (e.g. a teacher's cached logits).
    """

    x: torch.Tensor
    y: torch.Tensor
    dt: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, index: torch.Tensor | slice) -> Split:
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return Split(
            self.x[index], self.y[index], pick(self.dt), pick(self.mask), {k: v[index] for k, v in self.extra.items()}
        )

    def batches(self, size: int) -> Iterator[Split]:
        """Consecutive batches of `size` rows in order (the last may be smaller)."""
        for start in range(0, len(self), size):
            yield self.take(slice(start, start + size))

    def sample(self, n: int, seed: int = 0) -> Split:
        """A seeded random subset of n rows in their original order (all rows when n >= len).
        Random, not the first n: several test sets (IMDB) are sorted by label."""
        return self if n >= len(self) else self.take(sample_indices(len(self), n, seed))


def sample_indices(total: int, n: int, seed: int = 0) -> torch.Tensor:
    """Which rows `Split.sample` keeps; data modules use it to read only those."""
    import torch

    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


class SplitSource(Protocol):
    """A split as training, evaluation and calibration read it: in memory (`Split`) or read
    from disk as it goes (`data.stream.StreamSplit`)."""

    def __len__(self) -> int: ...
    def batches(self, size: int) -> Iterator[Split]: ...
    def sample(self, n: int, seed: int = 0) -> Split: ...


@dataclass
class Dataset:
    """Splits by name ('train', 'val', 'test'), the task record, and tensors the model needs at
    inference (e.g. a vocabulary) that must travel inside the checkpoint under 'task.*'."""

    task: dict[str, Any]
    splits: dict[str, SplitSource]
    task_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    test_subset: dict[str, Any] | None = None  # set when the test split was capped
    # training-time augmentation of a batch, drawing from the given generator (the training
    # loop's shuffle generator, saved with the training state, so a resumed run draws the same)
    augment: Callable[[Split, torch.Generator], Split] | None = None


def split_off_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split | None]:
    """A seeded, reproducible hold-out of `fraction` of the training split."""
    import torch

    n_val = int(round(len(train) * fraction))
    if n_val == 0:
        return train, None
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.take(order[n_val:]), train.take(order[:n_val])


def find_input(data_dir, folder: str, candidates: list[str], layout: str):
    """The first existing candidate under DATA_DIR/folder or DATA_DIR itself.

    `data_dir` may point at the folder of all data sets or at this data set's own folder.
    A missing data set is a DataError that names where it looked and what it expects.
    """
    from pathlib import Path

    if data_dir is None:
        raise DataError(
            f"no data directory given for '{folder}': pass --data DIR or set CFCTOOL_DATA (expected {layout})"
        )
    base = Path(data_dir)
    if not base.is_dir():
        raise DataError(f"data directory {base} does not exist (expected {layout})")
    for root in (base / folder, base):
        for name in candidates:
            if (root / name).exists():
                return root / name
    raise DataError(f"'{folder}' data not found under {base}: expected {layout}")
