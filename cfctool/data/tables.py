"""Long tables (CSV, Parquet) as the arrays of `cfctool.data.own`: one row per observation.

Two shapes, read with pyarrow (the `tables` extra):
- **wide-long**: a sequence-id column, an optional time column, feature columns and a target
  column; each row is one step of its sequence (rows of a sequence sorted by time, else kept
  in file order);
- **narrow** (entity-attribute-value): id, time, variable name, value; each variable is
  observed at its own times, so a step is one (id, time) and a variable not observed there is
  missing (NaN here; `own` turns it into a mask channel, never a silent zero); several values
  of a variable at one time are averaged.

Targets sit in the table (constant within a sequence, or per step with `per_step`) or in a
second table keyed by the sequence id (`labels_file`). Every defect is a DataError naming
the file, the column and the row or sequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfctool.errors import DataError
from cfctool.files import PinnedReads

if TYPE_CHECKING:
    import numpy as np

SUFFIXES = (".csv", ".parquet")


def read_table(path: Path, reads: PinnedReads, what: str = "table"):
    """A pyarrow Table from a CSV or Parquet file (bounded, regular files only, pinned by `reads`)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading CSV and Parquet tables needs pyarrow: pip install 'cfctool[tables]'"
        ) from None
    data = reads.read(path, f"{what} file")
    try:
        if path.suffix == ".parquet":
            return pq.read_table(pa.BufferReader(data))
        return pcsv.read_csv(pa.BufferReader(data))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:  # broken quoting, wrong column count, ...
        raise DataError(f"{path}: not a readable {path.suffix[1:].upper()} table ({str(exc).strip()[:300]})") from None


def _column(path: Path, table, name: str, role: str):
    if name not in table.column_names:
        raise DataError(f"{path}: no column '{name}' ({role}); the columns are: {', '.join(table.column_names[:30])}")
    return table.column(name)


def _codes(path: Path, table, name: str, role: str, empty_ok: bool) -> tuple[np.ndarray, list[str]]:
    """A column as (a code per row, the distinct values as text), without a Python object per
    row (PhysioNet's 1.75 million observations per set); an empty cell is an error naming its
    row, or (`empty_ok`) the code len(values)."""
    import numpy as np
    import pyarrow.compute as pc

    col = _column(path, table, name, role)
    if col.null_count:
        if not empty_ok:
            row = int(np.argmax(pc.is_null(col).to_numpy(zero_copy_only=False)))
            raise DataError(
                f"{path}: column '{name}' ({role}) is empty at row {row + (2 if path.suffix == '.csv' else 1)}"
            )
    encoded = col.dictionary_encode()
    names = [str(v) for v in encoded.chunk(0).dictionary.to_pylist()] if encoded.num_chunks else []
    codes = (
        np.concatenate([c.indices.fill_null(len(names)).to_numpy(zero_copy_only=False) for c in encoded.chunks]).astype(
            np.int64
        )
        if encoded.num_chunks
        else np.zeros(0, np.int64)
    )
    return codes, names


def _numbers(path: Path, table, name: str, role: str, row_of=None) -> np.ndarray:
    """A column as float64 (nulls NaN); text that is not a number is an error naming its row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _column(path, table, name, role)
    if (
        pa.types.is_integer(col.type)
        or pa.types.is_floating(col.type)
        or pa.types.is_boolean(col.type)
        or pa.types.is_null(col.type)
    ):
        return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    values = col.to_pylist()
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            row = i + 2 if path.suffix == ".csv" else i + 1  # a CSV's header is line 1
            raise DataError(
                f"{path}: column '{name}' ({role}) holds {str(v)[:40]!r} at "
                f"{'line' if path.suffix == '.csv' else 'row'} {row}, not a number"
            ) from None
    del pc
    return out


def arrays_from_table(path: Path, s: dict[str, Any], reads: PinnedReads) -> dict[str, np.ndarray]:
    """The arrays `own` reads (x, y, t, mask; `ids` and `features` for the record) from a long
    table, per the settings `s` (id_column, time_column, feature_columns, target_column,
    variable_column, value_column, labels_file, per_step, max_length)."""
    import numpy as np

    table = read_table(path, reads)
    if table.num_rows == 0:
        raise DataError(f"{path}: the table has no rows")
    id_codes, id_names = _codes(path, table, s["id_column"], "the sequence id", empty_ok=False)
    times = _numbers(path, table, s["time_column"], "the time") if s.get("time_column") else None
    narrow = bool(s.get("variable_column"))
    if narrow:
        if times is None:
            raise DataError(
                f"{path}: the narrow form (--variable-column) needs --time-column: a step is one (id, time)"
            )
        var_codes, var_names = _codes(path, table, s["variable_column"], "the variable name", empty_ok=True)
        values = _numbers(path, table, s["value_column"], "the value")
        features = sorted(set(var_names))
    else:
        skip = {s["id_column"], s.get("time_column"), s.get("target_column")}
        names = (
            [c.strip() for c in s["feature_columns"].split(",") if c.strip()]
            if s.get("feature_columns")
            else [c for c in table.column_names if c not in skip]
        )
        if not names:
            raise DataError(f"{path}: no feature columns (every column is the id, the time or the target)")
        columns = [_numbers(path, table, c, "a feature") for c in names]
        features = names
    bad_time = np.isnan(times) if times is not None else None
    if bad_time is not None and bad_time.any():
        row = int(np.flatnonzero(bad_time)[0])
        raise DataError(
            f"{path}: column '{s['time_column']}' (the time) is empty at row "
            f"{row + (2 if path.suffix == '.csv' else 1)}"
        )
    # vectorised: sequences in natural id order, each row's step within its sequence
    sequences = sorted(id_names, key=natural_order)
    place = {name: i for i, name in enumerate(sequences)}
    seq = np.array([place[name] for name in id_names], dtype=np.int64)[id_codes]
    n, f = len(sequences), len(features)
    within = np.arange(len(seq)) if times is None else times  # file order, else time order
    order = np.lexsort((within, seq))
    s_seq = seq[order]
    starts = np.r_[True, s_seq[1:] != s_seq[:-1]]
    if narrow:  # a step is one (id, time): rows at the same time share it
        assert times is not None  # narrow tables have a time column
        s_time = times[order]
        new_step = starts | np.r_[True, s_time[1:] != s_time[:-1]]
    else:
        new_step = np.ones(len(order), dtype=bool)
        if times is not None:
            s_time = times[order]
            repeated = np.flatnonzero(~starts[1:] & (s_time[1:] == s_time[:-1]))
            if len(repeated):
                r = order[repeated[0] + 1]
                raise DataError(
                    f"{path}: sequence {shown_id(sequences[seq[r]])} has two rows at time {times[r]:g}; one row "
                    "per step"
                )
    step_global = np.cumsum(new_step) - 1
    first_of_seq = step_global[starts]  # the global step id where each sequence (in rank order) begins
    pos = step_global - first_of_seq[np.cumsum(starts) - 1]
    lengths = np.zeros(n, dtype=np.int64)
    np.maximum.at(lengths, s_seq, pos + 1)
    too_long = np.flatnonzero(lengths > s["max_length"])
    if len(too_long):
        i = int(too_long[0])
        raise DataError(
            f"{path}: sequence {shown_id(sequences[i])} has {int(lengths[i]):,} steps, more than --max-length "
            f"{s['max_length']:,}; raise the bound or cut the sequences"
        )
    longest = int(lengths.max())
    t = np.zeros((n, longest))
    mask = np.arange(longest)[None, :] < lengths[:, None]
    if times is not None:
        t[s_seq, pos] = times[order]
    # float32, as the model reads them: the (N, T, F) array is the largest thing built here
    # (PhysioNet's 8,000 stays x 203 steps x 41 variables), so it is built once
    x = np.full((n, longest, f), np.nan, dtype=np.float32)
    if narrow:  # several values of a variable at one time: their mean (summed per observed cell only)
        var_index = {name: j for j, name in enumerate(features)}
        v = np.array([var_index[name] for name in var_names] + [-1], dtype=np.int64)[var_codes][order]
        vals = values[order]
        keep = (v >= 0) & ~np.isnan(vals)
        cell = (s_seq[keep] * longest + pos[keep]) * f + v[keep]
        cells, inverse = np.unique(cell, return_inverse=True)
        x.reshape(-1)[cells] = np.bincount(inverse, weights=vals[keep]) / np.bincount(inverse)
    else:
        x[s_seq, pos] = np.stack(columns, 1)[order]
    steps_of = (order, s_seq, pos)
    out: dict[str, Any] = {"x": x, "mask": mask, "ids": sequences, "features": features}
    if times is not None:
        out["t"] = t
    if not s.get("forecast"):  # a forecast's targets are the inputs' own next steps
        out["y"] = _targets(path, table, s, sequences, steps_of, longest, narrow, reads)
    return out


def _targets(path: Path, table, s, sequences, steps_of, longest, narrow, reads: PinnedReads) -> np.ndarray:
    """y per sequence (from a labels table, or constant within each sequence) or per step."""
    import numpy as np

    name = s["target_column"]
    if s.get("labels_file"):
        lpath = Path(s["labels_file"])
        labels = read_table(lpath, reads, "labels")
        keys = [str(v) for v in _column(lpath, labels, s["id_column"], "the sequence id").to_pylist()]
        found = dict(zip(keys, _column(lpath, labels, name, "the target").to_pylist()))
        missing = [k for k in sequences if k not in found or found[k] is None]
        if missing:
            raise DataError(
                f"{lpath}: no '{name}' for sequence {shown_id(missing[0])} ({len(missing)} sequences have none)"
            )
        return _plain(np.array([found[k] for k in sequences], dtype=object))
    if narrow:
        raise DataError(f"{path}: in the narrow form the targets come from a second table: give --labels-file")
    column = np.array(_column(path, table, name, "the target").to_pylist(), dtype=object)
    order, s_seq, pos = steps_of
    if s.get("per_step"):
        y = np.empty((len(sequences), longest), dtype=object)
        y[:] = column[0]
        y[s_seq, pos] = column[order]
        return _plain(y)
    y = np.empty(len(sequences), dtype=object)
    y[s_seq] = column[order]  # the last row's value of each sequence ...
    differs = np.flatnonzero(column[order] != y[s_seq])  # ... must be every row's
    if len(differs):
        raise DataError(
            f"{path}: column '{name}' (the target) varies within sequence "
            f"{shown_id(sequences[s_seq[differs[0]]])}; give --per-step for a target at every step, or one value "
            "per sequence"
        )
    return _plain(y)


def _plain(y: np.ndarray) -> np.ndarray:
    """Object arrays of labels as numbers where they all are, else text (never pickled)."""
    import numpy as np

    flat = y.reshape(-1).tolist()
    if any(v is None for v in flat):
        raise DataError("the target column has empty cells; every target needs a value")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        return np.array(flat, dtype=np.float64).reshape(y.shape)
    return np.array([str(v) for v in flat]).reshape(y.shape)


def shown_id(key: str) -> str:
    """A sequence id for a message: quoted, and cut (an id is whatever the file holds)."""
    return repr(key if len(key) <= 60 else key[:57] + "...")


def natural_order(key: str):
    """Sequence ids (and class labels) in numeric order where they are numbers (2 before 10)."""
    try:
        return (0, float(key), "")
    except ValueError:
        return (1, 0.0, key)


def label_text(value) -> str:
    """A label as recorded: integral numbers without '.0' (a table's 1.0 is the class 1)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def classification_output(path, labels, per_step: bool) -> dict:
    """The output record of your own data's classification: the training labels in natural
    order (recorded as the class names), and AUC beside accuracy for two classes (binary
    outcomes are often rare: a death in 14% of ICU stays)."""
    classes = sorted(set(labels), key=natural_order)
    if len(classes) < 2:
        raise DataError(f"{path}: the training sequences have one class ({classes}); classification needs two")
    output = {"kind": "classification", "size": len(classes), "per_step": per_step, "classes": classes}
    if len(classes) == 2:
        output["metrics"] = ["accuracy", "auc"]
    return output
