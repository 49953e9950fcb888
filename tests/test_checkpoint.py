"""Checkpoint round trips, and a specific error for each kind of damaged or foreign file."""

import json
import re
import struct
from pathlib import Path

import pytest
import torch
from helpers import resign, with_record

from cfctool import checkpoint
from cfctool.checkpoint import Checkpoint, load, save, sidecar_path
from cfctool.data.xor import generate
from cfctool.errors import CheckpointError
from cfctool.families.build import model_from_checkpoint

REPO = Path(__file__).resolve().parents[1]

ARCHS = ("cfc", "cfc-deep", "cfc-ncp", "ltc")


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_gives_identical_tensors_and_outputs(trained_xor, tmp_path, arch):
    first = load(trained_xor[arch])
    again_path = tmp_path / "again.st"
    save(first, again_path)
    second = load(again_path)
    assert first.record == second.record
    assert first.tensors.keys() == second.tensors.keys()
    for name, t in first.tensors.items():
        assert torch.equal(t, second.tensors[name]) and t.dtype == second.tensors[name].dtype
    batch = generate(first.task, "test", 32)
    with torch.no_grad():
        a = model_from_checkpoint(first)(batch.x, batch.dt, batch.mask)
        b = model_from_checkpoint(second)(batch.x, batch.dt, batch.mask)
    assert torch.equal(a, b)


def test_bytes_round_trip_and_sidecar_content(trained_xor):
    import hashlib

    import yaml

    path = trained_xor["cfc"]
    data = path.read_bytes()
    ckpt = checkpoint.load_bytes(data)
    assert checkpoint.to_bytes(ckpt) == data  # deterministic serialisation
    side = yaml.safe_load(sidecar_path(path).read_text())
    assert side["sha256"] == hashlib.sha256(data).hexdigest()
    assert side["format"] == checkpoint.FORMAT_VERSION
    assert side["arch"]["name"] == "cfc" and side["task"]["dataset"] == "xor"
    assert side["history"][0]["command"] == "train"
    assert {"torch_version", "cfctool_version", "utc", "seed", "config", "wall_time_s"} <= side["history"][0].keys()
    assert 0.0 <= side["metrics"]["accuracy"] <= 1.0


def _rewrite_header(data: bytes, edit) -> bytes:
    """The file with its header edited and its header hash made to match again (the checks
    beyond the hash are what these tests are about)."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    edit(header)
    return resign(header, data[8 + n :])


def _write(tmp_path, payload: bytes):
    path = tmp_path / "bad.st"
    path.write_bytes(payload)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load(tmp_path / "nope.st")


def test_not_a_safetensors_file(tmp_path):
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load(_write(tmp_path, b"hello, I am a text file and not a model at all\n"))


def test_truncated_file(trained_xor, tmp_path):
    data = trained_xor["cfc"].read_bytes()
    with pytest.raises(CheckpointError, match="truncated"):
        load(_write(tmp_path, data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated|not a safetensors"):
        load(_write(tmp_path, data[:100]))


def test_newer_format_version(trained_xor, tmp_path):
    data = _rewrite_header(trained_xor["cfc"].read_bytes(),
                           lambda h: h["__metadata__"].update({"cfctool.format": "99"}))
    with pytest.raises(CheckpointError, match="format 99, newer .*upgrade cfctool"):
        load(_write(tmp_path, data))


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save as st_save

    with pytest.raises(CheckpointError, match="not a cfctool checkpoint"):
        load(_write(tmp_path, st_save({"w": torch.zeros(2)})))


def test_record_missing(trained_xor, tmp_path):
    data = _rewrite_header(trained_xor["cfc"].read_bytes(), lambda h: h["__metadata__"].pop("cfctool.record"))
    with pytest.raises(CheckpointError, match="record .* is missing"):
        load(_write(tmp_path, data))


def test_tensors_not_matching_the_architecture(trained_xor, tmp_path):
    ckpt = load(trained_xor["cfc"])
    wrong = ckpt.derive(arch={**ckpt.arch, "hidden": ckpt.arch["hidden"] + 4})
    path = tmp_path / "wrong.st"
    save(wrong, path)
    with pytest.raises(CheckpointError, match="do not fit architecture 'cfc'.*shape"):
        load(path)
    missing = Checkpoint(tensors={k: v for k, v in ckpt.tensors.items() if "ff2" not in k}, record=ckpt.record)
    save(missing, path)
    with pytest.raises(CheckpointError, match="missing .*ff2"):
        load(path)


def test_tensor_manifest_mismatch(trained_xor, tmp_path):
    def edit(h):
        record = json.loads(h["__metadata__"]["cfctool.record"])
        record["tensors"]["head.bias"]["shape"] = [99]
        h["__metadata__"]["cfctool.record"] = json.dumps(record)

    with pytest.raises(CheckpointError, match="do not match the record"):
        load(_write(tmp_path, _rewrite_header(trained_xor["cfc"].read_bytes(), edit)))


def test_sidecar_sha256_mismatch(trained_xor, tmp_path):
    a, b = tmp_path / "a.st", tmp_path / "b.st"
    save(load(trained_xor["cfc"]), a)
    save(load(trained_xor["ltc"]), b)
    a.write_bytes(b.read_bytes())  # replace the .st, keep a.yaml
    with pytest.raises(CheckpointError, match="does not match its sidecar"):
        load(a)
    sidecar_path(a).unlink()  # without the sidecar the .st stands alone
    assert load(a).arch["name"] == "ltc"


def test_interrupted_save_leaves_no_output(trained_xor, tmp_path, monkeypatch):
    ckpt = load(trained_xor["cfc"])
    out = tmp_path / "out.st"

    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        save(ckpt, out)
    assert list(tmp_path.iterdir()) == []  # no out.st, no sidecar, no temp file


def test_interrupted_overwrite_keeps_the_old_file(trained_xor, tmp_path, monkeypatch):
    out = tmp_path / "out.st"
    save(load(trained_xor["cfc"]), out)
    before = out.read_bytes()
    monkeypatch.setattr(checkpoint.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save(load(trained_xor["ltc"]), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.st", "out.yaml"]


def test_derive_leaves_the_input_untouched(trained_xor):
    ckpt = load(trained_xor["cfc"])
    before = json.dumps(ckpt.record, sort_keys=True)
    new = ckpt.derive(metrics={"accuracy": 0.0}).with_history({"command": "x"})
    assert json.dumps(ckpt.record, sort_keys=True) == before
    assert new.record["metrics"] == {"accuracy": 0.0} and len(new.record["history"]) == 2


def test_the_tensor_data_carry_their_sha256_inside_the_file(trained_xor, tmp_path, cli):
    """A .st travels through pipes without its sidecar: one flipped bit in the tensor data is
    caught at load from the hash in the record; files written before the hash still load."""
    import hashlib
    import shutil
    import struct as st

    data = bytearray(trained_xor["cfc"].read_bytes())
    header_end = 8 + st.unpack("<Q", data[:8])[0]
    ckpt = checkpoint.load_bytes(bytes(data))
    assert ckpt.data_sha256 == hashlib.sha256(data[header_end:]).hexdigest()  # an independent hash of the data
    data[header_end + 37] ^= 0x10
    (tmp_path / "flipped.st").write_bytes(bytes(data))  # no sidecar
    with pytest.raises(CheckpointError, match="do not match the sha256 recorded in the file"):
        checkpoint.load(tmp_path / "flipped.st")
    r = cli("info", "-", stdin=bytes(data))
    assert r.code == 1 and "altered or damaged" in r.err
    old = REPO / "benchmarks" / "checkpoints" / "mnist-conv-ode.st"  # committed before the hash existed
    shutil.copy(old, tmp_path / "old.st")
    assert checkpoint.load(tmp_path / "old.st").data_sha256 is None
    assert "integrity    no hash in the file" in cli("info", tmp_path / "old.st").out


@pytest.mark.parametrize("fail_at", ["stage the sidecar", "fsync the sidecar", "rename the sidecar",
                                     "rename the checkpoint"])
@pytest.mark.parametrize("existing", [True, False])
def test_a_checkpoint_and_its_sidecar_are_written_as_one(fail_at, existing, trained_xor, tmp_path, monkeypatch):
    """A failure at any point of a save leaves the old pair (or no pair), never a new .st
    beside an old sidecar, and no temp, backup or lock file."""
    out = tmp_path / "out.st"
    if existing:
        save(load(trained_xor["cfc"]), out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = {"mkstemp": 0, "fsync": 0, "replace": 0}
    real = {"mkstemp": checkpoint.tempfile.mkstemp, "fsync": checkpoint.os.fsync, "replace": checkpoint.os.replace}
    # (the call that fails, which one): the first mkstemp probes the directory before any work
    step, nth = {"stage the sidecar": ("mkstemp", 3), "fsync the sidecar": ("fsync", 2),
                 "rename the sidecar": ("replace", 2), "rename the checkpoint": ("replace", 1)}[fail_at]

    def failing(name):
        def call(*a, **k):
            calls[name] += 1
            if name == step and calls[name] == nth:
                raise OSError(28, "No space left on device")
            return real[name](*a, **k)
        return call

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", failing("mkstemp"))
    monkeypatch.setattr(checkpoint.os, "fsync", failing("fsync"))
    monkeypatch.setattr(checkpoint.os, "replace", failing("replace"))
    with pytest.raises(CheckpointError, match="No space left on device; nothing was written"):
        save(load(trained_xor["ltc"]), out)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    if existing:
        assert load(out).arch["name"] == "cfc"  # the old pair, still matching


def test_concurrent_writers_of_one_output_leave_a_matching_pair(trained_xor, tmp_path):
    import threading

    out = tmp_path / "out.st"
    pair = [load(trained_xor[a]) for a in ("cfc", "ltc")]
    errors = []

    def writer(ckpt):
        try:
            for _ in range(15):
                save(ckpt, out)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c,)) for c in pair]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert load(out).arch["name"] in ("cfc", "ltc")  # the sidecar's hash matches the .st beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.st", "out.yaml"]


def test_a_file_with_an_unknown_arch_is_a_content_error_naming_the_file(trained_xor, tmp_path, cli):
    (tmp_path / "gru.st").write_bytes(with_record(trained_xor["cfc"].read_bytes(),
                                                  lambda r: r["arch"].update(name="gru")))
    r = cli("info", tmp_path / "gru.st")
    assert r.code == 1 and f"{tmp_path / 'gru.st'}: arch.name 'gru' is not a known arch" in r.err


@pytest.mark.parametrize("arch,change,message", [
    ("cfc", lambda r: r["arch"].update(surprise=1), "arch.surprise is not a key of the 'cfc' family (its keys:"),
    ("ltc", lambda r: r["arch"].update(hidden=10**7), "arch.hidden must be at most 1,048,576 (got 10,000,000)"),
    ("cfc-ncp", lambda r: r["arch"].update(ncp_layers=[5, 3, 10**8]), "arch.ncp_layers must be at most 1,048,576"),
    ("cfc", lambda r: r["arch"].update(hidden=-3), "arch.hidden must be >= 1 (got -3)"),
    ("cfc", lambda r: r["arch"].update(hidden="12"), "arch.hidden must be an integer (got str '12')"),
    ("cfc", lambda r: r["arch"].update(mode="fast"), "arch.mode must be one of default, no_gate, pure"),
    ("cfc", lambda r: r.update(history="trained"), "history must be a list (got str)"),
    ("cfc", lambda r: r.update(compression=[1]), "compression must be a mapping (got list)"),
    ("cfc", lambda r: r["task"]["output"].update(size=0), "task.output.size must be a size from 1 to"),
    ("cfc", lambda r: r["task"].update(dataset="cifar"), "task.dataset 'cifar' is not a known data set"),
    # sizes under the bound but beyond what the file holds: refused before a wiring is generated
    ("ltc", lambda r: r["arch"].update(hidden=10**6), "needs tensor 'rnn.sparsity_mask' of shape 1000000x1000000"),
    ("cfc-ncp", lambda r: r["arch"].update(hidden=10**6, ncp_layers=[600000, 300000, 100000]),
     "needs tensor 'rnn.cells.0.sparsity_mask' of shape 600000x*"),
    ("cfc", lambda r: r["arch"].update(hidden=10**6, backbone_widths=[10**6] * 3), "tensors do not fit"),
])
def test_the_record_is_checked_before_anything_is_built(arch, change, message, trained_xor, tmp_path):
    """Every arch key is one of its family's, with its type and bounds; sizes a file cannot
    hold are refused at once (an LTC of 10^7 units used to take minutes and gigabytes)."""
    import time

    bad = with_record(trained_xor[arch].read_bytes(), change)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.load_bytes(bad, source="bad.st")
    assert time.perf_counter() - start < 1.0


def test_a_vocabulary_that_inflates_beyond_its_words_is_refused():
    import zlib

    from cfctool.data import imdb

    words = [f"w{i}" for i in range(100)]
    assert imdb.vocab_from_tensor(imdb.vocab_to_tensor(words), 100) == words
    bomb = torch.frombuffer(bytearray(zlib.compress(b"a" * 10**8, 9)), dtype=torch.uint8)  # 100 MB of one word
    with pytest.raises(CheckpointError, match="inflates beyond 25,700 bytes"):
        imdb.vocab_from_tensor(bomb, 100)
    with pytest.raises(CheckpointError, match="has 100 words, more than the model's 99"):
        imdb.vocab_from_tensor(imdb.vocab_to_tensor(words), 99)
    with pytest.raises(CheckpointError, match="not UTF-8"):
        imdb.vocab_from_tensor(torch.frombuffer(bytearray(zlib.compress(b"\xff\xfe", 9)), dtype=torch.uint8), 100)
