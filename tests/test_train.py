import pytest
import torch

from cfctool.configs import resolve
from cfctool.errors import TrainingError
from cfctool.ops.train import train
from helpers import tiny_run


def test_default_xor_preset_learns_parity():
    """The acceptance run of the quick preset (a few seconds on 2 cores)."""
    ckpt = train(resolve("xor", "cfc", overrides={"threads": 2}))
    assert ckpt.record["metrics"]["accuracy"] >= 0.95
    assert ckpt.record["metrics"]["samples"] == 2000


@pytest.mark.parametrize("arch", ["cfc", "cfc-ncp", "ltc"])
def test_same_seed_same_bits(arch):
    a = train(tiny_run(arch, max_steps=3, threads=1))
    b = train(tiny_run(arch, max_steps=3, threads=1))
    c = train(tiny_run(arch, max_steps=3, threads=1, seed=1))
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert any(not torch.equal(a.tensors[k], c.tensors[k]) for k in a.tensors if "mask" not in k)


def test_progress_events_and_step_limit():
    events = []
    ckpt = train(tiny_run("cfc", epochs=3, max_steps=5), progress=events.append)
    steps = [e for e in events if e.phase == "step"]
    assert [e.step for e in steps] == [1, 2, 3, 4, 5] and ckpt.record["metrics"]["steps"] == 5


def test_nan_loss_stops_training_with_a_clear_error(monkeypatch):
    import cfctool.data.xor as xor

    real = xor.generate

    def poisoned(task, split, n=None):
        s = real(task, split, n)
        s.x[0, 0, 0] = float("nan")
        return s

    monkeypatch.setattr(xor, "generate", poisoned)
    with pytest.raises(TrainingError, match="loss became nan.*Lower --lr"):
        train(tiny_run("cfc", batch_size=256))


def test_best_epoch_weights_are_kept():
    ckpt = train(tiny_run("cfc", epochs=3))
    m = ckpt.record["metrics"]
    best = max(m["epochs"], key=lambda e: e["val_accuracy"])
    assert m["best_epoch"] == best["epoch"]
