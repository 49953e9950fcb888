"""`--stream`: a Parquet table read a row group at a time. The sequences it assembles across
row groups and shares are the table's, the statistics it fits are the training sequences',
the batches are preprocessed like the in-memory path's, and a run resumed in the middle of
an epoch ends with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pa = pytest.importorskip("pyarrow", reason="--stream reads Parquet with pyarrow (the tables extra)")
import pyarrow.parquet as pq  # noqa: E402

from cfctool import checkpoint  # noqa: E402
from cfctool.configs import resolve  # noqa: E402
from cfctool.data import stream  # noqa: E402
from cfctool.data.registry import load_dataset, load_split  # noqa: E402
from cfctool.errors import DataError  # noqa: E402
from cfctool.ops.train import train  # noqa: E402
from cfctool.runtime import World  # noqa: E402


def _table(path, n=60, seed=0, row_group=37, shuffle_rows=False):
    """n sequences of 3 to 14 steps, two features (one with gaps), a label per sequence."""
    rng = np.random.default_rng(seed)
    rows = {"id": [], "t": [], "a": [], "b": [], "y": []}
    truth = {}
    for i in range(n):
        length = int(rng.integers(3, 15))
        t = np.cumsum(rng.uniform(0.5, 2.0, length))
        a = rng.normal(5.0, 2.0, length)
        b = rng.normal(-1.0, 0.5, length)
        label = int(a.mean() > 5.0)
        truth[f"s{i:03d}"] = (t, a, b, label)
        rows["id"] += [f"s{i:03d}"] * length
        rows["t"] += t.tolist()
        rows["a"] += a.tolist()
        rows["b"] += b.tolist()
        rows["y"] += [label] * length
    table = pa.table(rows)
    if shuffle_rows:
        table = table.take(pa.array(rng.permutation(len(table))))
    pq.write_table(table, path, row_group_size=row_group)
    return truth


def _settings(path, **more):
    return {"data_file": str(path), "stream": True, "id_column": "id", "time_column": "t", "target_column": "y",
            "hidden": 8, "epochs": 2, "batch_size": 8, "threads": 1, "stream_buffer": 16, **more}


def test_sequences_cross_row_groups_and_shares_are_disjoint(tmp_path):
    truth = _table(tmp_path / "d.parquet", row_group=37)
    lay = stream.layout(tmp_path / "d.parquet", {"id_column": "id", "time_column": "t", "target_column": "y",
                                                 "feature_columns": None, "max_length": 100})
    got = {s.key: s for s in stream.sequences(lay)}
    assert list(got) == list(truth)
    for key, (t, a, b, label) in truth.items():
        assert np.array_equal(got[key].t, t) and np.array_equal(got[key].x, np.stack([a, b], 1))
        assert got[key].y == label
    for size in (2, 3, 5):  # every sequence in exactly one rank's share
        keys = []
        for rank in range(size):
            first, end, _ = stream.groups_of(lay.path, World(rank=rank, size=size, local_rank=rank))
            keys += [s.key for s in stream.sequences(lay, first, end)]
        assert sorted(keys) == sorted(truth), size


def test_the_fitted_statistics_are_the_training_sequences(tmp_path):
    truth = _table(tmp_path / "d.parquet")
    run = resolve("own", "cfc", overrides=_settings(tmp_path / "d.parquet"))
    data = load_dataset(run.data, seed=0)
    p = data.task["preprocessing"]
    splits = {k: stream.assign(k, 0, 0.2, run.data.val_fraction) for k in truth}
    train_keys = [k for k, s in splits.items() if s == "train"]
    steps = np.concatenate([np.stack(truth[k][1:3], 1) for k in train_keys])
    assert np.allclose(data.task_tensors["x_mean"].numpy(), steps.mean(0), atol=1e-5)
    assert np.allclose(data.task_tensors["x_std"].numpy(), steps.std(0), atol=1e-5)
    assert p["sequences"] == {name: sum(s == name for s in splits.values()) for name in ("train", "val", "test")}
    test = data.splits["test"].sample(1000)  # all of it, in file order
    keys = [k for k, s in splits.items() if s == "test"]
    assert len(test) == len(keys)
    k = keys[0]
    n = len(truth[k][0])
    want = (np.stack(truth[k][1:3], 1) - steps.mean(0)) / steps.std(0)
    assert np.allclose(test.x[0, :n].numpy(), want, atol=1e-5) and test.mask[0].sum() == n
    assert np.allclose(test.dt[0, :n].numpy(), np.r_[0.0, np.diff(truth[k][0])], atol=1e-6)
    assert int(test.y[0]) == truth[k][3]


def test_train_eval_and_a_resume_in_mid_epoch(tmp_path, cli):
    _table(tmp_path / "d.parquet", n=80)
    run = resolve("own", "cfc", overrides=_settings(tmp_path / "d.parquet", state_every=1e-6))
    whole = train(run)
    out = tmp_path / "m.st"

    def stop_in_epoch_two(p):
        if p.phase == "step" and p.epoch == 2 and p.step == whole.record["metrics"]["steps"] - 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(run, output=out, progress=stop_in_epoch_two)
    resumed = train(run, output=out, resume=True)
    for name, t in whole.tensors.items():
        assert torch.equal(t, resumed.tensors[name]), name
    checkpoint.save(whole, out)
    r = cli("eval", out, "--json")
    assert r.code == 0 and '"auc"' in r.out, r.err
    test = load_split(whole.task, "test", None, whole.task_tensors())
    assert len(test) == whole.task["preprocessing"]["sequences"]["test"]
    for args in (("quantize", out, "--scheme", "static", "-o", tmp_path / "q.st"),
                 ("export", out, "--format", "c", "-o", tmp_path / "c"),
                 ("prune", out, "--ratio", "0.5", "--finetune", "1", "-o", tmp_path / "p.st"),
                 ("bench", out, "--repeats", "1")):
        r = cli(*args)
        assert r.code == 0, (args, r.err)
    r = cli("distill", out, "--student", "cfc", "--hidden", "4", "--epochs", "1", "-o", tmp_path / "d.st")
    assert r.code == 1 and "does not take a --stream table" in r.err and not (tmp_path / "d.st").exists()
    pq.write_table(pa.table({"id": ["x"], "t": [0.0], "a": [1.0], "b": [1.0], "y": [0]}), tmp_path / "d.parquet")
    r = cli("eval", out)
    assert r.code == 1 and "the file changed since the checkpoint was made" in r.err


def test_rows_out_of_order_are_one_error(tmp_path):
    _table(tmp_path / "d.parquet", shuffle_rows=True)
    with pytest.raises(DataError, match=r"its id appeared earlier in the file; --stream needs the rows of a sequence "
                                        r"together|time does not increase"):
        load_dataset(resolve("own", "cfc", overrides=_settings(tmp_path / "d.parquet")).data)
    pq.write_table(pa.table({"id": ["a"], "t": [0.0], "y": [1]}), tmp_path / "e.parquet")
    with pytest.raises(DataError, match="no feature columns"):
        load_dataset(resolve("own", "cfc", overrides=_settings(tmp_path / "e.parquet")).data)
    with pytest.raises(DataError, match=r"1 training, 0 validation and 0 test sequences; give more sequences"):
        pq.write_table(pa.table({"id": ["a"], "t": [0.0], "f": [1.0], "y": [1]}), tmp_path / "one.parquet")
        load_dataset(resolve("own", "cfc", overrides=_settings(tmp_path / "one.parquet")).data)
    with pytest.raises(DataError, match="--stream reads a Parquet table"):
        load_dataset(resolve("own", "cfc", overrides=_settings(tmp_path / "e.csv")).data)
