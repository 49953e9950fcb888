"""Checkpoints: a safetensors file `NAME.st` that describes itself, plus a `NAME.yaml` sidecar.

The `.st` header metadata carries the format version and the full record (arch, task,
compression, metrics, history, tensor manifest), so a checkpoint can travel alone, even
through a pipe. The sidecar repeats the record for people and Makefiles and pins the
`.st` by sha256. Loading checks everything it can before anyone uses the tensors.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cfctool import __version__, encodings, escape
from cfctool.configs import stored
from cfctool.encodings import split_stored, stored_tensors
from cfctool.errors import CheckpointError, ConfigError, OutputError
from cfctool.families import FAMILIES, normalise, record_problem
from cfctool.families.build import expected_tensors
from cfctool.files import CHECKPOINT_LIMIT, TEXT_LIMIT, read_bounded, strict_yaml
from cfctool.runtime import world_size

# 2: explicit structure in the arch record (backbone_widths, ncp_layers) and encoded tensors;
#    format-1 files still load (their arch records are upgraded on load)
FORMAT_VERSION = 2
META_FORMAT = "cfctool.format"
META_RECORD = "cfctool.record"
# the sha256 of the whole header (record and tensor table, less this entry) and the tensor
# data: an edited record is detected like a flipped data bit (older files lack it, and load)
META_SHA256 = "cfctool.sha256"
RECORD_SECTIONS = ("arch", "task", "compression", "encodings", "metrics", "history")
DATA_SHA256 = "data_sha256"  # the record's checksum of the tensor data (after the header)
TASK_TENSOR_PREFIX = "task."  # data the model needs at inference (e.g. a vocabulary), not weights
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own limit on header size


@dataclass
class Checkpoint:
    """Model tensors plus the record that says how to rebuild and interpret them.

    `tensors` are always dense (decoded); for each tensor listed in the record's
    `encodings`, `parts` holds what the file stores (e.g. int8 values and scales), which
    is what gets written and what integer engines read.
    """

    tensors: dict[str, torch.Tensor]
    record: dict[str, Any]
    source: str | None = field(default=None, compare=False)
    parts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, compare=False)
    # the sha256 of the tensor data the file carried and that loading verified (None: an
    # older file without one, or a checkpoint not loaded from bytes)
    data_sha256: str | None = field(default=None, compare=False)
    # the sha256 of the file's bytes as read (the checkpoint's name in generated code), and
    # the verified hash of its header and data (None: an older file, tensor data only)
    sha256: str | None = field(default=None, compare=False)
    header_sha256: str | None = field(default=None, compare=False)

    @property
    def arch(self) -> dict[str, Any]:
        return self.record["arch"]

    @property
    def task(self) -> dict[str, Any]:
        return self.record["task"]

    @property
    def encodings(self) -> dict[str, dict[str, Any]]:
        return self.record.get("encodings") or {}

    def derive(self, tensors: dict[str, torch.Tensor] | None = None, **sections: Any) -> Checkpoint:
        """A new checkpoint with some tensors or record sections replaced; the input stays untouched.

        An encoding survives only for a tensor that was not replaced: new values are
        stored plain unless the caller encodes them again (`encode`).
        """
        record = copy.deepcopy(self.record)
        for key, value in sections.items():
            if key not in RECORD_SECTIONS:
                raise ValueError(f"unknown record section {key}")
            record[key] = copy.deepcopy(value)
        new_tensors = dict(self.tensors if tensors is None else tensors)
        kept = {
            k: v
            for k, v in (record.get("encodings") or {}).items()
            if k in new_tensors and new_tensors[k] is self.tensors.get(k) and k in self.parts
        }
        record["encodings"] = kept
        return Checkpoint(tensors=new_tensors, record=record, parts={k: self.parts[k] for k in kept})

    def encode(self, specs: dict[str, dict[str, Any]]) -> Checkpoint:
        """A checkpoint that stores the named tensors encoded (see cfctool.encodings); the
        dense tensors become the decoded values, so the model computes what the file holds."""
        unknown = sorted(set(specs) - set(self.tensors))
        if unknown:
            raise ValueError(f"no tensors named {unknown}")
        new = self.derive()
        for name, spec in specs.items():
            parts, recorded = encodings.encode(self.tensors[name], spec)
            new.tensors[name] = encodings.decode(name, recorded, parts)
            new.parts[name] = parts
            new.record["encodings"][name] = recorded
        return new

    def model_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.tensors.items() if not k.startswith(TASK_TENSOR_PREFIX)}

    def task_tensors(self) -> dict[str, torch.Tensor]:
        n = len(TASK_TENSOR_PREFIX)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(TASK_TENSOR_PREFIX)}

    def with_history(self, entry: dict[str, Any]) -> Checkpoint:
        return self.derive(history=[*self.record.get("history", []), entry])


def new_record(arch: dict, task: dict) -> dict[str, Any]:
    return {"arch": arch, "task": task, "compression": {}, "metrics": {}, "history": []}


# what a history step records that does not make it another recipe: its seeds, and where, when,
# with what and how fast it ran (an input checkpoint's path too: each seed has its own teacher;
# and the other seeds a --max-drop-with search measured on)
_NOT_RECIPE = frozenset(
    {
        "seed",
        "threads",
        "data_dir",
        "device",
        "argv",
        "utc",
        "inputs",
        "wall_time_s",
        "cfctool_version",
        "torch_version",
        "init_checkpoint",
        "max_drop_with",
    }
)


def recipe_of(record: dict[str, Any]) -> tuple[str, list[Any]]:
    """A digest of the history with every seed (and the run's circumstances) left out, and the
    seeds: checkpoints with the same digest are one recipe run with different seeds."""

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in _NOT_RECIPE}
        return [strip(v) for v in x] if isinstance(x, list) else x

    history = [e for e in record.get("history") or [] if isinstance(e, dict)]
    key = json.dumps(strip(history), sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16], [e.get("seed") for e in history]


def history_entry(
    command: str,
    argv: list[str] | None,
    config: dict[str, Any],
    inputs: Iterable[str | Path] = (),
    seed: int | None = None,
    wall_time_s: float | None = None,
) -> dict[str, Any]:
    """One provenance line: enough to rerun the step and to know what it read."""
    return {
        "command": command,
        "argv": list(argv) if argv is not None else None,
        "config": stored(command, config),  # with its kind and version: a --config file for the same command
        "seed": seed,
        "cfctool_version": __version__,
        "torch_version": str(torch.__version__),
        "utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inputs": {str(p): file_sha256(p) for p in inputs if str(p) != "-" and Path(p).is_file()},
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 3),
        "world_size": world_size(),  # processes of a torchrun data-parallel run (batch sizes are global)
    }


# ----------------------------------------------------------------------------- serialising


_ST_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def to_bytes(ckpt: Checkpoint) -> bytes:
    """Serialise to safetensors bytes, byte-for-byte reproducible (encoded tensors as their parts)."""
    record = copy.deepcopy(ckpt.record)
    for section in RECORD_SECTIONS:
        record.setdefault(section, [] if section == "history" else {})
    missing = sorted(set(record["encodings"]) - set(ckpt.parts))
    if missing:
        raise CheckpointError(
            f"tensors {missing} are recorded as encoded but have no stored parts; encode them with Checkpoint.encode"
        )
    stored = stored_tensors(ckpt.tensors, record["encodings"], ckpt.parts)
    record["format"] = FORMAT_VERSION
    record["tensors"] = _manifest(stored)
    entries, blobs = _layout(stored)
    # the checksums travel in the file itself (pipes carry no sidecar): of the tensor data
    # (all that older cfctool versions check), and of the whole header with the data
    record[DATA_SHA256] = hashlib.sha256(b"".join(blobs)).hexdigest()
    metadata = {META_FORMAT: str(FORMAT_VERSION), META_RECORD: json.dumps(record, sort_keys=True)}
    metadata[META_SHA256] = _content_sha256({"__metadata__": metadata, **entries}, blobs)
    return _assemble(entries, blobs, metadata)


def _content_sha256(header: dict[str, Any], data: Iterable[bytes | memoryview]) -> str:
    """sha256 of the header in canonical JSON (sorted keys, no spaces, without its own
    META_SHA256 entry) followed by the tensor data: what a reader parses is what was hashed,
    whatever the padding or key order of the file."""
    metadata = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != META_SHA256}
    canonical = json.dumps({**header, "__metadata__": metadata}, sort_keys=True, separators=(",", ":"))
    h = hashlib.sha256(canonical.encode("utf-8"))
    for chunk in data:
        h.update(chunk)
    return h.hexdigest()


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors layout, byte-for-byte reproducible.

    Written here rather than by safetensors.torch.save, whose metadata order varies from
    process to process: identical checkpoints must have identical sha256 (Makefiles,
    sidecars and the repeatability guarantee rely on it). The layout is the standard
    one (little-endian u64 header size, JSON header padded to 8 bytes, tensors sorted
    by alignment then name) and is read back by the safetensors library itself.
    """
    return _assemble(*_layout(tensors), metadata)


def _layout(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, Any], list[bytes]]:
    """(header entries, data blobs in file order) of the standard safetensors layout."""
    entries: dict[str, Any] = {}
    blobs, offset = [], 0
    for name, t in sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0])):
        if t.dtype not in _ST_DTYPES:
            raise CheckpointError(f"tensor '{name}' has dtype {t.dtype}, which checkpoints cannot store")
        t = t.detach().cpu().contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        entries[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    return entries, blobs


def _assemble(entries: dict[str, Any], blobs: list[bytes], metadata: dict[str, str]) -> bytes:
    header = {"__metadata__": metadata, **entries}
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return b"".join([struct.pack("<Q", len(head)), head, *blobs])


def from_bytes(data: bytes, source: str = "<bytes>", sha256: str | None = None) -> Checkpoint:
    """Parse and verify a `.st` payload; every defect is a CheckpointError naming `source`.
    `sha256`: the payload's, when the caller has hashed it already."""
    from safetensors.torch import load

    header = read_header(data, source)
    metadata = header.get("__metadata__") or {}
    if META_FORMAT not in metadata:
        raise CheckpointError(
            f"{source}: a safetensors file, but not a cfctool checkpoint (no '{META_FORMAT}' metadata); "
            "create checkpoints with `cfctool train`"
        )
    try:
        version = int(metadata[META_FORMAT])
    except ValueError:
        raise CheckpointError(f"{source}: format version '{metadata[META_FORMAT]}' is not an integer") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: written in checkpoint format {version}, newer than this cfctool understands "
            f"(format {FORMAT_VERSION}); upgrade cfctool (pip install -U cfctool)"
        )
    if version < 1:
        raise CheckpointError(
            f"{source}: checkpoint format {version} is not supported (this cfctool reads formats "
            f"1 to {FORMAT_VERSION}); re-create it with `cfctool train`"
        )
    if META_RECORD not in metadata:
        raise CheckpointError(
            f"{source}: the record ('{META_RECORD}' metadata) is missing; the file cannot be interpreted"
        )
    try:
        record = json.loads(metadata[META_RECORD])
    except (ValueError, RecursionError) as exc:  # not JSON, an integer beyond 4,300 digits, deep nesting
        raise CheckpointError(f"{source}: the record metadata is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{source}: the record is not a mapping")
    missing = [s for s in ("arch", "task", "tensors") if s not in record]
    if missing:
        raise CheckpointError(f"{source}: the record lacks required sections: {', '.join(missing)}")
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    header_sha = metadata.get(META_SHA256)
    if header_sha is not None:
        actual = _content_sha256(header, [memoryview(data)[header_end:]])
        if actual != header_sha:
            raise CheckpointError(
                f"{source}: the header (its record or tensor table) or the tensor data do not "
                f"match the sha256 recorded in the file ({escape.terminal(header_sha, 15)}, the "
                f"file hashes to {actual[:12]}...); the file was altered or damaged: use an "
                "intact copy"
            )
    problem = record_problem(record)  # before any tensor is read or any module built from the record
    if problem:
        raise CheckpointError(
            f"{source}: {escape.terminal(problem, 300)}; the file was altered or written by a faulty tool"
        )
    recorded_sha = record.pop(DATA_SHA256, None)
    if recorded_sha is not None and header_sha is None:  # an older file: only its data is hashed
        actual = hashlib.sha256(memoryview(data)[header_end:]).hexdigest()
        if actual != recorded_sha:
            raise CheckpointError(
                f"{source}: the tensor data do not match the sha256 recorded in the file "
                f"({recorded_sha[:12]}..., the data hash to {actual[:12]}...); the file was "
                "altered or damaged: use an intact copy"
            )
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{source}: tensor data cannot be read ({exc}); the file is damaged") from None
    _check_manifest(record.pop("tensors"), tensors, source)
    record.pop("format", None)
    if version == 1:
        record = _upgrade_v1(record, source)

    record.setdefault("encodings", {})
    dense, parts = split_stored(tensors, record["encodings"], source)
    return Checkpoint(
        tensors=dense,
        record=record,
        source=source,
        parts=parts,
        data_sha256=recorded_sha,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        header_sha256=header_sha,
    )


def _upgrade_v1(record: dict[str, Any], source: str) -> dict[str, Any]:
    """Format 1 regenerated some sizes from settings; format 2 records them (see families)."""
    try:
        record["arch"] = normalise(record["arch"])
    except (KeyError, ValueError, ConfigError) as exc:
        raise CheckpointError(
            f"{source}: a format-1 checkpoint whose architecture cannot be read ({exc}); "
            "re-create it with `cfctool train`"
        ) from None
    return record


def read_header(data: bytes, source: str) -> dict[str, Any]:
    not_st = f"{source}: not a safetensors checkpoint"
    if len(data) < 8:
        raise CheckpointError(f"{not_st} (only {len(data)} bytes); is it truncated or the wrong file?")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _HEADER_LIMIT or n < 2:
        raise CheckpointError(f"{not_st} (invalid header length); is it the wrong file?")
    if 8 + n > len(data):
        raise CheckpointError(
            f"{source}: truncated: the header claims {n} bytes but the file has {len(data) - 8}; re-copy or re-create it"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # not JSON, digits beyond the limit, deep nesting
        raise CheckpointError(f"{not_st} (header is not JSON); is it the wrong file?") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{not_st} (header is not a mapping)")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{source}: the header's metadata is not a mapping of strings; the file is damaged")
    body = len(data) - 8 - n
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        problem = _entry_problem(info)
        if problem:
            raise CheckpointError(f"{source}: the header entry of tensor '{name[:80]}' {problem}; the file is damaged")
        end = max(end, info["data_offsets"][1])
    if end > body:
        raise CheckpointError(
            f"{source}: truncated: tensor data needs {end} bytes but only {body} are present; re-copy or re-create it"
        )
    return header


def _entry_problem(info: Any) -> str | None:
    """What is wrong with one tensor's header entry (dtype, shape, offsets), or None."""
    if not isinstance(info, dict):
        return "is not a mapping"
    if info.get("dtype") not in _ST_DTYPES.values():
        return f"has dtype {str(info.get('dtype'))[:20]!r}, not one of {', '.join(_ST_DTYPES.values())}"
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape):
        return "has a shape that is not a list of sizes"
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        return "has data offsets that are not two increasing positions"
    return None


def _manifest(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    return {
        name: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
        for name, t in sorted(tensors.items())
    }


def _difference(expected: dict, actual: dict, noun: str) -> str:
    """What differs between two {tensor name: description} maps, for an error message."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    parts = []
    if missing:
        parts.append(f"missing tensors {missing[:5]}")
    if extra:
        parts.append(f"unexpected tensors {extra[:5]}")
    if changed:
        k = changed[0]
        parts.append(f"'{k}' has {noun} {str(actual[k])[:80]}, expected {str(expected[k])[:80]}")
    return escape.terminal("; ".join(parts), 600)


def _check_manifest(manifest: dict, tensors: dict[str, torch.Tensor], source: str) -> None:
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{source}: the record's tensor list is not a mapping; the file was altered or damaged")
    actual = _manifest(tensors)
    if manifest != actual:
        raise CheckpointError(
            f"{source}: tensors do not match the record: "
            f"{_difference(manifest, actual, 'dtype/shape')}; the file was altered or damaged"
        )


# ----------------------------------------------------------------------------- files


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix(".yaml") if path.suffix == ".st" else path.with_name(path.name + ".yaml")


def check_writable(path: str | Path, sidecar: bool = True) -> Path:
    """Fail before any work when `path` (and its sidecar) cannot be written there."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"cannot write {path}: it is a directory")
    if sidecar and path.suffix == ".yaml":
        raise CheckpointError(f"{path}: the output must be the .st file; its .yaml sidecar is written beside it")
    if sidecar and sidecar_path(path).is_dir():
        raise CheckpointError(f"cannot write {path}: its sidecar path {sidecar_path(path)} is a directory")
    parent = path.parent
    if not parent.exists():
        raise CheckpointError(f"cannot write {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise CheckpointError(f"cannot write {path}: {parent} is not a directory")
    try:  # (not named like a writer's temp file: a writer holding the lock removes those)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc} in {parent}; choose another output location"
        ) from None
    return path


def save(ckpt: Checkpoint, path: str | Path, on_wait=None) -> Path:
    """Write `path` and its sidecar as one transaction (see `write_pair`). `on_wait(message)`
    is called when another writer holds the output's lock, saying whose it is."""
    path = check_writable(path)
    payload = to_bytes(ckpt)
    sidecar = sidecar_text(ckpt, hashlib.sha256(payload).hexdigest()).encode("utf-8")
    write_pair(path, payload, sidecar, on_wait)
    return path


# A crash at any instant leaves the old pair or the new one. The swap, under the lock:
#   1. stage both files (fsynced temp files), 2. rename the new .st to PATH.pending,
#   3. rename the new sidecar into place, 4. rename PATH.pending to PATH.
# Killed before 3, the old pair stands (leftovers are removed when the lock is next taken);
# killed between 3 and 4, the sidecar vouches for PATH.pending, and whoever next reads or
# writes the pair completes the swap (`_complete_swap`). Each step's directory entry is
# fsynced before the next. Tests hook `_fault` to fail or die at every step.
_fault = None


def _step(name: str) -> None:
    if _fault is not None:
        _fault(name)


def pending_path(path: Path) -> Path:
    return path.with_name(path.name + ".pending")


def write_pair(path: Path, payload: bytes, sidecar: bytes, on_wait=None) -> None:
    """The crash-safe swap of a checkpoint pair (see above). A failure (an OSError becomes an
    OutputError) or an interrupt puts the old pair (or none) back."""
    side, pending = sidecar_path(path), pending_path(path)
    with _exclusive(path, on_wait):
        _tidy(path)
        staged = [_stage(path, payload)]
        backup, sidecar_in = None, False
        try:
            staged.append(_stage(side, sidecar))
            _step("staged")
            _rename(staged[0], pending, path)
            _step("pending")
            if side.exists():
                backup = side.with_name(f"{side.name}.old-{os.getpid()}")
                try:
                    os.link(side, backup)  # the old sidecar, to put back if step 4 fails
                except OSError:
                    backup = None
            sidecar_in = True  # (set first: an interrupt right after the rename still rolls back)
            _rename(staged[1], side, side)
            _step("sidecar")
            _rename(pending, path, path)
            sidecar_in = False
            _step("done")
        finally:
            # failed or interrupted after the new sidecar went in, before the .st did: put the
            # old sidecar back (none there before: the old .st stands alone)
            if sidecar_in and pending.exists() and not os.path.exists(staged[1]):
                if backup is not None:
                    os.replace(backup, side)
                    backup = None
                else:
                    _remove(side)
            for tmp in (*staged, pending, *([backup] if backup else [])):
                _remove(tmp)


def _rename(src, dst: Path, named: Path) -> None:
    try:
        os.replace(src, dst)
        _fsync_dir(dst.parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write {named}: {exc.strerror or exc}; nothing was written (the previous "
            f"{named.name} and its sidecar, if any, are as they were)"
        ) from None


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable before the next one (power loss keeps the order of the steps)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a directory that cannot be opened (some network file systems): best effort
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tidy(path: Path) -> None:
    """Under the lock: finish a swap a killed writer left between steps 3 and 4, and remove
    what killed writers left (temp files, a stale PATH.pending, old-sidecar links)."""
    _complete_swap(path)
    side = sidecar_path(path)
    prefixes = (f"{path.name}.tmp-", f"{side.name}.tmp-", f"{side.name}.old-")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefixes) or name == pending_path(path).name:
            try:
                _remove(path.parent / name)
            except OSError:
                pass  # (not a file of ours: left alone)


def _complete_swap(path: Path) -> bool:
    """Whether an interrupted swap was completed: the sidecar vouches for PATH.pending, not
    for PATH (a writer was killed between steps 3 and 4)."""
    pending, side = pending_path(path), sidecar_path(path)
    if not pending.is_file() or not side.is_file():
        return False
    try:
        wanted = _sidecar_sha256(side, path)
    except CheckpointError:
        return False
    try:
        if wanted != file_sha256(pending):
            return False
    except OSError:
        return False
    try:
        if path.is_file() and file_sha256(path) == wanted:
            _remove(pending)
            return True
        os.replace(pending, path)
    except OSError:
        return False  # (a reader without write access: the pair is reported as it is)
    _fsync_dir(path.parent)
    return True


def _stage(path: Path, payload: bytes) -> str:
    """A temp file beside `path` holding `payload`, fsynced, with a plain file's mode."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
        raise
    return tmp


def _remove(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def _exclusive(path: Path, on_wait=None):
    """Hold an advisory lock on `PATH.lock` (created, then removed by its holder; never
    followed through a symlink). A waiter is told whose lock it is (`on_wait`), and one that
    wakes up holding a lock file someone already removed tries again on the new one."""
    import fcntl
    import socket

    lock = path.with_name(path.name + ".lock")
    told = False
    while True:
        try:
            fd = os.open(
                lock,
                os.O_CREAT | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                0o666 & ~_umask(),
            )
        except OSError as exc:
            raise OutputError(
                f"cannot write {path}: {exc.strerror or exc} (its lock file {lock.name}; a symlink there is refused)"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None and not told:
                    on_wait(f"waiting for {lock}, held by {_lock_owner(fd)}")
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        owner = f"pid {os.getpid()} on {socket.gethostname()}".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner, 0)
    except OSError:
        pass  # the name of the owner is a courtesy
    try:
        yield
    finally:
        _remove(lock)
        os.close(fd)


def _lock_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return escape.terminal(text, 120) if text else "another process"


def sidecar_text(ckpt: Checkpoint, sha256: str) -> str:
    import yaml

    record = json.loads(json.dumps(ckpt.record))  # the same plain types as the header's JSON
    doc: dict[str, Any] = {"format": FORMAT_VERSION}
    for section in RECORD_SECTIONS:
        doc[section] = record.get(section, [] if section == "history" else {})
    doc["sha256"] = sha256
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


def atomic_write(path: Path, payload: bytes) -> None:
    """temp file in the same directory + fsync + rename: readers see the old file or the new one.

    The file gets the mode a plain `open()` would give (0666 less the umask), not the temp
    file's 0600; an OSError becomes a CheckpointError naming the file.
    """
    path = Path(path)
    tmp = _stage(path, payload)
    try:
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load(path: str | Path, *, verify_arch: bool = True) -> Checkpoint:
    """Read and verify a checkpoint file (and its sidecar's sha256, when a sidecar exists).
    A pair a killed writer left half-swapped is completed first (see `write_pair`)."""
    path = Path(path)
    if path.suffix == ".yaml":
        raise CheckpointError(f"{path}: that is a sidecar; pass the .st file beside it")
    data, sha256 = _read_pair(path)
    ckpt = from_bytes(data, source=str(path), sha256=sha256)
    if verify_arch:
        verify_architecture(ckpt)
    return ckpt


def _read_pair(path: Path) -> tuple[bytes, str]:
    """The .st's bytes and sha256, checked against its sidecar. On a mismatch (or a sidecar
    without its .st) the pair is read again under the writers' lock, after completing a swap
    a killed writer left: a reader never mistakes a write in progress for damage."""
    try:
        return _read_pair_once(path, final=False)
    except _Mismatch:
        pass
    try:
        with _exclusive(path):
            _complete_swap(path)
            return _read_pair_once(path, final=True)
    except OutputError:  # no lock here (a read-only directory): read the pair again as it is
        return _read_pair_once(path, final=True)


class _Mismatch(Exception):
    pass


def _read_pair_once(path: Path, final: bool) -> tuple[bytes, str]:
    side = sidecar_path(path)
    if not path.exists() and not os.path.lexists(path):
        if side.is_file() and pending_path(path).is_file() and not final:
            raise _Mismatch()
        raise CheckpointError(f"{path}: no such checkpoint file; check the path (train one with `cfctool train`)")
    data = read_bounded(path, CHECKPOINT_LIMIT, "checkpoint", CheckpointError)
    actual = hashlib.sha256(data).hexdigest()
    if os.path.lexists(side):
        expected = _sidecar_sha256(side, path)
        if expected != actual:
            if not final:
                raise _Mismatch()
            raise CheckpointError(
                f"{path}: sha256 {actual[:12]}... does not match its sidecar {side} "
                f"({escape.terminal(expected, 12)}...); the .st was replaced or altered after it was written. "
                "Restore the matching pair, or delete the sidecar to trust the .st alone"
            )
    return data, actual


def load_bytes(data: bytes, source: str = "<stdin>", *, verify_arch: bool = True) -> Checkpoint:
    ckpt = from_bytes(data, source=source)
    if verify_arch:
        verify_architecture(ckpt)
    return ckpt


def _sidecar_sha256(sidecar: Path, path: Path) -> str:
    """The sha256 a sidecar of `path` vouches for; a sidecar that cannot say is a CheckpointError."""
    import yaml

    if sidecar.is_dir():
        raise CheckpointError(f"{sidecar}: the sidecar path of {path} is a directory; move it away")
    try:
        doc = strict_yaml(read_bounded(sidecar, TEXT_LIMIT, "sidecar", CheckpointError).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise CheckpointError(
            f"{sidecar}: sidecar is not valid YAML ({escape.terminal(problem, 200)}{where}); "
            f"fix or delete it to load {path} alone"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sha256"), str):
        raise CheckpointError(
            f"{sidecar}: sidecar has no 'sha256' field, so it cannot vouch for {path}; "
            "delete it to load the .st alone, or re-save the checkpoint"
        )
    return doc["sha256"]


def check_finite(ckpt: Checkpoint) -> None:
    """Weights that are NaN or infinite mean a damaged checkpoint: refused, naming the tensor
    (a model that computes NaN gives 'accuracies' that mean nothing, and C cannot spell them)."""
    for name, t in sorted(ckpt.tensors.items()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{ckpt.source or '<checkpoint>'}: tensor '{escape.terminal(name, 80)}' holds NaN "
                "or infinite values: the checkpoint is damaged (or its training diverged); use "
                "an intact copy or retrain"
            )


def verify_architecture(ckpt: Checkpoint) -> None:
    """The tensors must be exactly those that the recorded architecture builds."""
    source = ckpt.source or "<checkpoint>"
    _check_proof(ckpt, source)
    try:
        expected = expected_tensors(ckpt.record)
    except ConfigError as exc:  # e.g. an arch this cfctool does not know: the file's content, not a usage error
        raise CheckpointError(f"{source}: its record cannot be used: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the recorded architecture cannot be built ({exc})") from None
    actual = {name: list(t.shape) for name, t in ckpt.model_tensors().items()}
    if expected != actual:
        raise CheckpointError(
            f"{source}: tensors do not fit architecture '{ckpt.arch.get('name')}': "
            f"{_difference(expected, actual, 'shape')}"
        )


def _check_proof(ckpt: Checkpoint, source: str) -> None:
    """Sizes the record claims, proved by tensors the file really holds before any module is
    built from them (a wiring of a million units would take minutes and gigabytes to make)."""
    family = FAMILIES[ckpt.arch["name"]]
    if family.proof is None:
        return
    for name, shape in family.proof(normalise(ckpt.arch)).items():
        t = ckpt.tensors.get(name)
        actual = None if t is None else list(t.shape)
        if actual is None or len(actual) != len(shape) or any(e is not None and e != a for e, a in zip(shape, actual)):
            want = "x".join("*" if e is None else str(e) for e in shape)
            raise CheckpointError(
                f"{source}: the arch record needs tensor '{name}' of shape {want}, the file holds "
                f"{actual or 'none'}; the file was altered or written by a faulty tool"
            )


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
