"""Your own data as arrays (`cfctool train own --data-file F.npz`): the same tensors as a
built-in task when its data are written out, preprocessing fitted on the training split and
recorded, every command on the result, and one error line naming the file, the sequence
and the feature for each defect."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from helpers import matches_its_declaration

from cfctool import checkpoint
from cfctool.configs import resolve
from cfctool.data import xor
from cfctool.data.registry import load_dataset, load_split
from cfctool.errors import ConfigError, DataError


def _xor_split(split: str, encoding: str = "event"):
    run = resolve("xor", "cfc", overrides={"encoding": encoding, "train_size": 300, "test_size": 100})
    return xor.load_split(xor.task_record(run.data), split)


def _save(path, split) -> None:
    np.savez(path, x=split.x.numpy(), dt=split.dt.numpy(), mask=split.mask.numpy(), y=split.y.numpy())


def _load(**settings):
    run = resolve("own", "cfc", overrides={"hidden": 8, "epochs": 1, "batch_size": 64, **settings})
    return run, load_dataset(run.data, seed=0)


def test_xor_written_as_arrays_loads_as_the_same_tensors(tmp_path):
    """XOR re-expressed through the generic loader: the same steps, time and labels; the
    features are the same up to the recorded standardisation."""
    train, test = _xor_split("train"), _xor_split("test")
    _save(tmp_path / "train.npz", train)
    _save(tmp_path / "test.npz", test)
    _, data = _load(data_file=str(tmp_path / "train.npz"), test_file=str(tmp_path / "test.npz"), val_fraction=0.0)
    got = data.splits["test"]
    matches_its_declaration("own", got)
    assert torch.equal(got.mask, test.mask) and torch.equal(got.y, test.y)
    assert torch.equal(got.dt[got.mask], test.dt[test.mask])
    mean, std = data.task_tensors["x_mean"], data.task_tensors["x_std"]
    assert torch.allclose((got.x * std + mean)[got.mask], test.x[test.mask], atol=1e-5)
    steps = train.x[train.mask]  # the statistics are the training steps' own, computed independently
    assert torch.allclose(mean, steps.mean(0), atol=1e-5) and torch.allclose(std, steps.std(0, unbiased=False), atol=1e-5)
    assert data.task["output"] == {"kind": "classification", "size": 2, "per_step": False, "classes": ["0", "1"],
                                   "metrics": ["accuracy", "auc"]}


def test_time_becomes_dt_and_labels_map_in_sorted_order(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    t = np.array([[0.0, 0.5, 2.0], [1.0, 1.1, 1.3], [0.0, 3.0, 9.0], [5.0, 6.0, 0.0]])
    mask = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=bool)
    np.savez(tmp_path / "d.npz", x=x, t=t, mask=mask, y=np.array(["b", "a", "c", "a"]))
    np.savez(tmp_path / "t.npz", x=x[:2], t=t[:2], y=np.array(["c", "b"]))
    _, data = _load(data_file=str(tmp_path / "d.npz"), test_file=str(tmp_path / "t.npz"), val_fraction=0.0)
    train = data.splits["train"]
    assert data.task["output"]["classes"] == ["a", "b", "c"] and train.y.tolist() == [1, 0, 2, 0]
    assert torch.allclose(train.dt, torch.tensor([[0, 0.5, 1.5], [0, 0.1, 0.2], [0, 0, 9.0], [0, 1.0, 0]]))
    assert data.task["preprocessing"]["dt"] == "from t"
    _, data = _load(data_file=str(tmp_path / "d.npz"), test_file=str(tmp_path / "t.npz"), time_unit="hours")
    assert data.task["preprocessing"]["dt"] == "from t, in hours"


def test_regression_targets_are_standardised_and_recorded(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.normal(50.0, 10.0, size=40)
    np.savez(tmp_path / "r.npz", x=rng.normal(size=(40, 5, 2)), y=y)
    _, data = _load(data_file=str(tmp_path / "r.npz"), target="regression", val_fraction=0.0)
    p = data.task["preprocessing"]
    kept = data.splits["train"].y.squeeze(-1).double() * p["y_std"] + p["y_mean"]
    assert data.splits["train"].y.shape == (32, 1)
    assert 40 < p["y_mean"] < 60 and 5 < p["y_std"] < 15
    assert set(np.round(kept.numpy(), 4)) <= set(np.round(y, 4))
    assert data.task["output"] == {"kind": "regression", "size": 1, "per_step": False, "scale": [p["y_std"]]}


def test_a_given_validation_file_replaces_the_hold_out(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 5, 2)), y=np.arange(40) % 2)
    np.savez(tmp_path / "v.npz", x=rng.normal(size=(7, 5, 2)) + 10, y=np.arange(7) % 2)
    _, data = _load(data_file=str(tmp_path / "d.npz"), val_file=str(tmp_path / "v.npz"), val_fraction=0.1)
    assert len(data.splits["val"]) == 7 and len(data.splits["train"]) == 32  # nothing held out of training
    assert float(data.splits["val"].x.mean()) > 5  # the file's rows, standardised with the training statistics
    assert data.task["preprocessing"]["val_file"]["sha256"]


def test_the_split_is_by_sequence_seeded_and_recorded(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(100 * 2, dtype=np.float32).reshape(100, 2, 1),
             y=np.arange(100) % 2)
    _, a = _load(data_file=str(tmp_path / "d.npz"), val_fraction=0.0)
    _, b = _load(data_file=str(tmp_path / "d.npz"), val_fraction=0.0, split_seed=1)
    first = lambda s: set((s.x[:, 0, 0] * 1000).round().tolist())  # noqa: E731 (each sequence's first value)
    assert len(a.splits["test"]) == 20 and first(a.splits["test"]).isdisjoint(first(a.splits["train"]))
    assert first(a.splits["test"]) != first(b.splits["test"])
    again = load_split(a.task, "test", None, a.task_tensors)  # eval's path: the recorded file, split and statistics
    assert torch.equal(again.x, a.splits["test"].x) and torch.equal(again.y, a.splits["test"].y)


@pytest.mark.parametrize("arrays_,message", [
    ({"x": np.zeros((3, 4, 2))}, "no 'y' array"),
    ({"x": np.zeros((3, 4, 2)), "y": np.zeros(3), "z": np.zeros(3)}, "unknown arrays ['z']"),
    ({"x": np.zeros((3, 4)), "y": np.zeros(3)}, "x must be (N, T, F) floats"),
    ({"x": np.where(np.arange(24).reshape(3, 4, 2) == 13, np.nan, 0.0), "y": np.zeros(3)},
     "x is NaN or infinite at sequence 1, step 2, feature 1"),
    ({"x": np.zeros((3, 4, 2)), "y": np.zeros(3), "mask": np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])},
     "sequence 1 has no valid step"),
    ({"x": np.zeros((3, 4, 2)), "y": np.zeros(3), "t": np.array([[0, 1, 2, 3], [0, 1, 1, 2], [0, 1, 2, 3.0]])},
     "time does not increase at sequence 1, step 2"),
    ({"x": np.zeros((3, 4, 2)), "y": np.zeros(3), "t": np.zeros((3, 4)), "dt": np.ones((3, 4))}, "not both"),
    ({"x": np.zeros((3, 4, 2)), "y": np.zeros(3), "mask": np.ones((3, 5), dtype=bool)}, "mask must be (N, T)"),
    ({"x": np.zeros((3, 4, 2)), "y": np.array([0.5, 1.0, 0.0])}, "needs integer or string labels"),
    ({"x": np.zeros((3, 4, 2)), "y": np.zeros((3, 2))}, "y must be (N,) = (3,)"),
])
def test_bad_data_is_one_error_naming_the_place(arrays_, message, tmp_path):
    np.savez(tmp_path / "bad.npz", **arrays_)
    with pytest.raises(DataError, match=re.escape(message)):
        _load(data_file=str(tmp_path / "bad.npz"))


def test_other_defects_of_files_and_settings(tmp_path, cli):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"x.npy: x must be \(N, T, F\) floats"):  # a .npy is x alone
        _load(data_file=str(tmp_path / "x.npy"), target="forecast")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(DataError, match="give a .npz or .safetensors file"):
        _load(data_file=str(tmp_path / "x.txt"))
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((3, 1)), np.zeros((5, 1))
    np.savez(tmp_path / "ragged.npz", x=ragged, y=np.zeros(2))
    with pytest.raises(DataError, match=r"ragged.npz: an array holds Python objects \(a ragged list of sequences\?\)"):
        _load(data_file=str(tmp_path / "ragged.npz"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="not a readable .npz file"):
        _load(data_file=str(tmp_path / "broken.npz"))
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 3, 1)), y=np.arange(10) % 2)
    np.savez(tmp_path / "t.npz", x=np.zeros((2, 3, 1)), y=np.array([0, 7]))
    with pytest.raises(DataError, match="label '7' was not among the training labels"):
        _load(data_file=str(tmp_path / "d.npz"), test_file=str(tmp_path / "t.npz"))
    with pytest.raises(ConfigError, match="needs --data-file"):
        resolve("own", "cfc").validate()
    r = cli("train", "xor", "--data-file", tmp_path / "d.npz", "-o", tmp_path / "o.st")
    assert r.code == 2 and "--data-file names your own data" in r.err


@pytest.mark.slow
def test_every_command_on_your_own_arrays_and_a_changed_file_is_refused(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("CFCTOOL_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, t=np.cumsum(rng.uniform(0.1, 1.0, size=(300, 12)), 1),
             y=np.where(x[:, :, 0].mean(1) > 0, "up", "down"))
    out = tmp_path / "m.st"
    r = cli("train", "own", "--data-file", tmp_path / "d.npz", "--hidden", "16", "--epochs", "4", "-o", out)
    assert r.code == 0, r.err
    ckpt = checkpoint.load(out)
    assert ckpt.task["output"]["classes"] == ["down", "up"] and "x_mean" in ckpt.task_tensors()
    ev = cli("eval", out, "--json")
    assert ev.code == 0 and '"accuracy"' in ev.out and '"auc"' in ev.out, ev.err
    for args in (("quantize", out, "--scheme", "static", "-o", tmp_path / "q.st"),
                 ("prune", out, "--ratio", "0.5", "--finetune", "1", "-o", tmp_path / "p.st"),
                 ("prune", out, "--ratio", "0.9", "--max-drop", "5", "-o", tmp_path / "b.st"),
                 ("distill", out, "--student", "cfc-ncp", "--hidden", "8", "--epochs", "1", "-o", tmp_path / "d.st"),
                 ("reduce", out, "--method", "svd", "--dim", "8", "-o", tmp_path / "r.st"),
                 ("export", tmp_path / "q.st", "--format", "c", "-o", tmp_path / "c"),
                 ("info", tmp_path / "d.st"), ("report", out, tmp_path / "p.st", tmp_path / "d.st"),
                 ("bench", out, "--repeats", "1")):
        r = cli(*args)
        assert r.code == 0, (args, r.err)
    np.savez(tmp_path / "d.npz", x=x + 1, y=np.where(x[:, :, 0].mean(1) > 0, "up", "down"))
    r = cli("eval", out)
    assert r.code == 1 and "the file changed since the checkpoint was made" in r.err


# ----------------------------------------------------------------------------- long tables

pa = pytest.importorskip("pyarrow", reason="long tables need pyarrow (the tables extra)")


def _csv(path, text: str):
    path.write_text(text.strip() + "\n")
    return path


def test_a_long_table_is_the_same_as_its_arrays(tmp_path):
    """Rows of (id, time, features, target) in any order give the arrays written directly."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 6, size=30)
    x = np.zeros((30, 5, 2))
    t = np.zeros((30, 5))
    mask = np.zeros((30, 5), dtype=bool)
    rows = []
    for i, n in enumerate(lengths):
        times = np.cumsum(rng.uniform(0.5, 2.0, size=n))
        for k in range(n):
            x[i, k] = rng.normal(size=2).round(3)
            t[i, k], mask[i, k] = times[k].round(3), True
            rows.append(f"s{i},{t[i, k]},{x[i, k, 0]},{x[i, k, 1]},{'yes' if i % 3 else 'no'}")
    rng.shuffle(rows)
    _csv(tmp_path / "d.csv", "seq,time,a,b,label\n" + "\n".join(rows))
    np.savez(tmp_path / "d.npz", x=x, t=t, mask=mask, y=np.array(["yes" if i % 3 else "no" for i in range(30)]))
    settings = {"val_fraction": 0.0, "test_fraction": 0.25}
    _, table = _load(data_file=str(tmp_path / "d.csv"), id_column="seq", time_column="time", target_column="label",
                     **settings)
    _, direct = _load(data_file=str(tmp_path / "d.npz"), **settings)
    for split in ("train", "test"):
        a, b = table.splits[split], direct.splits[split]
        assert a.x.shape[0] == b.x.shape[0]
    assert table.task["preprocessing"]["feature_names"] == ["a", "b"]
    assert table.task["output"]["classes"] == ["no", "yes"]
    whole_a = torch.cat([table.splits["train"].dt[table.splits["train"].mask], table.splits["test"].dt[table.splits["test"].mask]])
    whole_b = torch.cat([direct.splits["train"].dt[direct.splits["train"].mask], direct.splits["test"].dt[direct.splits["test"].mask]])
    assert torch.allclose(whole_a.sort().values, whole_b.sort().values, atol=1e-5)  # the same gaps, in id order
    matches_its_declaration("own", table.splits["test"])


def test_the_narrow_form_with_a_labels_table(tmp_path):
    """(id, time, variable, value) rows, each variable at its own times, labels in a second
    table (PhysioNet 2012's shape): missing values are a mask input, not zeros."""
    _csv(tmp_path / "obs.csv", """
RecordID,Time,Parameter,Value
1,0,HR,80
1,0,Temp,37.1
1,30,HR,85
2,0,HR,60
2,60,Temp,38.5
2,90,HR,70
3,10,HR,90
3,20,HR,95
4,5,Temp,36.0
4,6,HR,100
""")
    _csv(tmp_path / "outcomes.csv", "RecordID,death\n1,0\n2,1\n3,0\n4,1\n")
    _, data = _load(data_file=str(tmp_path / "obs.csv"), id_column="RecordID", time_column="Time",
                    variable_column="Parameter", value_column="Value", labels_file=str(tmp_path / "outcomes.csv"),
                    target_column="death", test_fraction=0.25, val_fraction=0.0)
    p = data.task["preprocessing"]
    assert p["feature_names"] == ["HR", "Temp"] and p["missing"] == "indicator"
    assert data.task["input"]["size"] == 4  # HR, Temp, and whether each was observed
    assert sum(len(split) for split in data.splits.values()) == 4
    from cfctool.data.own import _split_rows

    train_rows, test_rows = _split_rows(tmp_path, 4, 0.25, 0)  # the recorded split of the ids 1 ... 4, in order
    name, rows = ("train", train_rows) if 1 in train_rows else ("test", test_rows)
    split, row = data.splits[name], list(rows).index(1)  # RecordID 2
    assert split.mask[row].tolist()[:3] == [True, True, True] and split.dt[row, :3].tolist() == [0.0, 60.0, 30.0]
    assert split.x[row, :3, 2:].tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]  # HR, Temp observed at 0, 60, 90
    assert split.x[row, 0, 1].item() == 0.0  # the missing Temp is 0 (its mean), marked unobserved
    assert torch.equal(load_split(data.task, "test", None, data.task_tensors).x, data.splits["test"].x)
    _csv(tmp_path / "outcomes.csv", "RecordID,death\n1,1\n2,1\n3,0\n4,1\n")  # the labels table, changed
    with pytest.raises(DataError, match="outcomes.csv: the file changed since the checkpoint was made"):
        load_split(data.task, "test", None, data.task_tensors)


def test_per_step_targets_and_parquet(tmp_path):
    import pyarrow.parquet as pq

    table = pa.table({"id": [1, 1, 1, 2, 2, 3, 3, 3, 4, 4], "v": [0.1, 0.2, 0.3, 1.0, 1.1, -1.0, -1.2, -1.1, 2.0, 2.1],
                      "y": [0, 0, 1, 1, 1, 0, 0, 0, 1, 0]})
    pq.write_table(table, tmp_path / "d.parquet")
    _, data = _load(data_file=str(tmp_path / "d.parquet"), per_step=True, test_fraction=0.25, val_fraction=0.0)
    assert data.task["output"]["per_step"] and data.splits["train"].y.shape[1] == 3


@pytest.mark.parametrize("text,settings,message", [
    ('id,a,y\n1,"0.5,1\n2,0.3,1\n', {}, "not a readable CSV table"),
    ("id,a,y\n1,0.5,1\n2,0.3,0\n", {"feature_columns": "a,b"}, "no column 'b' (a feature)"),
    ("seq,a,y\n1,0.5,1\n2,0.3,0\n", {}, "no column 'id' (the sequence id)"),
    ("id,a,y\n1,0.5,1\n1,high,1\n2,0.3,0\n", {}, "column 'a' (a feature) holds 'high' at line 3"),
    ("id,t,a,y\n1,0,0.5,1\n1,0,0.6,1\n2,1,0.3,0\n", {"time_column": "t"}, "has two rows at time 0"),
    ("id,a,y\n1,0.5,1\n1,0.6,0\n2,0.3,0\n", {}, "varies within sequence '1'"),
    ("id,a,y\n1,0.5,1\n1,0.6,1\n1,0.7,1\n2,0.3,0\n", {"max_length": 2}, "has 3 steps, more than --max-length 2"),
    ("id,a,y\n1,0.5,1\n2,,0\n3,0.1,1\n", {}, "x is NaN or infinite at sequence '2', step 0, feature 0 ('a')"),
])
def test_bad_tables_are_one_error_naming_the_place(text, settings, message, tmp_path):
    _csv(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=re.escape(message)):
        _load(data_file=str(tmp_path / "bad.csv"), **settings)


def test_a_label_missing_from_the_labels_table(tmp_path):
    _csv(tmp_path / "obs.csv", "id,t,var,value\n1,0,a,1\n2,0,a,2\n3,0,a,3\n")
    _csv(tmp_path / "labels.csv", "id,y\n1,0\n3,1\n")
    with pytest.raises(DataError, match="no 'y' for sequence '2'"):
        _load(data_file=str(tmp_path / "obs.csv"), time_column="t", variable_column="var",
              labels_file=str(tmp_path / "labels.csv"))


def test_auc_equals_counting_every_pair():
    from cfctool.metrics import auc

    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.integers(0, 20, size=300).astype(np.float32))  # many ties
    labels = torch.tensor(rng.random(300) < 0.15)
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).double().sum() + 0.5 * (pos[:, None] == neg[None, :]).double().sum()
    assert auc(scores, labels) == pytest.approx(float(pairs / (len(pos) * len(neg))), abs=1e-12)
    assert auc(scores, torch.zeros(300, dtype=torch.bool)) is None


def test_a_folder_of_arrays_forecasts_its_next_steps(tmp_path, cli):
    rng = np.random.default_rng(0)
    (tmp_path / "runs").mkdir()
    lengths = [12, 7, 9, 15, 10, 8, 11, 9, 14, 6]
    for i, n in enumerate(lengths):
        np.save(tmp_path / "runs" / f"r{i:02d}.npy", rng.normal(size=(n, 3)))
    stacked = np.stack([rng.normal(size=(6, 3)) for _ in range(8)])
    np.save(tmp_path / "one.npy", stacked)  # one (N, T, F) array: x alone
    _, one = _load(data_file=str(tmp_path / "one.npy"), target="forecast", val_fraction=0.0)
    assert one.task["output"]["size"] == 3 and len(one.splits["test"]) == 2
    _, data = _load(data_file=str(tmp_path / "runs"), target="forecast", val_fraction=0.0)
    test = data.splits["test"]
    assert data.task["output"] == {"kind": "regression", "size": 3, "per_step": True,
                                   "scale": data.task_tensors["x_std"].double().tolist()}
    assert test.x.shape[1:] == (14, 3) and test.y.shape == test.x.shape  # T - 1 steps: each predicts its next
    assert torch.equal(test.y[:, :-1][test.mask[:, 1:]], test.x[:, 1:][test.mask[:, 1:]])
    out = tmp_path / "f.st"
    r = cli("train", "own", "--data-file", tmp_path / "runs", "--target", "forecast", "--hidden", "8", "--epochs", "1",
            "-o", out)
    assert r.code == 0, r.err
    assert cli("eval", out).code == 0
    np.save(tmp_path / "runs" / "r00.npy", rng.normal(size=(12, 3)))
    r = cli("eval", out)
    assert r.code == 1 and "changed since the checkpoint was made" in r.err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["indicator", "forecast"])
def test_the_exports_read_raw_values_and_write_the_datas_units(kind, tmp_path, monkeypatch):
    """The preprocessing round trip into C and ONNX: the exported model is fed the file's own
    values (a missing one as 0 beside its 0 flag) and must give the model's outputs on the
    standardised split, mapped back to the data's units with statistics computed here."""
    from cfctool.data import raw_io
    from cfctool.engines.c_source import generate
    from cfctool.engines.native import CEngine, compiler
    from cfctool.families.build import model_from_checkpoint
    from cfctool.ops.export import export_c
    from cfctool.ops.train import train

    try:
        compiler()
    except Exception:
        pytest.skip("needs a C compiler")
    monkeypatch.setenv("CFCTOOL_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    if kind == "indicator":  # scales far from 1 and a third of the values missing
        x = rng.normal(size=(120, 8, 3)) * np.array([50.0, 1.0, 0.01]) + np.array([200.0, -3.0, 1.0])
        x[rng.random(x.shape) < 0.3] = np.nan
        np.savez(tmp_path / "d.npz", x=x, y=np.where(np.nan_to_num(x[:, :, 1], nan=-3).mean(1) > -3, "a", "b"))
        settings = {"missing": "indicator"}
    else:
        x = np.cumsum(rng.normal(size=(120, 8, 2)) * np.array([3.0, 0.1]) + np.array([10.0, 0.0]), 1)
        np.savez(tmp_path / "d.npz", x=x)
        settings = {"target": "forecast"}
    ckpt = train(resolve("own", "cfc", overrides={"data_file": str(tmp_path / "d.npz"), "hidden": 8, "epochs": 1,
                                                  **settings}))
    model = model_from_checkpoint(ckpt).eval()
    test = load_split(ckpt.task, "test", None, ckpt.task_tensors())
    held = np.sort(np.random.default_rng(0).permutation(120)[:24])  # the default split: seed 0, a fifth
    rest = np.delete(x, held, 0).reshape(-1, x.shape[2])
    mean, std = np.nanmean(rest, 0), np.nanstd(rest, 0)
    raw = x[held]
    if kind == "indicator":
        raw = np.concatenate([np.nan_to_num(raw, nan=0.0), (~np.isnan(raw)).astype(float)], -1)
    else:
        raw = raw[:, :-1]  # a forecast reads steps 1 .. T-1
    raw = torch.tensor(raw, dtype=torch.float32)
    with torch.no_grad():
        want = model(test.x, test.dt, test.mask).numpy()
    if kind == "forecast":
        want = want * std + mean
    close = lambda got: np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())  # noqa: E731
    info = export_c(ckpt, tmp_path / "c", test, name="m")
    assert info["verified"] and "folded into the first product" in (tmp_path / "c" / "m.h").read_text()
    src = generate(ckpt, model, "m", dt_input=False, raw_io=raw_io.of(ckpt.task, ckpt.task_tensors()))
    assert close(CEngine(src)(raw, None, test.mask).numpy())
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        from cfctool.ops.export import export_onnx

        export_onnx(ckpt, tmp_path / "m.onnx", test)
        session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
        feeds = {"x": raw.numpy(), "dt": test.dt.numpy(), "mask": test.mask.numpy()}
        got = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
        assert close(got)


@pytest.mark.slow
def test_regression_is_judged_by_its_error_in_eval_budget_and_report(tmp_path, cli):
    """A forecast: eval gives MSE and MAE in standardised and in the data's units (checked
    against the model's outputs here), --max-drop budgets percent more MSE, report leads with it."""
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(150, 10, 2)) * np.array([4.0, 0.5]), 1)
    np.savez(tmp_path / "w.npz", x=x)
    out = tmp_path / "f.st"
    r = cli("train", "own", "--data-file", tmp_path / "w.npz", "--target", "forecast", "--hidden", "8", "--epochs", "3",
            "-o", out)
    assert r.code == 0, r.err
    ckpt = checkpoint.load(out)
    from cfctool.families.build import model_from_checkpoint

    test = load_split(ckpt.task, "test", None, ckpt.task_tensors())
    with torch.no_grad():
        err = (model_from_checkpoint(ckpt).eval()(test.x, test.dt, test.mask) - test.y)[test.mask].double()
    scale = torch.tensor(ckpt.task["output"]["scale"], dtype=torch.float64)
    r = cli("eval", out, "--json")
    assert r.code == 0, r.err
    import json

    ev = json.loads(r.out)
    assert ev["mse"] == pytest.approx(float(err.square().mean()), rel=1e-5) and ev["loss"] == pytest.approx(ev["mse"])
    assert ev["mae"] == pytest.approx(float(err.abs().mean()), rel=1e-5)
    assert ev["mse_units"] == pytest.approx(float((err * scale).square().mean()), rel=1e-5)
    assert ev["mae_units"] == pytest.approx(float((err * scale).abs().mean()), rel=1e-5)
    (tmp_path / "f.eval.json").write_text(r.out)
    pruned = tmp_path / "p.st"
    r = cli("prune", out, "--ratio", "0.9", "--max-drop", "5", "-o", pruned)
    assert r.code == 0, r.err
    assert "budget: validation mse" in r.err and "at most 5% higher" in r.err
    search = checkpoint.load(pruned).record["compression"]["pruning"]["budget"]
    assert search["metric"] == "mse" and search["max_drop_percent"] == 5
    chosen = next(t for t in search["candidates"] if t["setting"] == search["chosen"])
    assert chosen["val_mse"] <= 1.05 * search["baseline_val_mse"] + 1e-9
    assert all(t["within"] == (t["val_mse"] <= 1.05 * search["baseline_val_mse"] + 1e-9) for t in search["candidates"])
    r = cli("report", out, pruned, "-o", tmp_path / "report.md")
    assert r.code == 0, r.err
    text = (tmp_path / "report.md").read_text()
    assert "| checkpoint | arch | history | mse |" in text and f"| {ev['mse']:.4f} |" in text
    assert "| candidate | val mse |" in text and "within 5% of validation mse" in text


def test_a_description_travels_with_its_data(tmp_path, cli, monkeypatch):
    """`cfctool train DESCRIPTION.yaml`: data settings in YAML, paths relative to it (the
    folder moves as a whole), flags above it; a data file as DATASET means `own`."""
    folder = tmp_path / "study"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.savez(folder / "d.npz", x=rng.normal(size=(40, 5, 2)), y=rng.normal(size=40))
    (folder / "data.yaml").write_text("data_file: d.npz\ntarget: regression\nsplit_seed: 3\n")
    moved = tmp_path / "moved"
    folder.rename(moved)
    monkeypatch.chdir(tmp_path)
    r = cli("train", moved / "data.yaml", "--split-seed", "4", "--print-config")
    assert r.code == 0, r.err
    import yaml

    printed = yaml.safe_load(r.out)
    assert printed["data"]["data_file"] == str(moved / "d.npz") and printed["data"]["target"] == "regression"
    assert printed["data"]["split_seed"] == 4 and printed["data"]["dataset"] == "own"
    r = cli("train", moved / "data.yaml", "--hidden", "8", "--epochs", "1")
    assert r.code == 0, r.err
    assert (tmp_path / "data-cfc.st").is_file() and checkpoint.load(tmp_path / "data-cfc.st").task["output"]["kind"] \
        == "regression"
    r = cli("train", moved / "d.npz", "--target", "regression", "--print-config")
    assert r.code == 0 and yaml.safe_load(r.out)["data"]["data_file"] == str(moved / "d.npz")
    (moved / "bad.yaml").write_text("data_file: d.npz\nepochs: 3\n")
    r = cli("train", moved / "bad.yaml")
    assert r.code == 2 and "a data-set description holds data settings only; 'epochs' is a train setting" in r.err
    r = cli("train", "walker")
    assert r.code == 2 and "unknown data set 'walker'" in r.err


def test_token_ids_are_read_as_given(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 30, size=(50, 6))
    mask = np.ones((50, 6), dtype=bool)
    mask[:10, 4:] = False
    np.savez(tmp_path / "t.npz", x=x, mask=mask, y=(x == 3).any(1).astype(int))
    _, data = _load(data_file=str(tmp_path / "t.npz"), val_fraction=0.0)
    assert data.task["input"] == {"kind": "tokens", "vocab_size": int(x.max()) + 1} and not data.task_tensors
    test, held = data.splits["test"], np.sort(np.random.default_rng(0).permutation(50)[:10])
    assert test.x.dtype == torch.int64 and torch.equal(test.x, torch.from_numpy(np.where(mask, x, 0)[held]))
    np.savez(tmp_path / "n.npz", x=np.where(np.arange(6) == 2, -4, x), y=np.zeros(50, dtype=int))
    with pytest.raises(DataError, match=r"n.npz: token id -4 at sequence 0, step 2: ids are >= 0"):
        _load(data_file=str(tmp_path / "n.npz"))
    np.savez(tmp_path / "f.npz", x=rng.normal(size=(5, 6, 1)), y=np.zeros(5, dtype=int))
    with pytest.raises(DataError, match=r"f.npz: x is 1 feature, .*t.npz has token ids"):
        _load(data_file=str(tmp_path / "t.npz"), test_file=str(tmp_path / "f.npz"))


def test_several_numbers_per_step_are_one_regression(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(30, 4, 3)) * np.array([1.0, 10.0, 100.0]) + np.array([0.0, 5.0, -50.0])
    np.savez(tmp_path / "k.npz", x=rng.normal(size=(30, 4, 2)), y=y)
    _, data = _load(data_file=str(tmp_path / "k.npz"), target="regression", val_fraction=0.0)
    p, out = data.task["preprocessing"], data.task["output"]
    held = np.sort(np.random.default_rng(0).permutation(30)[:6])
    rest = np.delete(y, held, 0).reshape(-1, 3)
    assert out["size"] == 3 and out["per_step"] and np.allclose(out["scale"], rest.std(0))
    assert np.allclose(p["y_mean"], rest.mean(0)) and data.splits["test"].y.shape == (6, 4, 3)
    assert np.allclose(data.splits["test"].y.numpy() * rest.std(0) + rest.mean(0), y[held], atol=1e-4)
