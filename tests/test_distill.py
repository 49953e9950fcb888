"""`distill`: alpha 1 is plain training, the KD loss is the textbook one, the student moves
toward the teacher, provenance, `--init`, and the errors a user can hit."""

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_run

from cfctool.checkpoint import file_sha256, load, save
from cfctool.configs import DistillConfig
from cfctool.data.xor import generate
from cfctool.errors import CfcError, ConfigError
from cfctool.families.build import model_from_checkpoint
from cfctool.ops.distill import distill, kd_loss, teacher_logits, teacher_outputs
from cfctool.ops.train import train

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


@pytest.mark.slow
def test_a_teacher_reads_its_own_view_of_the_students_rows(data_dir, tmp_path, cli):
    """An MNIST-rows teacher distils into a pixel-MNIST student: the teacher sees each of the
    student's pixel sequences as its image, so the student learns to mimic it on images it
    never trained on; the record names the teacher's data set and starts a pmnist lineage."""
    from cfctool.data.mnist import load_split, task_record
    from cfctool.data.registry import view_converter

    rows, pixels = (load_split(task_record(n), "test", data_dir, limit=64) for n in ("mnist", "pmnist"))
    view = view_converter(task_record("pmnist"), task_record("mnist"))
    assert torch.equal(view(pixels.x), rows.x)
    assert view_converter(task_record("pmnist"), task_record("fashion-mnist")) is None

    teacher_path = tmp_path / "t.st"
    r = cli("train", "mnist", "--arch", "cfc", "--hidden", "8", "--backbone-units", "8", "--data", data_dir,
            "--max-samples", "512", "--max-test-samples", "64", "--epochs", "1", "--lr", "0.03", "-q",
            "-o", teacher_path)
    assert r.code == 0, r.err
    teacher = load(teacher_path)
    settings = {"hidden": 8, "backbone_units": 8, "max_samples": 256, "max_test_samples": 64, "epochs": 1,
                "batch_size": 32, "lr": 0.02, "max_steps": 24, "seed": 1}
    cfg = DistillConfig(student="cfc", alpha=0.0, kd_loss="mse")
    out = distill(teacher, cfg, settings, data_dir=data_dir, dataset_name="pmnist")
    start = distill(teacher, cfg, {**settings, "max_steps": 1, "lr": 1e-9}, data_dir=data_dir, dataset_name="pmnist")
    want = teacher_outputs(model_from_checkpoint(teacher), rows)
    assert torch.equal(teacher_logits(model_from_checkpoint(teacher), pixels, view), want)  # row for row
    assert (want - want.roll(1, 0)).abs().amax(1).min() > 1e-3  # every row its own logits: an offset would show
    gap = lambda ckpt: F.mse_loss(teacher_outputs(model_from_checkpoint(ckpt), pixels), want).item()  # noqa: E731
    assert gap(out) < 0.6 * gap(start)
    assert out.task["dataset"] == "pmnist" and out.arch["name"] == "cfc"
    assert out.record["compression"]["distillation"]["teacher"]["dataset"] == "mnist"
    assert [e["command"] for e in out.record["history"]] == ["distill"]  # the teacher's mnist lineage is not its own
    assert out.record["history"][0]["config"]["data"]["dataset"] == "pmnist"
    save(out, tmp_path / "s1.st")
    warm = DistillConfig(student="cfc", alpha=0.0, kd_loss="mse", init_checkpoint=str(tmp_path / "s1.st"))
    again = distill(teacher, warm, {**settings, "max_steps": 1}, data_dir=data_dir, dataset_name="pmnist")
    behind = again.record["metrics"]["init_from"]  # a warm start states the budget behind it
    assert behind["epochs_run"] == 1 and behind["train_seconds"] == out.record["metrics"]["train_seconds"]
    assert [e["command"] for e in again.record["history"]] == ["distill", "distill"]

    r = cli("distill", teacher_path, "--student", "cfc", "--dataset", "imdb", "-o", tmp_path / "s.st")
    assert r.code == 1 and "do not share their rows" in r.err and "an mnist teacher for a pmnist student" in r.err
    assert not (tmp_path / "s.st").exists()


def test_distill_trains_on_the_device_it_is_given(trained_xor, tmp_path, cli):
    """train and distill share one training path: --device is honoured and recorded (a run
    asking for a GPU that is not there fails instead of training on the CPU)."""
    src = trained_xor["cfc-deep"]
    r = cli("distill", src, "--student", "cfc-ncp", "--hidden", "6", "--epochs", "1", "--device", "cpu", "-q",
            "-o", tmp_path / "cpu.st")
    assert r.code == 0, r.err
    assert load(tmp_path / "cpu.st").record["metrics"]["device"] == "cpu"
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: --device cuda would train on it")
    r = cli("distill", src, "--student", "cfc-ncp", "--hidden", "6", "--epochs", "1", "--device", "cuda", "-q",
            "-o", tmp_path / "gpu.st")
    assert r.code == 1 and "--device cuda was asked for but no CUDA GPU is available" in r.err
    assert not list(tmp_path.glob("gpu*"))
