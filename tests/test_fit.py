"""`fit()`: constraints, weight averaging, warm and fake-quantized starts, resume to the same
weights, training states, per-parameter learning rates."""

import pytest
import torch
from helpers import tiny_run

from cfctool.checkpoint import load
from cfctool.data.base import Dataset
from cfctool.data.xor import generate
from cfctool.families.build import build_model, model_from_checkpoint
from cfctool.ops.train import train
from cfctool.training.fit import MaskConstraint, fit

TASK = {"dataset": "xor", "input": {"kind": "features", "size": 3},
        "output": {"kind": "classification", "size": 2, "per_step": False}}


def _xor_dataset(n=256):
    from cfctool.configs import DataConfig
    from cfctool.data.xor import task_record

    task = task_record(DataConfig(bits=6, train_size=n, test_size=64))
    return Dataset(task=task, splits={"train": generate(task, "train", n), "test": generate(task, "test")})


def test_fit_keeps_masked_weights_exactly_zero_through_adam_with_weight_decay():
    from cfctool.configs import TrainConfig

    torch.manual_seed(0)
    model = build_model(dict(name="cfc", hidden=8, mode="default", backbone_widths=[8], backbone_activation="relu",
                             backbone_dropout=0.0, mixed_memory=False), _xor_dataset().task)
    masks = {name: torch.rand(p.shape) > 0.5 for name, p in model.named_parameters() if name.endswith("weight")}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=10, batch_size=64, lr=0.05, weight_decay=0.1, optimizer="adam", max_steps=20)
    result = fit(model, _xor_dataset(), cfg, constraints=[MaskConstraint(masks)])
    assert result.steps == 20
    params = dict(model.named_parameters())
    for name, keep in masks.items():
        assert torch.count_nonzero(params[name][~keep]) == 0, name  # exactly zero, not small
        assert not torch.equal(params[name][keep], before[name][keep])  # the rest did train


def test_ema_decay_keeps_and_validates_the_moving_average_of_the_iterates():
    """Recomputed independently from the iterates a recording constraint sees after every step."""
    from cfctool.configs import TrainConfig

    seen = []

    class Record:
        def apply(self, model):
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    torch.manual_seed(0)
    model = build_model(dict(name="cfc", hidden=8, mode="default", backbone_widths=[8], backbone_activation="relu",
                             backbone_dropout=0.0, mixed_memory=False), _xor_dataset().task)
    data = _xor_dataset()
    data.splits["val"] = data.splits["test"]  # one epoch: its (averaged) weights are the best
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, ema_decay=0.8)
    result = fit(model, data, cfg, constraints=[Record()])
    assert result.steps == 8 and len(seen) == 9  # before the first step, then after each
    ema = {k: v.clone() for k, v in seen[0].items()}
    for n, weights in enumerate(seen[1:], start=1):
        keep = min(0.8, (1 + n) / (10 + n))
        ema = {k: keep * ema[k] + (1 - keep) * weights[k] for k in ema}
    for k, v in model.state_dict().items():
        assert torch.allclose(v, ema[k], atol=1e-6), k
        assert not torch.allclose(v, seen[-1][k], atol=1e-6) or torch.equal(seen[0][k], seen[-1][k]), k
    from cfctool.metrics import split_metrics

    val = split_metrics(model.eval(), data.splits["val"], data.task, 512, "cpu")  # validated as the average
    assert result.history[-1]["val_loss"] == pytest.approx(val["loss"], abs=1e-6)
    with pytest.raises(Exception, match=r"ema_decay must be in \(0, 1\)"):
        TrainConfig(ema_decay=1.0).validate()


def test_fit_from_a_loaded_checkpoint_continues_from_its_weights(trained_xor):
    from cfctool.configs import TrainConfig

    ckpt = load(trained_xor["cfc"])
    model = model_from_checkpoint(ckpt)
    dataset = _xor_dataset()
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1e-4, max_steps=1)
    fit(model, dataset, cfg)
    moved = max((p - ckpt.tensors[n]).abs().max().item() for n, p in model.state_dict().items())
    assert 0 < moved < 1e-2  # one small step away from the loaded weights, not a fresh init
    # frozen parameters do not move at all
    model = model_from_checkpoint(ckpt)
    fit(model, dataset, TrainConfig(epochs=1, batch_size=64, lr=0.1, max_steps=3), freeze=["rnn"])
    assert all(torch.equal(p, ckpt.tensors[n]) for n, p in model.state_dict().items() if n.startswith("rnn."))
    assert not torch.equal(model.head.weight, ckpt.tensors["head.weight"])


def test_fit_with_fake_quantization_trains_through_the_rounding():
    from cfctool.configs import TrainConfig

    torch.manual_seed(1)
    model = build_model(dict(name="cfc", hidden=8, mode="default", backbone_widths=[8], backbone_activation="relu",
                             backbone_dropout=0.0, mixed_memory=False), _xor_dataset().task)
    seen = []

    def coarse(w):
        seen.append(1)
        return torch.round(w * 4) / 4  # a 0.25 grid: its gradient is zero almost everywhere

    before = model.head.weight.detach().clone()
    fit(model, _xor_dataset(), TrainConfig(epochs=1, batch_size=64, lr=0.05, max_steps=3),
        fake_quant={"head.weight": coarse})
    assert seen and not torch.equal(model.head.weight, before)  # straight-through: the float weight moved
    assert "parametrizations" not in "".join(model.state_dict())  # removed again


def test_resumed_training_ends_with_the_same_weights(tmp_path):
    out = tmp_path / "r.st"
    run = tiny_run("cfc-deep", epochs=3, threads=1, backbone_dropout=0.2)
    whole = train(run)

    class Stop(Exception):
        pass

    def stop_after_two(p):
        if p.phase == "epoch" and p.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(run, output=out, progress=stop_after_two)
    state = out.with_name(out.name + ".train-state")
    assert state.exists() and not out.exists()
    resumed = train(run, output=out, resume=True)
    assert not state.exists()  # removed once training ends
    for name, t in whole.tensors.items():
        assert torch.equal(t, resumed.tensors[name]), name
    assert resumed.record["metrics"]["train_seconds"] > resumed.record["metrics"]["this_run_seconds"]
    skip = {"train_seconds", "resumed_after_epoch", "this_run_seconds"}
    assert {k: v for k, v in whole.record["metrics"].items() if k not in skip} == \
        {k: v for k, v in resumed.record["metrics"].items() if k not in skip}
    assert resumed.record["metrics"]["resumed_after_epoch"] == 2
    from cfctool.errors import ConfigError

    with pytest.raises(ConfigError, match="no training state"):
        train(run, output=out, resume=True)


def test_a_kept_training_state_extends_a_finished_run_to_the_same_weights(tmp_path):
    """--keep-state, then --resume with more epochs: bit for bit the longer run (optimiser,
    schedule and weight average carried over), not a warm start."""
    out = tmp_path / "k.st"
    longer = train(tiny_run("cfc", epochs=3, threads=1, ema_decay=0.9, lr_decay=0.8))
    first = train(tiny_run("cfc", epochs=2, threads=1, ema_decay=0.9, lr_decay=0.8, keep_state=True), output=out)
    state = out.with_name(out.name + ".train-state")
    assert state.exists() and first.record["metrics"]["epochs_run"] == 2
    extended = train(tiny_run("cfc", epochs=3, threads=1, ema_decay=0.9, lr_decay=0.8), output=out, resume=True)
    assert not state.exists()  # this run did not ask to keep it
    assert extended.record["metrics"]["resumed_after_epoch"] == 2
    for name, t in longer.tensors.items():
        assert torch.equal(t, extended.tensors[name]), name


def test_info_follows_a_run_from_its_training_state(tmp_path, cli):
    """`info OUT.st.train-state`: the epochs, steps and validation so far, and what was chosen."""
    import json

    out = tmp_path / "s.st"
    done = train(tiny_run("cfc", epochs=2, threads=1, lr=0.02, keep_state=True), output=out)
    state = out.with_name(out.name + ".train-state")
    r = cli("info", state, "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["epochs_done"] == 2 and d["steps"] == done.record["metrics"]["steps"]
    assert d["epochs"] == done.record["metrics"]["epochs"]
    assert d["changed_settings"]["lr"] == 0.02 and d["changed_settings"]["bits"] == 6
    assert "clipnorm" not in d["changed_settings"] and d["settings"]["clipnorm"] == done.record["history"][-1][
        "config"]["train"]["clipnorm"]
    r = cli("info", state)
    assert r.code == 0 and "2 epoch(s)" in r.out and "lr=0.02" in r.out
    assert f"{done.record['metrics']['epochs'][-1]['val_accuracy']:.4f}" in r.out
    (tmp_path / "junk.st").write_bytes(b"not a model")
    r = cli("info", tmp_path / "junk.st")
    assert r.code != 0 and "not a safetensors checkpoint" in r.err


def test_resume_refuses_other_settings(tmp_path):
    from cfctool.errors import ConfigError

    out = tmp_path / "r.st"

    def stop(p):
        if p.phase == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_run("cfc", epochs=2), output=out, progress=stop)
    with pytest.raises(ConfigError, match="other settings .*lr"):
        train(tiny_run("cfc", epochs=2, lr=0.1), output=out, resume=True)
    assert train(tiny_run("cfc", epochs=3), output=out, resume=True).record["metrics"]["epochs_run"] == 3


def test_lr_scale_gives_the_named_parameters_their_own_step_through_the_schedules():
    """Adam's first step moves every weight with a gradient by lr (m / sqrt(v) = sign(g)):
    with 'head.*=0.1' the readout moves by a tenth of that, the rest by lr; warm-up and
    decay keep the ratio; a pattern that names nothing is an error that lists the names."""
    from cfctool.configs import TrainConfig
    from cfctool.errors import ConfigError
    from cfctool.training.fit import _Warmup, make_optimizer, param_groups

    torch.manual_seed(0)
    arch = dict(name="cfc", hidden=8, mode="default", backbone_widths=[8], backbone_activation="relu",
                backbone_dropout=0.0, mixed_memory=False)
    model = build_model(arch, _xor_dataset().task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.01, lr_scale="head.*=0.1", max_steps=1)
    fit(model, _xor_dataset(), cfg)
    for name, value in model.state_dict().items():
        moved = (value - before[name]).abs()
        moved = moved[moved > 0]
        want = 0.001 if name.startswith("head.") else 0.01
        # Adam's eps (1e-8) shortens the step only where a gradient is about as small
        assert moved.numel() > 0 and moved.median() == pytest.approx(want, rel=1e-3), name
        assert moved.max() <= want * 1.001, name

    cfg = TrainConfig(lr=0.01, lr_scale="rnn.*.bias=0.5,head.weight=0.1", weight_decay=0.1,
                      weight_decay_on="kernels")
    groups = param_groups(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    lrs = {names[id(p)]: g.get("lr", cfg.lr) for g in groups for p in g["params"]}
    decays = {names[id(p)]: g.get("weight_decay", cfg.weight_decay) for g in groups for p in g["params"]}
    assert lrs["head.weight"] == pytest.approx(0.001) and lrs["head.bias"] == pytest.approx(0.01)
    assert all(lrs[n] == pytest.approx(0.005) for n in lrs if n.startswith("rnn.") and n.endswith(".bias"))
    assert all(decays[n] == (0.1 if n.startswith("rnn.") and p.dim() >= 2 else 0.0)
               for n, p in model.named_parameters())
    assert "weight_decay" not in groups[0]  # the decaying kernels first, as before lr_scale existed
    optimizer = make_optimizer(groups, cfg)
    scheduler = _Warmup(optimizer, 0.5, steps_per_epoch=4, per_step=True, warmup=3)
    for _ in range(6):
        optimizer.step()
        scheduler.step()
        base = next(g["lr"] for g in optimizer.param_groups if "lr" in g and g["initial_lr"] == cfg.lr)
        for g in optimizer.param_groups:
            assert g["lr"] == pytest.approx(base * g["initial_lr"] / cfg.lr)
    with pytest.raises(ConfigError, match=r"rnn\.nothing, which match no trainable parameter.*head\.weight"):
        param_groups(model, TrainConfig(lr_scale="rnn.nothing=2"))
    with pytest.raises(ConfigError, match="not NAME=FACTOR"):
        TrainConfig(lr_scale="head.weight=-1").validate()


@pytest.mark.parametrize("extras", [{}, {"ema_decay": 0.9, "lr_schedule": "step"}])
def test_a_run_interrupted_mid_epoch_resumes_to_the_same_weights(extras, tmp_path, cli):
    """With --state-every, the state is written within an epoch too (the shuffle order, the
    place in it, the running loss): --resume continues from that batch, bit for bit."""
    out = tmp_path / "r.st"
    run = tiny_run("cfc-deep", epochs=2, threads=1, backbone_dropout=0.2, **extras)
    whole = train(run)
    steps_per_epoch = -(-int(len(generate_rows(run))) // run.train.batch_size)

    class Stop(Exception):
        pass

    def stop_mid_second_epoch(p):
        if p.phase == "step" and p.step == steps_per_epoch + 2:
            raise Stop

    run.train.state_every = 1e-9  # minutes: after every step
    with pytest.raises(Stop):
        train(run, output=out, progress=stop_mid_second_epoch)
    state = out.with_name(out.name + ".train-state")
    summary = cli("info", state, "--json")
    assert '"epoch_in_progress": {' in summary.out and '"epoch": 2' in summary.out
    resumed = train(run, output=out, resume=True)
    for name, t in whole.tensors.items():
        assert torch.equal(t, resumed.tensors[name]), name
    skip = {"train_seconds", "resumed_after_epoch", "this_run_seconds"}
    assert {k: v for k, v in whole.record["metrics"].items() if k not in skip} == \
        {k: v for k, v in resumed.record["metrics"].items() if k not in skip}  # the epochs' losses too


def generate_rows(run):
    from cfctool.data.registry import load_dataset

    return load_dataset(run.data, seed=run.train.seed).splits["train"]
