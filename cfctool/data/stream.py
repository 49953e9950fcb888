"""Your own data larger than memory (`--stream`): a Parquet long table read a row group at a time.

The in-memory path (`own`, `tables`) builds every sequence as arrays; a table of many
gigabytes does not fit. With `--stream` the table is never held whole:

- one pass (`scan`) checks every sequence and fits the preprocessing on the training
  sequences (feature mean and std, label map, target scale), counting the sequences of each
  split; the file's sha256 is read before it, in chunks (a second read of the bytes, since
  pyarrow does its own reading), and recorded;
- each epoch reads the row groups in order, assembles sequences, preprocesses them with the
  recorded statistics and shuffles them within a buffer of `stream_buffer` sequences,
  drawing from a generator seeded from the training loop's (so a resumed run, which skips
  the batches it had done, sees the same order); evaluation reads a split in file order.

Splits are by sequence id, drawn from a keyed hash (the id and --split-seed): a sequence is
test, validation or training wherever it sits in the file, with no list of ids in memory.
Under `torchrun`, rank r reads its own contiguous share of the row groups (the sequence
crossing a share's end belongs to the share it starts in), so the ranks read disjoint data,
and every rank takes the same number of steps (the smallest share's).

Restrictions, each an error saying so: the wide form (id, time, features, target in the
table, or a --labels-file), the rows of a sequence contiguous and in time order (sort the
file by id, then time), classification or regression.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfctool.data import prepare, tables
from cfctool.data.base import Dataset, Split, SplitSource
from cfctool.errors import DataError
from cfctool.files import PinnedReads

if TYPE_CHECKING:
    import numpy as np

CHUNK = 8 << 20  # bytes hashed at a time


def file_sha256(path: Path) -> str:
    """The sha256 of a file of any size, read in chunks (never whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def assign(key: str, seed: int, test_fraction: float | None, val_fraction: float) -> str:
    """A sequence's split from its id alone: 'test' (when the file holds the test sequences),
    'val' or 'train'; two keyed hashes, uniform in [0, 1)."""

    def u(what: str) -> float:
        h = hashlib.blake2b(f"{seed}\0{what}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2.0**64

    if test_fraction is not None and u("test") < test_fraction:
        return "test"
    return "val" if val_fraction > 0 and u("val") < val_fraction else "train"


@dataclass
class Layout:
    """How to read the table: its columns and what they are."""

    path: Path
    id_column: str
    time_column: str | None
    features: list[str]
    target_column: str | None
    per_step: bool
    max_length: int
    labels: dict[str, Any] | None = None  # from a labels table: id -> target

    def columns(self) -> list[str]:
        return [
            c
            for c in dict.fromkeys(
                [
                    self.id_column,
                    self.time_column,
                    *self.features,
                    None if self.labels is not None else self.target_column,
                ]
            )
            if c
        ]


@dataclass
class Sequence:
    key: str
    x: np.ndarray  # (L, F) float64, NaN where missing
    t: np.ndarray | None  # (L,) times
    y: Any  # a label or number, or (L,) per step
    where: str  # row numbers, for messages


def _open(path: Path):
    # pyarrow's default allocator (mimalloc) reserves address space in large segments when it
    # loads, which an address-space limit (ulimit -v, a batch scheduler's memory limit) refuses;
    # the system one takes what it uses. (Read when pyarrow loads: set before the import.)
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: --stream reads Parquet with pyarrow: pip install 'cfctool[tables]'") from None
    try:
        return pq.ParquetFile(str(path))
    except Exception as exc:  # pyarrow's own error types for a damaged file
        raise DataError(f"{path}: not a readable Parquet table ({str(exc)[:200]})") from None


def layout(path: Path, s: dict[str, Any]) -> Layout:
    """The table's layout from the settings and its schema (checked before any row is read)."""
    if path.suffix != ".parquet":
        raise DataError(
            f"{path}: --stream reads a Parquet table (row groups are its unit of reading); convert the "
            "file, or train without --stream"
        )
    if s.get("variable_column"):
        raise DataError(
            f"{path}: --stream reads the wide form (a column per feature), not the narrow --variable-column form"
        )
    names = _open(path).schema_arrow.names
    for col, role in ((s["id_column"], "the sequence id"), (s.get("time_column"), "the time")):
        if col and col not in names:
            raise DataError(f"{path}: no column '{col}' ({role}); the columns are: {', '.join(names[:30])}")
    skip = {s["id_column"], s.get("time_column"), s.get("target_column")}
    features = (
        [c.strip() for c in s["feature_columns"].split(",") if c.strip()]
        if s.get("feature_columns")
        else [c for c in names if c not in skip]
    )
    for col in features:
        if col not in names:
            raise DataError(f"{path}: no column '{col}' (a feature); the columns are: {', '.join(names[:30])}")
    if not features:
        raise DataError(f"{path}: no feature columns (every column is the id, the time or the target)")
    labels = None
    if s.get("labels_file"):  # small: one row per sequence
        lpath = Path(s["labels_file"])
        table = tables.read_table(lpath, PinnedReads(error=DataError), "labels")
        keys = (
            [str(v) for v in table.column(s["id_column"]).to_pylist()] if s["id_column"] in table.column_names else None
        )
        if keys is None or s["target_column"] not in table.column_names:
            raise DataError(
                f"{lpath}: the labels table needs the columns '{s['id_column']}' and '{s['target_column']}'"
            )
        labels = dict(zip(keys, table.column(s["target_column"]).to_pylist()))
    elif s.get("target_column") not in names:
        raise DataError(
            f"{path}: no column '{s.get('target_column')}' (the target); the columns are: {', '.join(names[:30])}"
        )
    return Layout(
        path,
        s["id_column"],
        s.get("time_column"),
        features,
        s.get("target_column"),
        bool(s.get("per_step")),
        int(s["max_length"]),
        labels,
    )


def groups_of(path: Path, world) -> tuple[int, int, int]:
    """(first row group, end, total) of this rank's contiguous share (all of them in a world of one)."""
    total = _open(path).num_row_groups
    if world is None:
        return 0, total, total
    return total * world.rank // world.size, total * (world.rank + 1) // world.size, total


def sequences(lay: Layout, first: int = 0, end: int | None = None) -> Iterator[Sequence]:
    """The complete sequences that start in row groups [first, end), in file order: the rows of
    a sequence that began before `first` are skipped, and one that runs past `end` is read to
    its last row. An id seen again after its sequence ended is an error (sort the file)."""
    import numpy as np

    pf = _open(lay.path)
    total = pf.num_row_groups
    end = total if end is None else end
    cols = lay.columns()
    row0 = sum(pf.metadata.row_group(g).num_rows for g in range(first))
    skip = None  # the id of a sequence that began in the share before this one
    if first > 0:
        before = pf.read_row_group(first - 1, columns=[lay.id_column]).column(0)
        skip = str(before[len(before) - 1].as_py()) if len(before) else None
    carry: tuple[str, dict, int] | None = None  # the sequence still open at a group's end
    finished: set[int] = set()
    g = first
    while g < total and (g < end or carry is not None):
        table = pf.read_row_group(g, columns=cols)
        n = table.num_rows
        ids = np.asarray(table.column(lay.id_column).to_numpy(zero_copy_only=False))
        arrays = _columns(lay, table)
        starts = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1] if n else np.array([], dtype=int)
        for a, b in zip(starts.tolist(), np.r_[starts[1:], n].astype(int).tolist()):
            key = str(ids[a])
            if skip is not None:
                if key == skip:
                    continue
                skip = None
            # copies: a view would keep its whole row group alive for as long as the sequence
            # waits in the shuffle buffer (a buffer drawn at random pins many groups)
            part = {k: v[a:b].copy() for k, v in arrays.items()}
            if carry is not None:
                if key == carry[0]:
                    carry = (key, {k: np.concatenate([carry[1][k], v]) for k, v in part.items()}, carry[2])
                    continue
                yield _sequence(lay, *carry, finished)
                carry = None
                if g >= end:  # past the share: it was read only for the open sequence's rows
                    return
            carry = (key, part, row0 + a)
        row0 += n
        g += 1
    if carry is not None:
        yield _sequence(lay, *carry, finished)


def _columns(lay: Layout, table) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    out: dict[str, Any] = {}
    feats = []
    for name in lay.features:
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)):
            raise DataError(f"{lay.path}: column '{name}' (a feature) is {col.type}, not numbers")
        feats.append(np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64))
    out["x"] = np.stack(feats, 1)
    if lay.time_column:
        col = table.column(lay.time_column)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise DataError(f"{lay.path}: column '{lay.time_column}' (the time) is {col.type}, not numbers")
        out["t"] = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    if lay.labels is None:
        col = table.column(lay.target_column)
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        out["y"] = (
            np.asarray(col.to_numpy(zero_copy_only=False)) if numeric else np.array(col.to_pylist(), dtype=object)
        )
    return out


def _sequence(lay: Layout, key: str, rows: dict[str, Any], row: int, finished: set[int]) -> Sequence:
    """One sequence's rows, checked: contiguous in the file, not too long, time increasing, one
    target (or one per step)."""
    import numpy as np

    where = f"sequence {tables.shown_id(key)} (rows from {row + 1:,})"
    h = hash(key)
    if h in finished:
        raise DataError(
            f"{lay.path}: {where}: its id appeared earlier in the file; --stream needs the rows of a "
            "sequence together, in time order (sort the file by id, then time)"
        )
    finished.add(h)
    length = len(rows["x"])
    if length > lay.max_length:
        raise DataError(f"{lay.path}: {where} has {length:,} steps, more than --max-length {lay.max_length:,}")
    t = rows.get("t")
    if t is not None:
        if np.isnan(t).any():
            raise DataError(f"{lay.path}: {where}: the time column '{lay.time_column}' is empty")
        if (np.diff(t) <= 0).any():
            j = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
            raise DataError(
                f"{lay.path}: {where}: time does not increase at step {j} (t = {t[j]:g} after "
                f"{t[j - 1]:g}); --stream needs each sequence's rows in time order"
            )
    if lay.labels is not None:
        if key not in lay.labels or lay.labels[key] is None:
            raise DataError(f"the labels table: no '{lay.target_column}' for {where}")
        y = lay.labels[key]
    elif lay.per_step:
        y = rows["y"]
        if y.dtype == object and any(v is None for v in y):
            raise DataError(f"{lay.path}: {where}: the target column '{lay.target_column}' has empty cells")
    else:
        values = rows["y"]
        if bool(np.any(values[1:] != values[0])):
            raise DataError(
                f"{lay.path}: {where}: the target column '{lay.target_column}' varies within the "
                "sequence; give --per-step, or one value per sequence"
            )
        y = values[0].item() if hasattr(values[0], "item") else values[0]
        if y is None or (isinstance(y, float) and math.isnan(y)):
            raise DataError(f"{lay.path}: {where}: the target column '{lay.target_column}' is empty")
    return Sequence(key, rows["x"], t, y, where)


@dataclass
class Fitted:
    """What one pass learns from the training sequences, and the counts of every split."""

    counts: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "test": 0})
    rows: int = 0
    longest: int = 0
    sums: Any = None
    squares: Any = None
    observed: Any = None
    labels: set = field(default_factory=set)
    y_sum: float = 0.0
    y_square: float = 0.0
    y_count: int = 0


def scan(lay: Layout, target: str, missing: str, seed: int, test_fraction: float | None, val_fraction: float) -> Fitted:
    """One pass: every sequence checked, the training statistics summed, the splits counted."""
    import numpy as np

    fit = Fitted()
    f = len(lay.features)
    fit.sums, fit.squares, fit.observed = np.zeros(f), np.zeros(f), np.zeros(f)
    for seq in sequences(lay):
        _check_values(lay, seq, missing, target)
        split = assign(seq.key, seed, test_fraction, val_fraction)
        fit.counts[split] += 1
        fit.rows += len(seq.x)
        fit.longest = max(fit.longest, len(seq.x))
        if split != "train":
            continue
        seen = ~np.isnan(seq.x)
        fit.sums += np.where(seen, seq.x, 0.0).sum(0)
        fit.squares += np.square(np.where(seen, seq.x, 0.0)).sum(0)
        fit.observed += seen.sum(0)
        values = seq.y if lay.per_step else [seq.y]
        if target == "classification":
            fit.labels.update(tables.label_text(v) for v in values)
        else:
            numbers = np.asarray(values, dtype=np.float64)
            fit.y_sum += float(numbers.sum())
            fit.y_square += float((numbers**2).sum())
            fit.y_count += len(numbers)
    return fit


def _check_values(lay: Layout, seq: Sequence, missing: str, target: str) -> None:
    import numpy as np

    bad = np.isinf(seq.x) if missing == "indicator" else ~np.isfinite(seq.x)
    if bad.any():
        j, f = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(
            f"{lay.path}: {seq.where}: '{lay.features[f]}' is "
            f"{'infinite' if missing == 'indicator' else 'NaN or infinite'} at step {j}"
            + ("" if missing == "indicator" else "; give --missing indicator, or clean it")
        )
    if target == "regression":
        values = seq.y if lay.per_step else [seq.y]
        try:
            numbers = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(
                f"{lay.path}: {seq.where}: --target regression needs numbers in '{lay.target_column}'"
            ) from None
        if not np.isfinite(numbers).all():
            raise DataError(f"{lay.path}: {seq.where}: the target is NaN or infinite")


class StreamSplit:
    """One split of a streamed table: its length (sequences), batches in file order
    (`batches`, for evaluation), shuffled batches of an epoch (`epoch`) and an in-memory
    sample (`sample`, for calibration and checks)."""

    def __init__(self, lay: Layout, task: dict[str, Any], tensors: dict[str, Any], split: str, count: int):
        self.lay, self.task, self.tensors, self.split, self.count = lay, task, tensors, split, count
        p = task["preprocessing"]
        self.seed, self.test_fraction = p["split_seed"], p.get("test_fraction")
        self.val_fraction = p.get("stream", {}).get("val_fraction", 0.0)
        self.buffer = p.get("stream", {}).get("buffer", 4096)

    def __len__(self) -> int:
        return self.count

    def _mine(self, first: int = 0, end: int | None = None) -> Iterator[Sequence]:
        for seq in sequences(self.lay, first, end):
            if assign(seq.key, self.seed, self.test_fraction, self.val_fraction) == self.split:
                yield seq

    def batches(self, size: int) -> Iterator[Split]:
        """Consecutive batches of `size` sequences in file order (the last may be smaller)."""
        batch: list[Sequence] = []
        for seq in self._mine():
            batch.append(seq)
            if len(batch) == size:
                yield self._collate(batch)
                batch = []
        if batch:
            yield self._collate(batch)

    def epoch(self, size: int, seed: int, world=None) -> Iterator[Split]:
        """An epoch's batches: this rank's row groups in order, each sequence through a shuffle
        buffer of `stream_buffer` sequences drawn from a generator seeded with `seed`."""
        import numpy as np

        rng = np.random.default_rng(seed)
        first, end, _ = groups_of(self.lay.path, world)
        pool: list[Sequence] = []
        batch: list[Sequence] = []
        for seq in self._mine(first, end):
            pool.append(seq)
            if len(pool) < self.buffer:
                continue
            i = int(rng.integers(len(pool)))
            pool[i], pool[-1] = pool[-1], pool[i]
            batch.append(pool.pop())
            if len(batch) == size:
                yield self._collate(batch)
                batch = []
        for i in rng.permutation(len(pool)).tolist():
            batch.append(pool[i])
            if len(batch) == size:
                yield self._collate(batch)
                batch = []
        if batch:
            yield self._collate(batch)

    def sample(self, n: int, seed: int = 0) -> Split:
        """n sequences of the split, a seeded reservoir sample in file order (all when n >= len)."""
        import numpy as np

        rng = np.random.default_rng(seed)
        kept: list[tuple[int, Sequence]] = []
        for i, seq in enumerate(self._mine()):
            if len(kept) < n:
                kept.append((i, seq))
            else:
                j = int(rng.integers(i + 1))
                if j < n:
                    kept[j] = (i, seq)
        if not kept:
            raise DataError(f"{self.lay.path}: the {self.split} split holds no sequences")
        return self._collate([s for _, s in sorted(kept, key=lambda p: p[0])])

    def _collate(self, seqs: list[Sequence]) -> Split:
        """Sequences as one padded batch, preprocessed as the in-memory path does (`prepare`)."""
        import numpy as np

        n, longest, f = len(seqs), max(len(s.x) for s in seqs), len(self.lay.features)
        x = np.full((n, longest, f), np.nan, dtype=np.float32)
        dt = np.zeros((n, longest), dtype=np.float32)
        mask = np.zeros((n, longest), dtype=bool)
        per_step = self.lay.per_step
        y = np.empty((n, longest) if per_step else (n,), dtype=object)
        for i, s in enumerate(seqs):
            steps = len(s.x)
            x[i, :steps], mask[i, :steps] = s.x, True
            dt[i, :steps] = 1.0 if s.t is None else np.r_[0.0, np.diff(s.t)]
            if per_step:
                y[i], y[i, :steps] = s.y[0], s.y  # the padding repeats a valid target: it is masked
            else:
                y[i] = s.y
        if self.task["output"]["kind"] == "regression":
            y = y.astype(np.float64)
        return prepare.split(self.task, self.tensors, x, dt, mask, y, where=f"{self.lay.path} ({self.split} split)")


def load(cfg, settings: dict[str, Any], target: str, missing: str) -> Dataset:
    """The streamed data set: one pass to check and fit, then splits that read on demand."""
    import numpy as np
    import torch

    path = Path(cfg.data_file)
    if target == "forecast":
        raise DataError(
            f"{path}: --stream trains classification or regression (forecasting needs the whole sequence in memory)"
        )
    if cfg.test_file or cfg.val_file:
        raise DataError(
            f"{path}: with --stream the test and validation sequences are fractions of the file (a "
            "seeded split by id: --test-fraction, --val-fraction), not --test-file or --val-file"
        )
    lay = layout(path, settings)
    sha = file_sha256(path)
    fit = scan(lay, target, missing, cfg.split_seed, cfg.test_fraction, cfg.val_fraction)
    if fit.counts["train"] == 0 or fit.counts["test"] == 0 or (cfg.val_fraction > 0 and fit.counts["val"] == 0):
        raise DataError(
            f"{path}: {fit.counts['train']} training, {fit.counts['val']} validation and "
            f"{fit.counts['test']} test sequences; give more sequences or other --test-fraction and "
            "--val-fraction (0: no validation hold-out)"
        )
    with np.errstate(all="ignore"):
        mean = np.where(fit.observed > 0, fit.sums / np.maximum(fit.observed, 1), 0.0)
        var = np.where(fit.observed > 0, fit.squares / np.maximum(fit.observed, 1) - mean**2, 1.0)
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std > 0, std, 1.0)
    prep: dict[str, Any] = {
        "file": {"path": str(path.resolve()), "sha256": sha},
        "test_file": None,
        "test_fraction": cfg.test_fraction,
        "split_seed": cfg.split_seed,
        "features": "standardised with the training steps' mean and std (task.x_mean, task.x_std)",
        "missing": missing,
        "dt": ("from t" + (f", in {cfg.time_unit}" if cfg.time_unit else "")) if lay.time_column else "1 per step",
        "sequences": dict(fit.counts),
        "feature_names": lay.features,
        "table": settings,
        "stream": {
            "val_fraction": cfg.val_fraction,
            "buffer": cfg.stream_buffer,
            "rows": fit.rows,
            "longest": fit.longest,
        },
    }
    if settings.get("labels_file"):
        lpath = Path(settings["labels_file"])
        prep["labels_file"] = {"path": str(lpath.resolve()), "sha256": file_sha256(lpath)}
    per_step = lay.per_step
    if target == "classification":
        output = tables.classification_output(path, fit.labels, per_step)
        prep["classes"] = output["classes"]
    else:
        y_mean = fit.y_sum / max(fit.y_count, 1)
        y_std = math.sqrt(max(fit.y_square / max(fit.y_count, 1) - y_mean**2, 0.0)) or 1.0
        if cfg.target_scale == "none":
            y_mean, y_std = 0.0, 1.0
        prep["y_mean"], prep["y_std"] = y_mean, y_std
        output = {"kind": "regression", "size": 1, "per_step": per_step, "scale": [y_std]}
    width = len(lay.features) * (2 if missing == "indicator" else 1)
    task = {"dataset": "own", "input": {"kind": "features", "size": width}, "output": output, "preprocessing": prep}
    tensors = {"x_mean": torch.from_numpy(mean.astype(np.float32)), "x_std": torch.from_numpy(std.astype(np.float32))}
    splits: dict[str, SplitSource] = {
        name: StreamSplit(lay, task, tensors, name, fit.counts[name])
        for name in ("train", "val", "test")
        if name != "val" or cfg.val_fraction > 0
    }
    return Dataset(task=task, splits=splits, task_tensors=tensors, files=[str(path)])


def load_split(task: dict[str, Any], split: str, path: Path, task_tensors) -> StreamSplit:
    """A split of a streamed table again, refused when the file changed since training."""
    p = task["preprocessing"]
    settings = dict(p.get("table") or {})
    if p.get("labels_file"):
        settings["labels_file"] = p["labels_file"]["path"]
    for where, recorded in (
        (path, p["file"]),
        *([(Path(p["labels_file"]["path"]), p["labels_file"])] if p.get("labels_file") else []),
    ):
        if file_sha256(where) != recorded["sha256"]:
            raise DataError(
                f"{where}: the file changed since the checkpoint was made (its sha256 differs from the "
                "recorded one); evaluate on the file it was trained on"
            )
    if split not in ("train", "val", "test"):
        raise DataError(f"own (streamed) has the splits train, val and test (got '{split}')")
    lay = layout(path, settings)
    return StreamSplit(lay, task, task_tensors, split, int(p["sequences"].get(split, 0)))
