"""Data modules on small slices of the real files, and a clear DataError for each defect."""

import gzip
import re
import shutil
import tarfile

import numpy as np
import pytest
import torch
from helpers import matches_its_declaration

from cfctool.configs import resolve
from cfctool.data import imdb, mnist, person_activity
from cfctool.data.registry import load_dataset
from cfctool.errors import DataError

PER_CLASS = 80


@pytest.fixture(scope="module")
def imdb_slice(tmp_path_factory):
    """An extracted aclImdb/ tree with PER_CLASS real reviews per split and label."""
    import os

    from conftest import SHARED_DATA

    source = os.environ.get("CFCTOOL_DATA", str(SHARED_DATA)) + "/imdb/aclImdb_v1_text.tar.gz"
    if not os.path.exists(source):
        pytest.skip(f"IMDB archive {source} not found (set CFCTOOL_DATA)")
    root = tmp_path_factory.mktemp("imdb_data")
    counts = {}
    pattern = re.compile(r"aclImdb/(train|test)/(pos|neg)/\d+_\d+\.txt$")
    with tarfile.open(source, "r:gz") as archive:
        for member in archive:
            m = pattern.search(member.name)
            if not m or counts.get(m.groups(), 0) >= PER_CLASS:
                continue
            counts[m.groups()] = counts.get(m.groups(), 0) + 1
            target = root / "imdb" / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
            if len(counts) == 4 and min(counts.values()) >= PER_CLASS:
                break
    return root


def test_tokenizer():
    assert imdb.tokenize("Great movie!<br /><br />I DIDN'T like the end.") == \
        ["great", "movie", "i", "didn't", "like", "the", "end"]


def test_imdb_slice_vocab_from_train_only(imdb_slice):
    run = resolve("imdb", "cfc", preset="seed", overrides={"data_dir": str(imdb_slice), "vocab_size": 500,
                                                           "seq_len": 50, "val_fraction": 0.0})
    data = load_dataset(run.data)
    train, test = data.splits["train"], data.splits["test"]
    assert len(train) == 2 * PER_CLASS and len(test) == 2 * PER_CLASS
    assert torch.bincount(train.y).tolist() == [PER_CLASS, PER_CLASS]
    vocab = imdb.vocab_from_tensor(data.task_tensors["vocab"])
    assert len(vocab) == 500 and data.task["input"]["vocab_size"] == 502
    # vocabulary is counted on training reviews only
    reviews = imdb.read_reviews(imdb_slice / "imdb" / "aclImdb", ("train", "test"))
    train_words = {w for _, _, t in reviews["train"] for w in imdb.tokenize(t)}
    assert set(vocab) <= train_words
    # each row keeps the last seq_len tokens, padded at the end under the mask
    label, _, text = reviews["train"][0]
    tokens = imdb.tokenize(text)[-50:]
    index = {w: i + 2 for i, w in enumerate(vocab)}
    row = train.x[0][train.mask[0]].tolist()
    assert row == [index.get(w, imdb.OOV) for w in tokens] and int(train.y[0]) == label
    assert torch.all(train.x[~train.mask] == imdb.PAD)


def test_imdb_eval_uses_the_stored_vocabulary(imdb_slice, tmp_path, monkeypatch, cli):
    out = tmp_path / "m.st"
    r = cli("train", "imdb", "--data", imdb_slice, "--vocab-size", "300", "--seq-len", "40", "--hidden", "8",
            "--backbone-units", "8", "--embedding-dim", "8", "--epochs", "1", "--val-fraction", "0", "-q", "-o", out)
    assert r.code == 0, r.err
    trained = cli("eval", out, "--data", imdb_slice, "--json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("CFCTOOL_DATA", str(imdb_slice))
    again = cli("eval", out, "--json")
    import json

    a, b = json.loads(trained.out), json.loads(again.out)
    assert a["samples"] == b["samples"] == 2 * PER_CLASS and a["accuracy"] == b["accuracy"] and a["loss"] == b["loss"]


def test_imdb_errors(tmp_path, data_dir):
    with pytest.raises(DataError, match="imdb.*not found"):
        imdb.find_source(tmp_path)
    with pytest.raises(DataError, match="--data DIR or set CFCTOOL_DATA"):
        imdb.find_source(None)
    broken = tmp_path / "imdb"
    broken.mkdir()
    with open(data_dir / "imdb" / "aclImdb_v1_text.tar.gz", "rb") as fh:
        (broken / "aclImdb_v1_text.tar.gz").write_bytes(fh.read(300_000))
    with pytest.raises(DataError, match="cannot read the IMDB archive"):
        imdb.read_reviews(broken / "aclImdb_v1_text.tar.gz", ("train",))


def test_person_activity_protocol(data_dir):
    run = resolve("person_activity", "cfc", overrides={"data_dir": str(data_dir)})
    data = load_dataset(run.data)
    p = data.task["preprocessing"]
    assert set(p["train_sessions"]).isdisjoint(p["test_sessions"])  # split by session: no leakage
    assert sorted(p["train_sessions"] + p["test_sessions"]) == ["A01", "A02", "A03"]
    train = data.splits["train"]
    assert train.x.shape[1:] == (50, 12) and train.y.shape[1] == 50
    assert int(train.y.max()) <= 6 and len(torch.unique(train.y[train.mask])) >= 5
    assert train.dt[train.mask].min() >= 0 and train.dt.max() > 0.1  # irregular, from the ticks
    assert abs(float(train.x[train.mask].mean())) < 0.2  # standardised with training statistics


def test_person_activity_binning_by_hand(tmp_path):
    f = tmp_path / "ConfLongDemo_JSI.txt"
    t0 = 633790226051280329
    f.write_text("\n".join([
        f"B01,010-000-024-033,{t0},d,1.0,2.0,3.0,walking",
        f"B01,010-000-024-033,{t0 + 20000},d,3.0,4.0,5.0,walking",      # same 10 ms bin: averaged
        f"B01,020-000-032-221,{t0 + 500000},d,7.0,7.0,7.0,lying down",  # 50 ms later
        f"C01,010-000-030-096,{t0},d,0.5,0.5,0.5,sitting",
    ]) + "\n")
    seqs = person_activity.read_sequences(f)
    bins, values, labels = seqs["B01"]
    assert bins.tolist() == [0, 5]
    np.testing.assert_allclose(values[0, :3], [2.0, 3.0, 4.0])
    np.testing.assert_allclose(values[1, :3], [2.0, 3.0, 4.0])  # ankle carried forward
    np.testing.assert_allclose(values[1, 9:12], [7.0, 7.0, 7.0])
    assert labels.tolist() == [0, 2]  # walking, lying (merged with lying down)


def test_person_activity_malformed_line(tmp_path):
    f = tmp_path / "ConfLongDemo_JSI.txt"
    f.write_text("A01,010-000-024-033,633790226051280329,d,1.0,2.0,3.0,walking\nA01,broken line\n")
    with pytest.raises(DataError, match=r"ConfLongDemo_JSI.txt:2: expected 8 comma-separated fields"):
        person_activity.read_sequences(f)
    f.write_text("A01,010-000-024-033,633790226051280329,d,1.0,2.0,3.0,dancing\n")
    with pytest.raises(DataError, match="unknown activity 'dancing'"):
        person_activity.read_sequences(f)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no ConfLongDemo_JSI.*under"):
        person_activity.find_source(empty)
    with pytest.raises(DataError, match="does not exist"):
        person_activity.find_source(tmp_path / "no_such_dir")


def test_mnist_views(data_dir):
    rows = load_dataset(resolve("mnist", "cfc", overrides={"data_dir": str(data_dir), "max_samples": 3000,
                                                           "val_fraction": 0.0}).data)
    x = rows.splits["train"].x
    assert x.shape == (3000, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert torch.bincount(rows.splits["train"].y, minlength=10).min() > 200
    pixels = mnist.load_split(mnist.task_record("pmnist"), "test", data_dir, limit=100)
    assert pixels.x.shape == (100, 784, 1)
    assert torch.equal(pixels.x.reshape(100, 28, 28), rows.splits["test"].x[:100])


def test_mnist_bad_files(tmp_path, data_dir):
    folder = tmp_path / "mnist"
    folder.mkdir()
    with gzip.open(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", "rb") as fh:
        raw = fh.read()
    (folder / "t10k-images-idx3-ubyte").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="truncated"):
        mnist.read_idx(folder / "t10k-images-idx3-ubyte", 3)
    (folder / "bad").write_bytes(b"\x12\x34\x56\x78" + raw[4:100])
    with pytest.raises(DataError, match="bad magic"):
        mnist.read_idx(folder / "bad", 3)
    shutil.copy(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", folder / "swapped.gz")
    with pytest.raises(DataError, match="expected 3 dimensions"):
        mnist.read_idx(folder / "swapped.gz", 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="'mnist' data not found.*official IDX"):
        mnist.load_split(mnist.task_record("mnist"), "train", tmp_path / "empty")


def test_person_activity_trains_from_the_cli(cli, tmp_path, data_dir):
    out = tmp_path / "pa.st"
    r = cli("train", "person_activity", "--data", data_dir, "--hidden", "16", "--epochs", "1", "--max-steps", "3",
            "-q", "-o", out)
    assert r.code == 0, r.err
    r = cli("eval", out, "--data", data_dir, "--json")
    import json

    report = json.loads(r.out)
    assert "top3_accuracy" in report and report["top3_accuracy"] >= report["accuracy"]


def test_shift_moves_each_training_image_by_its_own_draw(data_dir):
    """Every augmented image equals its original moved by one of the (2N+1)^2 offsets, zero
    filled (an independent roll-and-blank); the offsets vary; labels and the view stay."""
    data = load_dataset(resolve("pmnist", "ode-rnn", overrides={"data_dir": str(data_dir), "max_samples": 200,
                                                                "val_fraction": 0.0, "shift": 2}).data)
    batch = data.splits["train"].take(slice(0, 64))
    out = data.augment(batch, torch.Generator().manual_seed(0))
    assert out.x.shape == (64, 784, 1) and torch.equal(out.y, batch.y)

    def moved(img, dy, dx):
        shifted = torch.roll(img, (dy, dx), (0, 1))
        if dy > 0:
            shifted[:dy] = 0
        elif dy < 0:
            shifted[dy:] = 0
        if dx > 0:
            shifted[:, :dx] = 0
        elif dx < 0:
            shifted[:, dx:] = 0
        return shifted

    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    used = set()
    for original, augmented in zip(batch.x.reshape(-1, 28, 28), out.x.reshape(-1, 28, 28)):
        matches = [o for o in offsets if torch.equal(moved(original, *o), augmented)]
        assert len(matches) == 1
        used.add(matches[0])
    assert len(used) > 10
    assert load_dataset(resolve("pmnist", "ode-rnn", overrides={"data_dir": str(data_dir), "max_samples": 50}
                                ).data).augment is None
    with pytest.raises(Exception, match="shift moves images"):
        resolve("xor", "cfc", overrides={"shift": 1}).validate()


def test_training_with_shift_augments_only_training_batches_and_resumes_exactly(data_dir, tmp_path):
    from cfctool.ops.train import train

    settings = {"data_dir": str(data_dir), "max_samples": 256, "val_fraction": 0.25, "epochs": 2, "batch_size": 64,
                "hidden": 8, "backbone_units": 8, "threads": 1}
    run = resolve("mnist", "cfc", overrides={**settings, "shift": 1})
    seen = []
    original = mnist.random_shift
    try:
        mnist.random_shift = lambda batch, gen, most, side=28: seen.append(len(batch)) or original(batch, gen, most)
        whole = train(run)
    finally:
        mnist.random_shift = original
    assert seen == [64, 64, 64] * 2  # the 192 training rows, twice; validation and test untouched
    plain = train(resolve("mnist", "cfc", overrides=settings))
    assert not torch.equal(plain.tensors["rnn.cells.0.ff1.weight"], whole.tensors["rnn.cells.0.ff1.weight"])

    class Stop(Exception):
        pass

    def stop_after_one(p):
        if p.phase == "epoch" and p.epoch == 1:
            raise Stop

    out = tmp_path / "s.st"
    with pytest.raises(Stop):
        train(run, output=out, progress=stop_after_one)
    resumed = train(run, output=out, resume=True)
    for name, t in whole.tensors.items():
        assert torch.equal(t, resumed.tensors[name]), name


def test_an_imdb_checkpoint_with_a_vocabulary_bomb_is_refused_by_eval(imdb_slice, tmp_path, cli):
    """The stored vocabulary is inflated no further than the embedding's words can take (a
    crafted one that inflates to 2 GiB made eval run 36 s at 4.5 GB and report 0.5)."""
    import time
    import zlib

    import torch

    from cfctool.checkpoint import load, save

    out = tmp_path / "m.st"
    r = cli("train", "imdb", "--data", imdb_slice, "--vocab-size", "300", "--seq-len", "40", "--hidden", "8",
            "--backbone-units", "8", "--embedding-dim", "8", "--epochs", "1", "--val-fraction", "0", "-q", "-o", out)
    assert r.code == 0, r.err
    ckpt = load(out)
    bomb = torch.frombuffer(bytearray(zlib.compress(b"word\n" * (4 * 2**20), 9)), dtype=torch.uint8)  # 20 MiB
    save(ckpt.derive(tensors={**ckpt.tensors, "task.vocab": bomb.clone()}), tmp_path / "bomb.st")
    start = time.perf_counter()
    r = cli("eval", tmp_path / "bomb.st", "--data", imdb_slice)
    assert r.code == 1 and "the stored vocabulary inflates beyond" in r.err
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("encoding", ["dense", "event"])
def test_xor_tensors_are_the_declared_ones(encoding):
    from cfctool.data import xor

    run = resolve("xor", "cfc", overrides={"encoding": encoding, "train_size": 64, "test_size": 32})
    matches_its_declaration("xor", xor.load_split(xor.task_record(run.data), "test"))


def test_real_data_tensors_are_the_declared_ones(data_dir, imdb_slice):
    pa = load_dataset(resolve("person_activity", "cfc", overrides={"data_dir": str(data_dir)}).data)
    matches_its_declaration("person_activity", pa.splits["test"])
    for name in ("mnist", "pmnist"):
        matches_its_declaration(name, mnist.load_split(mnist.task_record(name), "test", data_dir, limit=16))
    run = resolve("imdb", "cfc", preset="seed", overrides={"data_dir": str(imdb_slice), "vocab_size": 500})
    matches_its_declaration("imdb", load_dataset(run.data).splits["test"])


def test_the_data_guide_tables_are_current():
    from conftest import REPO

    from cfctool.cli.reference import with_tensor_tables

    text = (REPO / "docs/guide/data.md").read_text()
    assert text == with_tensor_tables(text), "docs/guide/data.md is out of date: run `make cli-reference`"
    assert "| `dt` | (N, T) | float32 |" in text and "### `pmnist`" in text


def test_an_idx_file_is_read_with_a_bound(tmp_path, monkeypatch):
    """A gzip that inflates beyond the bound (a bomb) and a FIFO in an IDX file's place are
    one DataError each, not all of memory or a hang."""
    monkeypatch.setattr(mnist, "IDX_LIMIT", 1000)
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(5000)))
    with pytest.raises(DataError, match="inflates to more than 1,000 bytes"):
        mnist.read_idx(bomb, 3)
    import os

    fifo = tmp_path / "fifo-idx3-ubyte"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="is not a regular file"):
        mnist.read_idx(fifo, 3)
