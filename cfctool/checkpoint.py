"""Checkpoints: a safetensors file `NAME.st` that describes itself, plus a `NAME.yaml` sidecar.

The `.st` header metadata carries the format version and the full record (arch, task,
compression, metrics, history, tensor manifest), so a checkpoint can travel alone, even
through a pipe. The sidecar repeats the record for people and Makefiles and pins the
`.st` by sha256. Loading checks everything it can before anyone uses the tensors.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from cfctool.errors import CheckpointError

FORMAT_VERSION = 1
META_FORMAT = "cfctool.format"
META_RECORD = "cfctool.record"
RECORD_SECTIONS = ("arch", "task", "compression", "metrics", "history")
TASK_TENSOR_PREFIX = "task."  # data the model needs at inference (e.g. a vocabulary), not weights
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own limit on header size


@dataclass
class Checkpoint:
    """Model tensors plus the record that says how to rebuild and interpret them."""

    tensors: dict[str, torch.Tensor]
    record: dict[str, Any]
    source: str | None = field(default=None, compare=False)

    @property
    def arch(self) -> dict[str, Any]:
        return self.record["arch"]

    @property
    def task(self) -> dict[str, Any]:
        return self.record["task"]

    def derive(self, tensors: dict[str, torch.Tensor] | None = None, **sections: Any) -> "Checkpoint":
        """A new checkpoint with some tensors or record sections replaced; the input stays untouched."""
        record = copy.deepcopy(self.record)
        for key, value in sections.items():
            if key not in RECORD_SECTIONS:
                raise ValueError(f"unknown record section {key}")
            record[key] = copy.deepcopy(value)
        new_tensors = dict(self.tensors if tensors is None else tensors)
        return Checkpoint(tensors=new_tensors, record=record)

    def model_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.tensors.items() if not k.startswith(TASK_TENSOR_PREFIX)}

    def task_tensors(self) -> dict[str, torch.Tensor]:
        n = len(TASK_TENSOR_PREFIX)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(TASK_TENSOR_PREFIX)}

    def with_history(self, entry: dict[str, Any]) -> "Checkpoint":
        return self.derive(history=[*self.record.get("history", []), entry])


def new_record(arch: dict, task: dict) -> dict[str, Any]:
    return {"arch": arch, "task": task, "compression": {}, "metrics": {}, "history": []}


def history_entry(
    command: str,
    argv: list[str] | None,
    config: dict[str, Any],
    inputs: Iterable[str | Path] = (),
    seed: int | None = None,
    wall_time_s: float | None = None,
) -> dict[str, Any]:
    """One provenance line: enough to rerun the step and to know what it read."""
    from cfctool import __version__

    return {
        "command": command,
        "argv": list(argv) if argv is not None else None,
        "config": config,
        "seed": seed,
        "cfctool_version": __version__,
        "torch_version": str(torch.__version__),
        "utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inputs": {str(p): file_sha256(p) for p in inputs if str(p) != "-" and Path(p).is_file()},
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 3),
    }


# ----------------------------------------------------------------------------- serialising


_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def to_bytes(ckpt: Checkpoint) -> bytes:
    """Serialise to safetensors bytes, byte-for-byte reproducible.

    Written here rather than by safetensors.torch.save, whose metadata order varies from
    process to process: identical checkpoints must have identical sha256 (Makefiles,
    sidecars and the repeatability guarantee rely on it). The layout is the standard
    one (little-endian u64 header size, JSON header padded to 8 bytes, tensors sorted
    by alignment then name) and is read back by the safetensors library itself.
    """
    record = copy.deepcopy(ckpt.record)
    for section in RECORD_SECTIONS:
        record.setdefault(section, [] if section == "history" else {})
    record["format"] = FORMAT_VERSION
    record["tensors"] = _manifest(ckpt.tensors)
    header: dict[str, Any] = {
        "__metadata__": {META_FORMAT: str(FORMAT_VERSION), META_RECORD: json.dumps(record, sort_keys=True)}
    }
    blobs, offset = [], 0
    for name, t in sorted(ckpt.tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0])):
        if t.dtype not in _ST_DTYPES:
            raise CheckpointError(f"tensor '{name}' has dtype {t.dtype}, which checkpoints cannot store")
        t = t.detach().cpu().contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return b"".join([struct.pack("<Q", len(head)), head, *blobs])


def from_bytes(data: bytes, source: str = "<bytes>") -> Checkpoint:
    """Parse and verify a `.st` payload; every defect is a CheckpointError naming `source`."""
    from safetensors.torch import load

    header = _read_header(data, source)
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
        raise CheckpointError(f"{source}: checkpoint format {version} is not supported; re-create it with `cfctool train`")
    if META_RECORD not in metadata:
        raise CheckpointError(f"{source}: the record ('{META_RECORD}' metadata) is missing; the file cannot be interpreted")
    try:
        record = json.loads(metadata[META_RECORD])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: the record metadata is not valid JSON ({exc})") from None
    missing = [s for s in ("arch", "task", "tensors") if s not in record]
    if not isinstance(record, dict) or missing:
        raise CheckpointError(f"{source}: the record lacks required sections: {', '.join(missing)}")
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{source}: tensor data cannot be read ({exc}); the file is damaged") from None
    _check_manifest(record.pop("tensors"), tensors, source)
    record.pop("format", None)
    return Checkpoint(tensors=tensors, record=record, source=source)


def _read_header(data: bytes, source: str) -> dict[str, Any]:
    not_st = f"{source}: not a safetensors checkpoint"
    if len(data) < 8:
        raise CheckpointError(f"{not_st} (only {len(data)} bytes); is it truncated or the wrong file?")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _HEADER_LIMIT or n < 2:
        raise CheckpointError(f"{not_st} (invalid header length); is it the wrong file?")
    if 8 + n > len(data):
        raise CheckpointError(f"{source}: truncated: the header claims {n} bytes but the file has {len(data) - 8}; re-copy or re-create it")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{not_st} (header is not JSON); is it the wrong file?") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{not_st} (header is not a mapping)")
    body = len(data) - 8 - n
    end = max((info.get("data_offsets", [0, 0])[1] for k, info in header.items() if k != "__metadata__"), default=0)
    if end > body:
        raise CheckpointError(f"{source}: truncated: tensor data needs {end} bytes but only {body} are present; re-copy or re-create it")
    return header


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
        parts.append(f"'{k}' has {noun} {actual[k]}, expected {expected[k]}")
    return "; ".join(parts)


def _check_manifest(manifest: dict, tensors: dict[str, torch.Tensor], source: str) -> None:
    actual = _manifest(tensors)
    if manifest != actual:
        raise CheckpointError(f"{source}: tensors do not match the record: "
                              f"{_difference(manifest, actual, 'dtype/shape')}; the file was altered or damaged")


# ----------------------------------------------------------------------------- files


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix(".yaml") if path.suffix == ".st" else path.with_name(path.name + ".yaml")


def save(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write `path` and its sidecar atomically; on any failure neither is left half-written."""
    path = Path(path)
    if path.suffix == ".yaml":
        raise CheckpointError(f"{path}: the output must be the .st file; its .yaml sidecar is written beside it")
    if not path.parent.exists():
        raise CheckpointError(f"cannot write {path}: directory {path.parent} does not exist")
    payload = to_bytes(ckpt)
    sidecar = sidecar_text(ckpt, hashlib.sha256(payload).hexdigest())
    atomic_write(path, payload)
    atomic_write(sidecar_path(path), sidecar.encode("utf-8"))
    return path


def sidecar_text(ckpt: Checkpoint, sha256: str) -> str:
    import yaml

    record = json.loads(json.dumps(ckpt.record))  # the same plain types as the header's JSON
    doc = {"format": FORMAT_VERSION}
    for section in RECORD_SECTIONS:
        doc[section] = record.get(section, [] if section == "history" else {})
    doc["sha256"] = sha256
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


def atomic_write(path: Path, payload: bytes) -> None:
    """temp file in the same directory + fsync + rename: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load(path: str | Path, *, verify_arch: bool = True) -> Checkpoint:
    """Read and verify a checkpoint file (and its sidecar's sha256, when a sidecar exists)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path (train one with `cfctool train`)")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if path.suffix == ".yaml":
        raise CheckpointError(f"{path}: that is a sidecar; pass the .st file beside it")
    data = path.read_bytes()
    ckpt = from_bytes(data, source=str(path))
    sidecar = sidecar_path(path)
    if sidecar.exists():
        _check_sidecar(sidecar, hashlib.sha256(data).hexdigest(), path)
    if verify_arch:
        verify_architecture(ckpt)
    return ckpt


def load_bytes(data: bytes, source: str = "<stdin>", *, verify_arch: bool = True) -> Checkpoint:
    ckpt = from_bytes(data, source=source)
    if verify_arch:
        verify_architecture(ckpt)
    return ckpt


def _check_sidecar(sidecar: Path, actual: str, path: Path) -> None:
    import yaml

    try:
        doc = yaml.safe_load(sidecar.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{sidecar}: sidecar is not valid YAML ({exc}); delete it to load {path} alone") from None
    expected = doc.get("sha256") if isinstance(doc, dict) else None
    if expected != actual:
        raise CheckpointError(
            f"{path}: sha256 {actual[:12]}... does not match its sidecar {sidecar} ({str(expected)[:12]}...); "
            "the .st was replaced or altered after it was written. Restore the matching pair, "
            "or delete the sidecar to trust the .st alone"
        )


def verify_architecture(ckpt: Checkpoint) -> None:
    """The tensors must be exactly those that the recorded architecture builds."""
    from cfctool.models.registry import expected_tensors

    source = ckpt.source or "<checkpoint>"
    try:
        expected = expected_tensors(ckpt.record)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the recorded architecture cannot be built ({exc})") from None
    actual = {name: list(t.shape) for name, t in ckpt.model_tensors().items()}
    if expected != actual:
        raise CheckpointError(f"{source}: tensors do not fit architecture '{ckpt.arch.get('name')}': "
                              f"{_difference(expected, actual, 'shape')}")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
