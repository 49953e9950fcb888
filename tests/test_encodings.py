"""Stored tensor encodings: exact round trips on hand-made tensors, the codecs' error bounds,
and a clear error for every way a file can contradict its record."""

import json
import struct

import pytest
from helpers import resign
import torch

from cfctool import checkpoint, encodings
from cfctool.checkpoint import load, save
from cfctool.errors import CheckpointError


def test_int8_per_row_scales_by_hand():
    w = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [127.0, 3.0, -127.0]])
    parts, spec = encodings.encode(w, encodings.quantize_spec(8, w.shape))
    assert parts["scale"].tolist() == pytest.approx([2.0 / 127, 1.0, 1.0])  # an all-zero row keeps scale 1
    assert parts["q"].dtype == torch.int8
    assert parts["q"].tolist() == [[64, -127, 32], [0, 0, 0], [127, 3, -127]]  # 1 / (2 / 127) = 63.5 rounds to even: 64
    back = encodings.decode("w", spec, parts)
    assert torch.equal(back[2], w[2])  # integers in range are exact at scale 1
    assert (back - w).abs().max() <= 2.0 / 127 / 2 + 1e-7


def _round_trip(w, spec):
    parts, recorded = encodings.encode(w, spec)
    return encodings.decode("w", recorded, parts)


def test_int8_bounds_per_channel_per_tensor_and_affine():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 48, generator=g) * torch.logspace(-2, 1, 32).unsqueeze(1)  # rows of very different scale
    for axis in (0, None):
        parts, spec = encodings.encode(w, encodings.quantize_spec(8, w.shape, axis=axis))
        back = encodings.decode("w", spec, parts)
        bound = (parts["scale"] / 2).unsqueeze(1) if axis == 0 else parts["scale"] / 2
        assert ((back - w).abs() <= bound + 1e-6).all()
    per_row = _round_trip(w, encodings.quantize_spec(8, w.shape))
    per_tensor = _round_trip(w, encodings.quantize_spec(8, w.shape, axis=None))
    rel = lambda approx: float((approx[0] - w[0]).norm() / w[0].norm())  # noqa: E731  (the smallest row)
    assert rel(per_row) < 0.01 and rel(per_tensor) > 0.5  # one scale for all rows wipes out the small ones
    relu_out = torch.rand(8, 100, generator=g) * 3  # non-negative: the affine code uses all 256 levels
    parts, spec = encodings.encode(relu_out, encodings.quantize_spec(8, relu_out.shape, symmetric=False))
    assert "zero_point" in parts and ((parts["zero_point"] == -128).all())
    back = encodings.decode("a", spec, parts)
    assert ((back - relu_out).abs() <= (parts["scale"] / 2).unsqueeze(1) + 1e-6).all()


def test_int4_packing_round_trip_including_odd_sizes():
    q = torch.tensor([-8, 7, 0, -1, 3, 5, -3], dtype=torch.int8)  # odd count
    packed = encodings.pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.numel() == 4
    assert packed[0].item() == (0 | (15 << 4))  # -8 -> 0 low nibble, 7 -> 15 high nibble
    assert torch.equal(encodings.unpack_int4(packed, 7), q)
    w = torch.randn(5, 9, generator=torch.Generator().manual_seed(1))
    parts, spec = encodings.encode(w, encodings.quantize_spec(4, w.shape))
    assert parts["q"].numel() == 23  # ceil(45 / 2)
    back = encodings.decode("w", spec, parts)
    assert ((back - w).abs() <= (parts["scale"] / 2).unsqueeze(1) + 1e-6).all()


@pytest.mark.parametrize("layout", ["bitmask", "indices"])
def test_sparse_round_trip_is_exact(layout):
    w = torch.randn(20, 30, generator=torch.Generator().manual_seed(2))
    w[torch.rand(20, 30, generator=torch.Generator().manual_seed(3)) < 0.9] = 0.0
    parts, spec = encodings.encode(w, encodings.sparse_spec(w.shape, layout))
    assert spec["layout"] == layout and parts["values"].numel() == int((w != 0).sum())
    assert torch.equal(encodings.decode("w", spec, parts), w)


def test_sparse_auto_picks_the_smaller_layout():
    dense_ish = torch.ones(64, 64)
    assert encodings.encode(dense_ish, encodings.sparse_spec(dense_ish.shape))[1]["layout"] == "bitmask"
    very_sparse = torch.zeros(64, 64)
    very_sparse[3, 7] = 1.0
    assert encodings.encode(very_sparse, encodings.sparse_spec(very_sparse.shape))[1]["layout"] == "indices"


def _encoded_checkpoint(trained_xor):
    ckpt = load(trained_xor["cfc"])
    return ckpt, ckpt.encode({
        "rnn.cells.0.backbone.0.weight": encodings.quantize_spec(8, [0]),
        "rnn.cells.0.ff1.weight": encodings.sparse_spec([0]),
        "head.weight": encodings.quantize_spec(4, [0], axis=None),
    })


def test_checkpoint_with_encoded_tensors_round_trips(trained_xor, tmp_path):
    original, enc = _encoded_checkpoint(trained_xor)
    path = tmp_path / "enc.st"
    save(enc, path)
    back = load(path)  # the architecture check runs on the decoded tensors
    assert back.encodings.keys() == enc.encodings.keys()
    assert back.encodings["rnn.cells.0.backbone.0.weight"]["codec"] == "int8"
    name = "rnn.cells.0.backbone.0.weight"
    scale = back.parts[name]["scale"].unsqueeze(1)
    assert ((back.tensors[name] - original.tensors[name]).abs() <= scale / 2 + 1e-7).all()
    assert torch.equal(back.tensors["rnn.cells.0.ff1.weight"], original.tensors["rnn.cells.0.ff1.weight"])
    assert torch.equal(back.tensors[name], enc.tensors[name])  # what the model computes is what the file holds
    from safetensors.torch import load_file

    raw = load_file(str(path))  # still a plain safetensors file
    assert raw[name + ".q"].dtype == torch.int8 and name not in raw
    assert checkpoint.to_bytes(back) == path.read_bytes()  # deterministic, parts kept as stored
    import yaml

    side = yaml.safe_load(path.with_suffix(".yaml").read_text())
    assert side["encodings"][name]["codec"] == "int8"


def test_replacing_an_encoded_tensor_drops_its_encoding(trained_xor):
    _, enc = _encoded_checkpoint(trained_xor)
    name = "head.weight"
    changed = enc.derive(tensors={**enc.tensors, name: enc.tensors[name] + 1})
    assert name not in changed.encodings and "rnn.cells.0.ff1.weight" in changed.encodings


def _edit_record(data: bytes, edit) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    record = json.loads(header["__metadata__"]["cfctool.record"])
    edit(record, header)
    header["__metadata__"]["cfctool.record"] = json.dumps(record)
    return resign(header, data[8 + n :])  # the header hash made to match: the checks beyond it are tested


@pytest.mark.parametrize("edit,message", [
    (lambda r, h: r["encodings"]["rnn.cells.0.backbone.0.weight"].update(codec="int4"), r"is recorded as int4 but '.*\.q' has dtype int8"),
    (lambda r, h: r["encodings"]["rnn.cells.0.backbone.0.weight"].update(codec="fp8"), "knows only the codecs"),
    (lambda r, h: r["encodings"]["rnn.cells.0.ff1.weight"].update(layout="indices"), r"stored parts are .*bitmask.*expected .*indices"),
    (lambda r, h: r["encodings"]["head.weight"].update(symmetric=False), "zero_point"),
    (lambda r, h: r["encodings"]["rnn.cells.0.backbone.0.weight"].update(shape=[3, 3]), "has shape"),
    (lambda r, h: r["encodings"].pop("head.weight"), "do not fit architecture|missing tensors"),
])
def test_record_claiming_a_codec_the_tensors_do_not_match_is_a_clear_error(trained_xor, tmp_path, edit, message):
    _, enc = _encoded_checkpoint(trained_xor)
    good = tmp_path / "good.st"
    save(enc, good)
    if enc.encodings["rnn.cells.0.ff1.weight"]["layout"] != "bitmask":
        pytest.skip("the ff1 tensor was stored with indices")
    bad = tmp_path / "bad.st"
    bad.write_bytes(_edit_record(good.read_bytes(), edit))
    with pytest.raises(CheckpointError, match=message):
        load(bad)


def test_info_counts_the_stored_bytes_and_codecs(trained_xor, tmp_path):
    from cfctool.ops.info import describe

    original, enc = _encoded_checkpoint(trained_xor)
    save(enc, tmp_path / "e.st")
    d, plain = describe(load(tmp_path / "e.st")), describe(original)
    name = "rnn.cells.0.backbone.0.weight"
    saved = original.tensors[name].numel() * 3 - original.tensors[name].shape[0] * 4  # 4 -> 1 byte, + scales
    assert plain["sizes"]["tensor_bytes"] - d["sizes"]["tensor_bytes"] >= saved
    assert d["encodings"]["int8 tensors"] == 1 and d["encodings"]["int4 tensors"] == 1


def test_a_sparse_tensor_claiming_more_values_than_any_model_is_refused_before_decoding():
    import torch

    from cfctool.errors import CheckpointError

    parts = {"values": torch.ones(3), "indices": torch.tensor([0, 5, 9], dtype=torch.int32)}
    spec = {"codec": "sparse", "shape": [10**6, 10**6], "dtype": "float32", "layout": "indices"}
    with pytest.raises(CheckpointError, match="holds more than 268,435,456 values"):
        encodings.decode("w", spec, parts)
    assert encodings.decode("w", {**spec, "shape": [2, 5]}, parts).flatten().nonzero().flatten().tolist() == [0, 5, 9]


def dense_bytes(parts) -> int:
    return sum(p.numel() * p.element_size() for p in parts.values())


def _pruned_weight(rows=48, cols=96, keep=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    return w * (torch.rand(rows, cols, generator=g) < keep)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("layout", ["bitmask", "csr", "auto"])
@pytest.mark.parametrize("scale_dtype", ["float32", "float16"])
def test_sparse_integer_codecs_decode_as_the_dense_integer_codec_does(bits, layout, scale_dtype):
    """A pruned weight stored sparse and quantized gives exactly the dense int codec's values
    (zeros stay zero: symmetric), and the integer engines read the same integers and scales."""
    w = _pruned_weight()
    sparse_parts, sparse_spec_ = encodings.encode(w, {"codec": f"sparse-int{bits}", "axis": 0, "symmetric": True,
                                                      "layout": layout, "scale_dtype": scale_dtype})
    dense_parts, dense_spec = encodings.encode(w, encodings.quantize_spec(bits, w.shape, scale_dtype=scale_dtype))
    assert torch.equal(encodings.decode("w", sparse_spec_, sparse_parts), encodings.decode("w", dense_spec, dense_parts))
    q_sparse, s_sparse = encodings.integer_codes(sparse_spec_, sparse_parts)
    q_dense, s_dense = encodings.integer_codes(dense_spec, dense_parts)
    assert torch.equal(q_sparse, q_dense) and torch.equal(s_sparse, s_dense)
    stored = sum(p.numel() * p.element_size() for p in sparse_parts.values())
    if layout == "auto" and scale_dtype == "float32":  # the size quantize decides by, without encoding
        assert encodings.integer_bytes(w, bits) == {"dense": dense_bytes(dense_parts), "sparse": stored}
    dense = sum(p.numel() * p.element_size() for p in dense_parts.values())
    assert stored < dense * (0.35 if bits == 8 else 0.6)  # 5% kept: pruning and quantization multiply
    if layout == "auto":  # the smaller one: CSR at 5% kept
        assert sparse_spec_["layout"] == "csr" and sparse_parts["cols"].dtype == torch.uint8


@pytest.mark.parametrize("part,edit,message", [
    ("counts", lambda t: t + 1, "is not 48 row counts in \\[0, 96\\] summing to"),
    ("cols", lambda t: t.clamp(max=0), "is not increasing within a row"),
    ("cols", lambda t: t.to(torch.int16) + 200, "holds columns outside"),
    ("values", lambda t: t[:-1], "entries for"),
    ("scale", lambda t: -t, "positive finite entries"),
])
def test_a_damaged_sparse_integer_tensor_is_a_clear_error(part, edit, message):
    parts, spec = encodings.encode(_pruned_weight(), {"codec": "sparse-int8", "axis": 0, "symmetric": True,
                                                      "layout": "csr"})
    parts = {**parts, part: edit(parts[part])}
    with pytest.raises(CheckpointError, match=message):
        encodings.decode("w", spec, parts)


def test_prune_then_quantize_keeps_the_sparsity_and_runs_the_integer_engine(trained_xor):
    from cfctool.configs import PruneConfig, QuantizeConfig
    from cfctool.engines import choose
    from cfctool.families.build import model_from_checkpoint
    from cfctool.ops.info import tensor_bytes
    from cfctool.ops.prune import prune
    from cfctool.ops.quantize import quantize

    base = checkpoint.load(trained_xor["cfc"])
    pruned = prune(base, PruneConfig(ratio=0.95, storage="sparse"))
    dense_q = quantize(base, QuantizeConfig(scheme="dynamic"))
    sparse_q = quantize(pruned, QuantizeConfig(scheme="dynamic"))
    codecs = {spec["codec"] for spec in sparse_q.encodings.values()}
    assert "sparse-int8" in codecs
    assert tensor_bytes(sparse_q) < 0.7 * tensor_bytes(dense_q)  # smaller, though biases and scales stay (a tiny model)
    model = model_from_checkpoint(sparse_q)
    assert choose(sparse_q, model).name == "folded-int8"
    loaded = checkpoint.from_bytes(checkpoint.to_bytes(sparse_q))
    assert all(torch.equal(loaded.tensors[k], sparse_q.tensors[k]) for k in sparse_q.tensors)
