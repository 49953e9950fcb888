"""How a tensor is stored in a checkpoint: plain, integer-quantized, or sparse.

An encoded tensor `NAME` is stored as plain safetensors tensors named `NAME.<part>`, and the
record's `encodings` section says how to decode it, e.g.
``{"codec": "int8", "shape": [64, 256], "dtype": "float32", "axis": 0, "symmetric": true}``.
Loading checks every part against that spec (names, dtypes, shapes, ranges) and decodes;
the model gets dense weights while the parts stay available to integer engines.

Codecs (parts):
- ``int8``: ``q`` int8 of the tensor's shape, ``scale`` float32 (or float16, as the spec's
  ``scale_dtype`` says), ``zero_point`` int8 when not symmetric. ``scale``/``zero_point`` have one entry per row (``axis: 0``: per output
  channel of a Linear, per row of an embedding) or one for the tensor (``axis: null``).
  Decoded ``(q - zero_point) * scale``.
- ``int4``: as int8 with values in [-8, 7], packed two per byte into ``q`` (uint8, low
  nibble first, row-major, ``value + 8``).
- ``sparse``: the non-zero ``values`` in row-major order, plus where they are: ``bitmask``
  (uint8, one bit per element, little-endian bit order) or ``indices`` (int32 flat,
  increasing). Decoding is exact.
- ``sparse-int8``, ``sparse-int4``: a pruned tensor quantized and stored sparse, so pruning and
  quantization multiply: ``values`` the int8 values of the non-zero weights in row-major order
  (int4: packed as above), ``scale`` as for int8 (symmetric only: an absent weight is 0), and
  where they are: ``bitmask`` as above, or CSR, ``counts`` (the values each row stores: uint8
  for rows of at most 255 columns, else int16 or int32) with ``cols``
  (uint8 where a row has at most 256 columns, else int16 or int32, increasing within a row),
  whichever is smaller. Decoded like int8, with zeros where nothing is stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cfctool.errors import CheckpointError

SPARSE_LAYOUTS = ("bitmask", "indices")
SPARSE_INT_LAYOUTS = ("bitmask", "csr")
# the most values one decoded tensor may have (1 GiB of float32): a crafted file cannot claim more
MAX_DECODED = 1 << 28
_QRANGE = {"int8": (-128, 127), "int4": (-8, 7)}
_FLOATS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def quantize_spec(
    bits: int, shape, axis: int | None = 0, symmetric: bool = True, dtype: str = "float32", scale_dtype: str = "float32"
) -> dict:
    """`scale_dtype` float16 halves the scales' bytes (worth it for an embedding's row
    scales); values are quantized with the rounded scales, so decoding is consistent."""
    return {
        "codec": f"int{bits}",
        "shape": list(shape),
        "dtype": dtype,
        "axis": axis,
        "symmetric": symmetric,
        "scale_dtype": scale_dtype,
    }


def sparse_spec(shape, layout: str = "auto", dtype: str = "float32") -> dict:
    return {"codec": "sparse", "shape": list(shape), "dtype": dtype, "layout": layout}


def integer_codes(spec: dict[str, Any], parts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(the dense integer values, one scale per row) of a symmetric integer-encoded tensor, for
    the engines that compute on the stored integers; None for any other encoding."""
    codec = spec.get("codec")
    if codec not in INTEGER_CODECS or not spec.get("symmetric", True):
        return None
    shape = spec["shape"]
    if codec.startswith("sparse-"):
        q = torch.zeros(math.prod(shape), dtype=torch.int8)
        q[_sparse_positions(spec, parts)] = _int_values(spec, parts)
        q = q.reshape(shape)
    else:
        q = parts["q"] if codec == "int8" else unpack_int4(parts["q"], math.prod(shape)).reshape(shape)
    scale = parts["scale"].float()
    rows = q.shape[0]
    return q, (scale.expand(rows).clone() if scale.numel() == 1 else scale)


def integer_bytes(t: torch.Tensor, bits: int) -> dict[str, int]:
    """Stored bytes of `t` quantized to `bits` (per-row scales), dense and sparse: what picks
    the codec of a pruned tensor."""
    rows = t.shape[0] if t.dim() > 1 else 1
    width = t.numel() // max(rows, 1)
    kept = int((t != 0).sum())
    where = min(math.ceil(t.numel() / 8), rows * _count_dtype(width).itemsize + kept * _col_dtype(width).itemsize)
    return {
        "dense": math.ceil(t.numel() * bits / 8) + 4 * rows,  # as _encode_sparse_int lays them out
        "sparse": math.ceil(kept * bits / 8) + where + 4 * rows,
    }


# ----------------------------------------------------------------------------- encode


def encode(tensor: torch.Tensor, spec: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(parts by suffix, the spec as recorded) for a dense tensor."""
    t = tensor.detach().cpu()
    spec = {**spec, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
    if spec["codec"] not in CODECS:
        raise ValueError(f"unknown codec {spec['codec']}")
    return CODECS[spec["codec"]].encode(t, spec)


def _rows(t: torch.Tensor, axis: int | None) -> torch.Tensor:
    """The tensor as (groups, elements per group): one group per row, or one in all."""
    return t.reshape(1, -1) if axis is None or t.dim() == 0 else t.reshape(t.shape[0], -1)


def quant_params(t: torch.Tensor, bits: int, axis: int | None, symmetric: bool):
    """(scale, zero_point) per group by min-max; zero_point is None when symmetric."""
    lo, hi = _QRANGE[f"int{bits}"]
    g = _rows(t.float(), axis)
    if symmetric:
        scale = g.abs().amax(1) / hi
        return torch.where(scale > 0, scale, torch.ones_like(scale)), None
    mn, mx = g.amin(1).clamp(max=0), g.amax(1).clamp(min=0)  # zero is exactly representable
    scale = (mx - mn) / (hi - lo)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(lo - mn / scale).clamp(lo, hi).to(torch.int8)
    return scale, zero


def quantize(
    t: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int, axis: int | None
) -> torch.Tensor:
    lo, hi = _QRANGE[f"int{bits}"]
    g = _rows(t.float(), axis)
    q = torch.round(g / scale.unsqueeze(1))
    if zero is not None:
        q = q + zero.float().unsqueeze(1)
    return q.clamp(lo, hi).to(torch.int8).reshape(t.shape)


def _encode_int(t: torch.Tensor, spec: dict) -> tuple[dict[str, torch.Tensor], dict]:
    bits = int(spec["codec"][3:])
    scale, zero = quant_params(t, bits, spec["axis"], spec["symmetric"])
    scale_dtype = _FLOATS[spec.get("scale_dtype", "float32")]
    scale = scale.to(scale_dtype).float()  # quantize with the scale as stored
    q = quantize(t, scale, zero, bits, spec["axis"])
    parts = {"q": pack_int4(q) if bits == 4 else q, "scale": scale.to(scale_dtype).contiguous()}
    if zero is not None:
        parts["zero_point"] = zero
    return parts, spec


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int8 values in [-8, 7] -> uint8, two per byte (low nibble first); odd counts pad with 0."""
    flat = (q.reshape(-1).to(torch.int16) + 8).to(torch.uint8)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_full((1,), 8)])
    return flat[0::2] | (flat[1::2] << 4)


def unpack_int4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    both = torch.stack([packed & 0x0F, packed >> 4], 1).reshape(-1)[:numel]
    return both.to(torch.int16).sub(8).to(torch.int8)


def _encode_sparse(t: torch.Tensor, spec: dict) -> tuple[dict[str, torch.Tensor], dict]:
    flat = t.reshape(-1)
    nz = flat != 0
    values = flat[nz].contiguous()
    layout = spec.get("layout", "auto")
    if layout == "auto":  # the smaller of 1 bit per element and 4 bytes per non-zero
        layout = "bitmask" if math.ceil(flat.numel() / 8) <= 4 * values.numel() else "indices"
    spec = {**spec, "layout": layout}
    if layout == "bitmask":
        return {"bitmask": _pack_bits(nz), "values": values}, spec
    return {"indices": torch.nonzero(nz).reshape(-1).to(torch.int32), "values": values}, spec


def _col_dtype(width: int) -> torch.dtype:
    """The narrowest type for a column index of a row `width` long."""
    return torch.uint8 if width <= 256 else torch.int16 if width <= 32768 else torch.int32


def _count_dtype(width: int) -> torch.dtype:
    """The narrowest type for how many of a row's `width` columns are stored (0 .. width)."""
    return torch.uint8 if width <= 255 else torch.int16 if width <= 32767 else torch.int32


def _encode_sparse_int(t: torch.Tensor, spec: dict) -> tuple[dict[str, torch.Tensor], dict]:
    if not spec.get("symmetric", True):
        raise ValueError("sparse integer codecs are symmetric (an absent weight is 0)")
    bits = int(spec["codec"].removeprefix("sparse-int"))
    t2 = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)
    scale, _ = quant_params(t, bits, spec.get("axis", 0), True)
    scale_dtype = _FLOATS[spec.get("scale_dtype", "float32")]
    scale = scale.to(scale_dtype).float()  # quantize with the scale as stored
    q = quantize(t, scale, None, bits, spec.get("axis", 0)).reshape(t2.shape)
    nz = t2 != 0  # the structure pruning left (a weight that rounds to 0 keeps its place)
    values = q[nz]
    parts: dict[str, torch.Tensor] = {
        "values": pack_int4(values) if bits == 4 else values.contiguous(),
        "scale": scale.to(scale_dtype).contiguous(),
    }
    rows, width = t2.shape
    bitmask_bytes = math.ceil(t2.numel() / 8)
    csr_bytes = rows * _count_dtype(width).itemsize + values.numel() * _col_dtype(width).itemsize
    layout = spec.get("layout", "auto")
    if layout == "auto":
        layout = "bitmask" if bitmask_bytes <= csr_bytes else "csr"
    if layout == "bitmask":
        parts["bitmask"] = _pack_bits(nz.reshape(-1))
    else:
        parts["counts"] = nz.sum(1).to(_count_dtype(width))  # per row: how many values it stores
        parts["cols"] = torch.nonzero(nz)[:, 1].to(_col_dtype(width))
    return parts, {**spec, "layout": layout, "axis": spec.get("axis", 0), "symmetric": True}


def _pack_bits(bits: torch.Tensor) -> torch.Tensor:
    pad = (-bits.numel()) % 8
    b = torch.cat([bits, bits.new_zeros(pad)]).reshape(-1, 8).to(torch.uint8)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)
    return (b * weights).sum(1, dtype=torch.uint8)


def _unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((packed.unsqueeze(1) >> shifts) & 1).reshape(-1)[:n].bool()


# ----------------------------------------------------------------------------- decode + check


def _int_parts(spec: dict[str, Any]) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "q": torch.int8 if spec["codec"] == "int8" else torch.uint8,
        "scale": _FLOATS.get(spec.get("scale_dtype", "float32"), torch.float32),
    }
    if not spec.get("symmetric", True):
        parts["zero_point"] = torch.int8
    return parts


def _sparse_parts(spec: dict[str, Any]) -> dict[str, Any]:
    where = {"bitmask": torch.uint8, "indices": (torch.int32, torch.int64)}
    if spec.get("layout") not in where:
        return {}
    return {spec["layout"]: where[spec["layout"]], "values": tuple(_FLOATS.values())}


def _sparse_int_parts(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("layout") not in SPARSE_INT_LAYOUTS or not spec.get("symmetric", True):
        return {}
    values = torch.int8 if spec["codec"] == "sparse-int8" else torch.uint8
    parts: dict[str, Any] = {"values": values, "scale": _FLOATS.get(spec.get("scale_dtype", "float32"), torch.float32)}
    if spec["layout"] == "bitmask":
        parts["bitmask"] = torch.uint8
    else:
        parts.update(counts=(torch.uint8, torch.int16, torch.int32), cols=(torch.uint8, torch.int16, torch.int32))
    return parts


def expected_parts(spec: dict[str, Any]) -> dict[str, torch.dtype | tuple[torch.dtype, ...]]:
    codec = CODECS.get(spec.get("codec", ""))
    return codec.parts(spec) if codec is not None else {}


def decode(
    name: str, spec: dict[str, Any], parts: dict[str, torch.Tensor], source: str = "<checkpoint>"
) -> torch.Tensor:
    """The dense tensor; any mismatch between spec and parts is a CheckpointError."""

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(
            f"{source}: tensor '{name}' is recorded as {spec.get('codec')} but {problem}; "
            "the file was altered or written by a faulty tool"
        )

    codec = CODECS.get(spec.get("codec", ""))
    if codec is None:
        raise bad(f"cfctool knows only the codecs {', '.join(CODECS)}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise bad(f"its recorded shape {str(shape)[:60]} is not a list of sizes")
    if math.prod(shape) > MAX_DECODED:  # a sparse tensor's shape is not proved by its bytes
        raise bad(f"its recorded shape {shape} holds more than {MAX_DECODED:,} values, beyond any model here")
    if spec.get("dtype") not in _FLOATS:
        raise bad(f"its recorded dtype {spec.get('dtype')!r} is not one of {', '.join(_FLOATS)}")
    expected = expected_parts(spec)
    if not expected:
        raise bad(f"its layout {spec.get('layout')!r} is not one of {', '.join(SPARSE_LAYOUTS)}")
    if set(parts) != set(expected):
        raise bad(
            f"its stored parts are {sorted(name + '.' + p for p in parts)}, "
            f"expected {sorted(name + '.' + p for p in expected)}"
        )
    for part, dtype in expected.items():
        allowed = dtype if isinstance(dtype, tuple) else (dtype,)
        if parts[part].dtype not in allowed:
            raise bad(f"'{name}.{part}' has dtype {str(parts[part].dtype).removeprefix('torch.')}")
        if parts[part].dim() != 1 and part != "q":
            raise bad(f"'{name}.{part}' is not one-dimensional")
    return codec.decode(name, spec, parts, bad)


def _decode_int(name: str, spec: dict[str, Any], parts: dict[str, torch.Tensor], bad) -> torch.Tensor:
    shape, numel, out_dtype, codec = spec["shape"], math.prod(spec["shape"]), _FLOATS[spec["dtype"]], spec["codec"]
    q = parts["q"]
    if codec == "int8" and list(q.shape) != shape:
        raise bad(f"'{name}.q' has shape {list(q.shape)}, expected {shape}")
    if codec == "int4":
        if list(q.shape) != [math.ceil(numel / 2)]:
            raise bad(f"'{name}.q' holds {q.numel()} bytes, expected {math.ceil(numel / 2)} for {numel} values")
        q = unpack_int4(q, numel).reshape(shape)
    axis = spec.get("axis", 0)
    groups = 1 if axis is None or not shape else shape[0]
    if axis not in (0, None):
        raise bad(f"its axis {axis!r} is not 0 (per row) or null (per tensor)")
    for part in ("scale", "zero_point"):
        if part in parts and parts[part].numel() != groups:
            raise bad(f"'{name}.{part}' has {parts[part].numel()} entries, expected {groups}")
    scale = parts["scale"].float()
    if not torch.isfinite(scale).all() or (scale <= 0).any():
        raise bad(f"'{name}.scale' has non-positive or non-finite entries")
    g = _rows(q.float(), axis)
    if "zero_point" in parts:
        g = g - parts["zero_point"].float().unsqueeze(1)
    return (g * scale.unsqueeze(1)).reshape(shape).to(out_dtype)


def _decode_sparse(name: str, spec: dict[str, Any], parts: dict[str, torch.Tensor], bad) -> torch.Tensor:
    shape, numel, out_dtype = spec["shape"], math.prod(spec["shape"]), _FLOATS[spec["dtype"]]
    values = parts["values"]
    if "bitmask" in parts:
        if parts["bitmask"].numel() != math.ceil(numel / 8):
            raise bad(f"'{name}.bitmask' has {parts['bitmask'].numel()} bytes, expected {math.ceil(numel / 8)}")
        where = _unpack_bits(parts["bitmask"], numel)
        if int(where.sum()) != values.numel():
            raise bad(f"its bitmask marks {int(where.sum())} elements but {values.numel()} values are stored")
        dense = torch.zeros(numel, dtype=out_dtype)
        dense[where] = values.to(out_dtype)
        return dense.reshape(shape)
    idx = parts["indices"].long()
    if idx.numel() != values.numel():
        raise bad(f"it stores {idx.numel()} indices for {values.numel()} values")
    if idx.numel() and (idx[0] < 0 or idx[-1] >= numel or (idx[1:] <= idx[:-1]).any()):
        raise bad(f"its indices are not increasing within [0, {numel})")
    dense = torch.zeros(numel, dtype=out_dtype)
    dense[idx] = values.to(out_dtype)
    return dense.reshape(shape)


def _int_values(spec: dict[str, Any], parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The stored integer values of a sparse integer tensor, unpacked."""
    values = parts["values"]
    if spec["codec"] == "sparse-int4":
        count = (
            int(parts["counts"].long().sum())
            if "counts" in parts
            else int(_unpack_bits(parts["bitmask"], math.prod(spec["shape"])).sum())
        )
        return unpack_int4(values, count)
    return values


def _sparse_positions(spec: dict[str, Any], parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Where the stored values go: flat indices into the tensor, in row-major order."""
    shape = spec["shape"]
    if "bitmask" in parts:
        return _unpack_bits(parts["bitmask"], math.prod(shape))
    width = math.prod(shape[1:]) if len(shape) > 1 else math.prod(shape)
    counts = parts["counts"].long()
    rows = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return rows * width + parts["cols"].long()


def _decode_sparse_int(name: str, spec: dict[str, Any], parts: dict[str, torch.Tensor], bad) -> torch.Tensor:
    shape, numel, out_dtype = spec["shape"], math.prod(spec["shape"]), _FLOATS[spec["dtype"]]
    rows = shape[0] if len(shape) > 1 else 1
    width = numel // rows if rows else 0
    if "bitmask" in parts:
        if parts["bitmask"].numel() != math.ceil(numel / 8):
            raise bad(f"'{name}.bitmask' has {parts['bitmask'].numel()} bytes, expected {math.ceil(numel / 8)}")
        count = int(_unpack_bits(parts["bitmask"], numel).sum())
    else:
        counts, cols = parts["counts"].long(), parts["cols"].long()
        if counts.numel() != rows or ((counts < 0) | (counts > width)).any() or int(counts.sum()) != cols.numel():
            raise bad(f"'{name}.counts' is not {rows} row counts in [0, {width}] summing to the {cols.numel()} columns")
        ptr = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        if cols.numel() and ((cols < 0) | (cols >= width)).any():
            raise bad(f"'{name}.cols' holds columns outside [0, {width})")
        inner = torch.ones(cols.numel(), dtype=torch.bool)
        inner[ptr[1:-1][ptr[1:-1] < cols.numel()]] = False  # a row's first column follows nothing
        if cols.numel() > 1 and ((cols[1:] <= cols[:-1]) & inner[1:]).any():
            raise bad(f"'{name}.cols' is not increasing within a row")
        count = cols.numel()
    stored = math.ceil(count / 2) if spec["codec"] == "sparse-int4" else count
    if parts["values"].numel() != stored:
        raise bad(f"'{name}.values' holds {parts['values'].numel()} entries for {count} positions")
    if (
        parts["scale"].numel() not in (1, rows)
        or not torch.isfinite(parts["scale"].float()).all()
        or (parts["scale"].float() <= 0).any()
    ):
        raise bad(f"'{name}.scale' needs {rows} (or 1) positive finite entries")
    codes = integer_codes(spec, parts)
    if codes is None:  # a crafted spec saying the codec is asymmetric
        raise bad(f"'{name}' says it is asymmetric; the sparse integer codecs are symmetric")
    q, scale = codes
    return (q.float().reshape(q.shape[0], -1) * scale.unsqueeze(1)).reshape(shape).to(out_dtype)


@dataclass(frozen=True)
class Codec:
    """One way of storing a tensor: `encode(t, spec) -> (parts, spec as recorded)`,
    `parts(spec) -> {part: dtype or dtypes}` ({} when the spec is malformed),
    `decode(name, spec, parts, bad) -> dense` after the common checks (`bad(problem)` makes
    the CheckpointError); `exact`: decoding restores the tensor, so an engine running the
    dense values simulates nothing."""

    name: str
    encode: Callable[[torch.Tensor, dict], tuple[dict[str, torch.Tensor], dict]]
    parts: Callable[[dict], dict]
    decode: Callable[[str, dict, dict, Callable[[str], CheckpointError]], torch.Tensor]
    exact: bool
    integer: bool = False  # stores symmetric integer codes an integer engine computes on (`integer_codes`)


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec("int8", _encode_int, _int_parts, _decode_int, exact=False, integer=True),
        Codec("int4", _encode_int, _int_parts, _decode_int, exact=False, integer=True),
        Codec("sparse", _encode_sparse, _sparse_parts, _decode_sparse, exact=True),
        Codec("sparse-int8", _encode_sparse_int, _sparse_int_parts, _decode_sparse_int, exact=False, integer=True),
        Codec("sparse-int4", _encode_sparse_int, _sparse_int_parts, _decode_sparse_int, exact=False, integer=True),
    )
}
INTEGER_CODECS = tuple(name for name, codec in CODECS.items() if codec.integer)  # what the integer engines read


def split_stored(stored: dict[str, torch.Tensor], specs: dict[str, dict], source: str):
    """(dense tensors, parts per encoded name) from the tensors a file stores."""
    if not isinstance(specs, dict):
        raise CheckpointError(f"{source}: the record's encodings section is not a mapping")
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in specs}
    dense: dict[str, torch.Tensor] = {}
    for key, t in stored.items():
        owner, _, part = key.rpartition(".")
        if owner in specs:
            parts[owner][part] = t
        else:
            dense[key] = t
    for name, spec in specs.items():
        if name in dense:
            raise CheckpointError(f"{source}: tensor '{name}' is stored both plain and as {spec.get('codec')}")
        if not isinstance(spec, dict):
            raise CheckpointError(f"{source}: the encoding of '{name}' is not a mapping")
        dense[name] = decode(name, spec, parts[name], source)
    return dense, parts


def stored_tensors(
    tensors: dict[str, torch.Tensor], specs: dict[str, dict], parts: dict[str, dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """What a file stores: plain tensors, and the parts of encoded ones."""
    out = {k: v for k, v in tensors.items() if k not in specs}
    for name in specs:
        for part, t in parts[name].items():
            out[f"{name}.{part}"] = t
    return out
