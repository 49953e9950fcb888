"""The Neural ODE families: solver order, the conv block equal to its dense matrix, the
antisymmetric spectrum, save/load, capture, and the errors a user can hit."""

import pytest
import torch

from cfctool.checkpoint import Checkpoint, load, new_record, save
from cfctool.data.mnist import task_record
from cfctool.errors import ConfigError
from cfctool.families.build import build_model, model_from_checkpoint
from cfctool.models.ode import ODERNN, ConvODE, solve


def test_rk4_and_euler_match_the_matrix_exponential_to_their_order():
    torch.manual_seed(0)
    m = torch.randn(4, 4, dtype=torch.float64) * 0.7
    x0 = torch.randn(3, 4, dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(m).t()
    for method, order in (("rk4", 4), ("euler", 1)):
        errors = [(solve(lambda x: x @ m.t(), x0, 1.0, dt, method) - exact).abs().max().item() for dt in (0.1, 0.05)]
        assert errors[0] / errors[1] == pytest.approx(2 ** order, rel=0.15), (method, errors)
    assert errors[0] < 0.5  # euler is still a solver, not noise


def test_conv_block_equals_its_dense_matrix():
    torch.manual_seed(0)
    core = ConvODE()
    a, b = core.dense_block()
    assert a.shape == (1024, 1024) and b.shape == (1024,)
    h = torch.randn(5, 1024)
    assert (core.f(h) - torch.tanh(h @ a.t() + b)).abs().max() <= 1e-5
    x = torch.rand(5, 28, 28)
    _, conv = core(x)
    core.dense = (a, b)
    _, dense = core(x)
    assert (conv - dense).abs().max() <= 1e-5 and conv.shape == (5, 64)


def test_the_antisymmetric_matrix_has_eigenvalues_with_real_part_minus_gamma():
    torch.manual_seed(0)
    core = ODERNN(1, hidden=16, gamma=0.3)
    eig = torch.linalg.eigvals(core.matrix().double())
    assert torch.allclose(eig.real, torch.full((16,), -0.3, dtype=torch.float64), atol=1e-6)
    assert eig.imag.abs().max() > 0.1


def test_ode_rnn_init_std_is_recorded_and_sets_the_scale_of_w():
    from cfctool.configs import resolve
    from cfctool.families.build import arch_record

    arch = arch_record(resolve("pmnist", "ode-rnn", overrides={"hidden": 256}).arch, task_record("pmnist"))
    assert arch["init_std"] == 0.1
    torch.manual_seed(0)
    assert build_model(arch, task_record("pmnist")).rnn.W.std().item() == pytest.approx(0.1 / 16, rel=0.03)
    assert ODERNN(1, hidden=256, init_std=1.0).W.std().item() == pytest.approx(1 / 16, rel=0.03)


def _checkpoint(arch, task):
    torch.manual_seed(0)
    model = build_model(arch, task)
    return Checkpoint(tensors=dict(model.state_dict()), record=new_record(arch, task)), model


@pytest.mark.parametrize("arch,task", [
    ({"name": "conv-ode", "channels": 4, "side": 28, "solver": "rk4", "ode_dt": 0.25, "t_end": 1.0},
     task_record("mnist")),
    ({"name": "ode-rnn", "hidden": 12, "gamma": 0.01, "solver": "euler", "ode_dt": 0.1}, task_record("pmnist")),
])
def test_save_load_gives_identical_outputs_and_capture_has_the_snapshots(arch, task, tmp_path):
    ckpt, model = _checkpoint(arch, task)
    save(ckpt, tmp_path / "m.st")
    back = model_from_checkpoint(load(tmp_path / "m.st"))
    x = torch.rand(3, 28, 28) if arch["name"] == "conv-ode" else torch.rand(3, 30, 1)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), back(x))
    trace = back.capture(x)
    steps = 4 if arch["name"] == "conv-ode" else 30
    width = 4 * 8 * 8 if arch["name"] == "conv-ode" else 12
    assert trace["cells.0.state"].shape == (3, steps, width) == trace["cells.0.nonlinearity"].shape


def test_ode_rnn_step_is_euler_on_the_definition():
    torch.manual_seed(0)
    core = ODERNN(2, hidden=6, gamma=0.05, dt=0.1)
    x = torch.randn(4, 5, 2)
    h = torch.zeros(4, 6)
    a = core.W - core.W.t() - 0.05 * torch.eye(6)
    with torch.no_grad():
        for t in range(5):
            h = h + 0.1 * (torch.tanh(h @ a.t() + core.b) + x[:, t] @ core.Z.weight.t())
        assert (core(x)[1] - h).abs().max() <= 1e-6


def test_folded_engine_equals_the_loop():
    """tanh as 2 sigmoid(2p) - 1, the input term with its constant as one product, a padded
    SVD rank: the same function as the loop for an ode-rnn and for reduced blocks (identity,
    matrix N and low rank), with a mask with holes and with per-step outputs."""
    from cfctool.models.ode_inference import FoldedODE, supports

    torch.manual_seed(0)
    task = task_record("pmnist")
    rnn = build_model({"name": "ode-rnn", "hidden": 24, "gamma": 0.05, "solver": "euler", "ode_dt": 0.1}, task)
    reduced = {"name": "ode-reduced", "base": "ode-rnn", "ode_dt": 0.1, "solver": "euler"}
    models = [rnn, build_model({**reduced, "method": "pod-deim", "dim": 6, "points": 9}, task),
              build_model({**reduced, "method": "svd", "dim": 24, "points": 24, "rank": 5, "interpolated": False}, task)]
    x = torch.rand(7, 30, 1)
    mask = torch.rand(7, 30) > 0.3
    for model in models:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
        model.eval()
        folded = FoldedODE(model)
        with torch.no_grad():
            # float32 rounding of the rewritten tanh over 30 steps, relative to the outputs' size
            # (the BLAS kernels differ by CPU: 1.1e-5 absolute on an AMD EPYC, less on a Xeon)
            for m in (None, mask):
                ref = model(x, None, m)
                assert (folded(x, None, m) - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())
            model.per_step = True
            ref = model(x)
            assert (FoldedODE(model)(x) - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())
            model.per_step = False
        # the SVD block read by a linear head runs in its latent coordinates [R z, H z]
        assert folded.latent == (model.rnn.__class__.__name__ == "ReducedODE" and model.rnn.M_out is not None)
    assert not supports(build_model({"name": "ode-rnn", "hidden": 4, "gamma": 0.0, "solver": "rk4", "ode_dt": 0.1}, task))


def test_ode_errors(cli, tmp_path):
    r = cli("train", "pmnist", "--arch", "conv-ode", "--data", tmp_path, "-o", tmp_path / "m.st")
    assert r.code == 2 and "conv-ode reads square images" in r.err
    r = cli("train", "mnist", "--arch", "conv-ode", "--data", tmp_path / "nowhere", "-o", tmp_path / "m.st")
    assert r.code == 1 and "does not exist" in r.err
    r = cli("train", "pmnist", "--arch", "ode-rnn", "--solver", "rk5", "-o", tmp_path / "m.st")
    assert r.code == 2 and "solver must be one of" in r.err
    assert not (tmp_path / "m.st").exists()
    from cfctool.families.ode import conv_record

    with pytest.raises(ConfigError, match="conv-ode reads square images"):
        conv_record({"name": "conv-ode", "channels": 4, "solver": "rk4", "ode_dt": 0.1, "t_end": 1.0},
                    task_record("pmnist"))


@pytest.mark.slow
def test_conv_ode_trains_on_real_mnist_slices(data_dir, tmp_path, cli):
    out = tmp_path / "c.st"
    r = cli("train", "mnist", "--arch", "conv-ode", "--data", data_dir, "--max-samples", "3000", "--epochs", "2",
            "--max-test-samples", "1000", "--threads", "2", "-q", "-o", out)
    assert r.code == 0, r.err
    assert load(out).record["metrics"]["accuracy"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("method", [None, "svd"])
def test_euler_sequence_odes_export_as_an_onnx_scan(method, tmp_path):
    """The folded ODE step is a Scan body: the graph takes any length and equals the loop."""
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    import onnxruntime as ort

    from cfctool.data.base import Split
    from cfctool.ops.export import export_onnx

    task = task_record("pmnist")
    arch = {"name": "ode-rnn", "hidden": 16, "gamma": 0.05, "solver": "euler", "ode_dt": 0.1}
    if method == "svd":
        arch = {"name": "ode-reduced", "base": "ode-rnn", "ode_dt": 0.1, "solver": "euler", "method": "svd",
                "dim": 16, "points": 16, "rank": 5, "interpolated": False}
    ckpt, model = _checkpoint(arch, task)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    ckpt = Checkpoint(tensors=dict(model.state_dict()), record=ckpt.record)
    example = Split(x=torch.rand(8, 40, 1), y=torch.zeros(8, dtype=torch.long))
    info = export_onnx(ckpt, tmp_path / "m.onnx", example)
    assert info["graph"] == "scan" and info["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for length in (40, 7):
        x = torch.rand(5, length, 1)
        with torch.no_grad():
            want = model.eval()(x).numpy()
        assert abs(session.run(None, {"x": x.numpy()})[0] - want).max() <= 1e-4
