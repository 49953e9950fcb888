"""`distill`: alpha 1 is plain training, the KD loss is the textbook one, the student moves
toward the teacher, provenance, `--init`, and the errors a user can hit."""

import pytest
import torch
import torch.nn.functional as F

from cfctool.checkpoint import file_sha256, load, save
from cfctool.configs import DistillConfig
from cfctool.data.xor import generate
from cfctool.errors import CfcError, ConfigError
from cfctool.models.registry import model_from_checkpoint
from cfctool.ops.distill import distill, kd_loss, teacher_outputs
from cfctool.ops.train import train
from helpers import tiny_run

TINY = {"epochs": 1, "batch_size": 64, "hidden": 8, "backbone_units": 8, "seed": 0}


def test_alpha_one_is_plain_training_on_the_teachers_data(trained_xor):
    teacher = load(trained_xor["cfc-deep"])
    student = distill(teacher, DistillConfig(student="cfc", alpha=1.0), TINY)
    plain = train(tiny_run("cfc"))
    for name, t in plain.model_tensors().items():
        assert torch.equal(student.tensors[name], t), name
    assert student.record["metrics"]["accuracy"] == plain.record["metrics"]["accuracy"]


def test_kd_loss_is_the_textbook_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    for temp in (1.0, 3.0):
        p, q = F.softmax(t / temp, -1), F.softmax(s / temp, -1)
        want = temp ** 2 * (p * (p.log() - q.log())).sum(-1).mean()
        assert kd_loss(s, t, "kl", temp).item() == pytest.approx(want.item(), rel=1e-5)
    assert kd_loss(s, t, "mse", 1.0).item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-6)


def test_the_student_moves_toward_the_teacher(learned_xor, tmp_path):
    teacher = load(learned_xor)
    settings = {"epochs": 1, "hidden": 16, "backbone_units": 16, "seed": 1, "max_steps": 60}
    out = distill(teacher, DistillConfig(student="cfc", alpha=0.0, kd_loss="mse"), settings)
    save(out, tmp_path / "s.st")
    test = generate(teacher.task, "test")
    want = teacher_outputs(model_from_checkpoint(teacher), test)
    start = distill(teacher, DistillConfig(student="cfc", alpha=0.0, kd_loss="mse"), {**settings, "max_steps": 1})
    gap = lambda ckpt: F.mse_loss(teacher_outputs(model_from_checkpoint(ckpt), test), want).item()  # noqa: E731
    assert gap(out) < 0.5 * gap(start)
    d = load(tmp_path / "s.st").record
    assert d["compression"]["distillation"]["teacher"]["sha256"] == file_sha256(learned_xor)
    entry = d["history"][-1]
    assert entry["command"] == "distill" and entry["inputs"] == {str(learned_xor): file_sha256(learned_xor)}
    assert entry["config"]["distill"]["alpha"] == 0.0 and d["arch"]["hidden"] == 16


def test_init_starts_from_a_checkpoint_of_the_student_shape(trained_xor, tmp_path):
    teacher = load(trained_xor["cfc-deep"])
    init = trained_xor["cfc"]  # hidden 8, backbone 8: the TINY student's shapes
    out = distill(teacher, DistillConfig(student="cfc", init_checkpoint=str(init)), {**TINY, "max_steps": 1,
                                                                                      "lr": 1e-9})
    for name, t in load(init).model_tensors().items():  # one step at lr 1e-9: still the init's weights
        assert torch.allclose(out.tensors[name], t, atol=1e-6), name
    assert str(init) in out.record["history"][-1]["inputs"]
    with pytest.raises(CfcError, match="--init .* does not fit the model of these settings.*shapes differ"):
        distill(teacher, DistillConfig(student="cfc", init_checkpoint=str(init)), {**TINY, "hidden": 12})


def test_distill_errors(trained_xor, tmp_path, cli):
    src = trained_xor["cfc-deep"]
    out = tmp_path / "s.st"
    r = cli("distill", src, "--student", "cfc", "--alpha", "2", "-o", out)
    assert r.code == 2 and "--alpha must be in [0, 1]" in r.err
    r = cli("distill", src, "--student", "cfc", "--temperature", "0", "-o", out)
    assert r.code == 2 and "--temperature must be > 0" in r.err
    r = cli("distill", src, "--student", "gru", "-o", out)
    assert r.code == 2 and "student must be one of" in r.err
    r = cli("distill", src, "-o", out)
    assert r.code == 2 and "--student is required" in r.err
    r = cli("distill", src, "--student", "cfc", "--dataset", "imdb", "-o", out)
    assert r.code == 1 and "trained on 'xor', not 'imdb'" in r.err
    r = cli("distill", src, "--student", "cfc-ncp", "--backbone-units", "8", "-o", out)
    assert r.code == 2 and "does not apply to arch 'cfc-ncp'" in r.err
    assert not out.exists()
    with pytest.raises(ConfigError, match="kd_loss must be one of"):
        distill(load(src), DistillConfig(student="cfc", kd_loss="l1"), TINY)
    r = cli("distill", src, "--student", "cfc-ncp", "--hidden", "6", "--epochs", "1", "-q", "-o", out)
    assert r.code == 0, r.err
    assert load(out).arch["name"] == "cfc-ncp"
