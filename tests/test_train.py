import pytest
import torch
from helpers import tiny_run

from cfctool.configs import resolve
from cfctool.errors import TrainingError
from cfctool.ops.train import train


@pytest.mark.slow
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


def test_warm_start_from_a_checkpoint(tmp_path):
    from cfctool.checkpoint import load, save
    from cfctool.errors import CheckpointError, ConfigError

    first = tmp_path / "first.st"
    save(train(tiny_run("cfc", epochs=1, threads=1)), first)
    init = load(first)
    # one step at lr 1e-9: still the first run's weights; they compete as epoch 0
    again = train(tiny_run("cfc", max_steps=1, lr=1e-9, threads=1), init_from=str(first))
    for name, t in init.model_tensors().items():
        assert torch.allclose(again.tensors[name], t, atol=1e-6), name
    metrics = again.record["metrics"]
    assert metrics["epochs"][0]["epoch"] == 0 and metrics["epochs"][0]["val_accuracy"] is not None
    assert metrics["init_from"]["path"] == str(first) and len(metrics["init_from"]["sha256"]) == 64
    assert metrics["init_from"]["epochs_run"] == init.record["metrics"]["epochs_run"]
    assert metrics["init_from"]["epochs_in_all"] == init.record["metrics"]["epochs_run"]
    second = tmp_path / "second.st"
    save(again, second)
    third = train(tiny_run("cfc", max_steps=1, lr=1e-9, threads=1), init_from=str(second))
    chain = third.record["metrics"]["init_from"]  # the whole chain behind it: 1 epoch, then 1 more
    assert chain["epochs_in_all"] == init.record["metrics"]["epochs_run"] + metrics["epochs_run"] == 2
    assert chain["train_seconds_in_all"] == pytest.approx(
        init.record["metrics"]["train_seconds"] + metrics["train_seconds"], abs=0.02)
    history = again.record["history"]  # the lineage: the first run's entry, then this one
    assert len(history) == 2 and history[0] == init.record["history"][0]
    assert str(first) in history[1]["inputs"]
    with pytest.raises(ConfigError, match="--init-from .* does not fit the model of these settings.*shapes differ"):
        train(tiny_run("cfc", hidden=12, max_steps=1), init_from=str(first))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        train(tiny_run("cfc", max_steps=1), init_from=str(tmp_path / "missing.st"))


def test_warmup_ramps_then_follows_the_decay():
    from cfctool.training.fit import _Warmup

    for per_step in (True, False):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched, seen = _Warmup(opt, 0.5, 4, per_step, 3), []
        for _ in range(9):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        want = [0.5 ** (n / 4 if per_step else n // 4) * min(1.0, (n + 1) / 3) for n in range(9)]
        assert seen == pytest.approx(want)


def test_warmup_and_amp_resume_to_the_same_weights(tmp_path):
    """The ramp and the weight average span the interrupted epoch: both come back with the state."""
    out = tmp_path / "w.st"
    run = tiny_run("cfc", epochs=3, threads=1, warmup_steps=6, lr_decay=0.5, amp="bf16", ema_decay=0.9)
    whole = train(run)

    def stop_after_one(p):
        if p.phase == "epoch" and p.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(run, output=out, progress=stop_after_one)
    resumed = train(run, output=out, resume=True)
    for name, t in whole.tensors.items():
        assert torch.equal(t, resumed.tensors[name]), name


def test_amp_bf16_rounds_the_products_only():
    fp32 = train(tiny_run("cfc", max_steps=3, threads=1, lr=0.01))
    bf16 = train(tiny_run("cfc", max_steps=3, threads=1, lr=0.01, amp="bf16"))
    moved = [k for k in fp32.tensors if not torch.equal(fp32.tensors[k], bf16.tensors[k])]
    assert moved  # the products were rounded ...
    for k in fp32.tensors:  # ... and the weights stayed float32, within three Adam steps (<= lr each) per run
        assert bf16.tensors[k].dtype == fp32.tensors[k].dtype
        assert torch.allclose(fp32.tensors[k], bf16.tensors[k], atol=2 * 3 * 0.01), k
    with pytest.raises(Exception, match="amp must be one of"):
        train(tiny_run("cfc", amp="fp8"))


def test_ode_rnn_under_bf16_autocast_keeps_a_float32_state():
    from cfctool.models.ode import ODERNN

    torch.manual_seed(0)
    rnn, x = ODERNN(1, 64), torch.rand(4, 50, 1)
    _, ref = rnn(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, got = rnn(x)
    assert got.dtype == torch.float32
    assert 0 < (got - ref).abs().max() < 0.02 * ref.abs().max()
