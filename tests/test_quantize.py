"""`quantize`: integer weights, the int8 engine against its exact simulation and the analytic
error bound, observers, and the errors a user can hit."""

import pytest
import torch

from cfctool.checkpoint import load, save
from cfctool.configs import QuantizeConfig
from cfctool.data.xor import generate
from cfctool.errors import CfcError, ConfigError, DataError
from cfctool.families.build import model_from_checkpoint
from cfctool.models.quantized import QuantFoldedCfC, quantize_dynamic, supports_integer
from cfctool.ops.evaluate import evaluate
from cfctool.ops.quantize import quantize


@pytest.fixture(scope="module")
def quantized(trained_xor):
    out = {}
    for arch in ("cfc", "cfc-deep", "cfc-ncp"):
        ckpt = load(trained_xor[arch])
        out[arch] = (ckpt, quantize(ckpt, QuantizeConfig(scheme="static", calib=128)))
    return out


@pytest.mark.parametrize("arch", ["cfc", "cfc-deep", "cfc-ncp"])
def test_integer_engine_equals_its_float_simulation_and_eval_names_it(quantized, arch, tmp_path):
    fp32, q = quantized[arch]
    save(q, tmp_path / "q.st")
    q = load(tmp_path / "q.st")
    model = model_from_checkpoint(q)
    assert supports_integer(q, model)
    scales = q.record["compression"]["quantization"]["activation_scales"]
    batch = generate(q.task, "test")
    real = QuantFoldedCfC(model, q, scales)(batch.x, batch.dt, batch.mask)
    simulated = QuantFoldedCfC(model, q, scales, simulate=True)(batch.x, batch.dt, batch.mask)
    assert torch.equal(real, simulated)  # int32 accumulation is exact; so is the float simulation
    report = evaluate(q)
    assert report["engine"] == "folded-int8"
    assert report["accuracy"] == pytest.approx((real.argmax(-1) == batch.y).float().mean().item())
    assert abs(report["accuracy"] - evaluate(fp32)["accuracy"]) <= 0.02
    with torch.no_grad():  # close to fp32, not equal: the activations really are quantized
        want = model_from_checkpoint(fp32)(batch.x, batch.dt, batch.mask)
    assert 0 < (real - want).abs().max() < 0.5


def test_a_quantized_product_stays_within_the_analytic_bound():
    """y = x W^T with W per-row int8 (scale s_j) and x int8 (scale s_x):
    |y_j - y~_j| <= sum_i (|x_i| s_j / 2 + |W_ji| s_x / 2 + s_x s_j / 4)."""
    from cfctool.encodings import quant_params
    from cfctool.encodings import quantize as q_values

    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, generator=g)
    x = torch.relu(torch.randn(16, 40, generator=g)) * 3
    s_w, _ = quant_params(w, 8, 0, True)
    w_q = q_values(w, s_w, None, 8, 0)
    x_q, s_x = quantize_dynamic(x, relu=True)
    got = (x_q.float() @ w_q.float().t()) * s_x * s_w
    bound = x.abs() @ (s_w / 2).expand(40, 24) + (w.abs() * s_x / 2).sum(1) + 40 * s_x * s_w / 4
    err = (got - x @ w.t()).abs()
    assert (err <= bound + 1e-5).all()
    assert err.max() > bound.max() / 100  # the bound is not vacuous for this example


def test_int4_weights_with_qat_and_file_sizes(trained_xor, learned_xor, tmp_path):
    fp32 = load(trained_xor["cfc"])
    q4 = quantize(fp32, QuantizeConfig(scheme="qat", bits=4, epochs=1, calib=64))
    assert {s["codec"] for s in q4.encodings.values()} == {"int4"}
    save(q4, tmp_path / "q4.st")
    q8 = quantize(fp32, QuantizeConfig(scheme="static", calib=64))
    save(q8, tmp_path / "q8.st")
    from cfctool.ops.info import describe

    weights = sum(v.numel() for k, v in fp32.tensors.items() if k.endswith(".weight"))
    stored = lambda p: describe(load(p))["sizes"]["tensor_bytes"]  # noqa: E731  (a tiny model's file is mostly header)
    # bytes saved: 3 of 4 per int8 weight, 3.5 of 4 per int4 weight, less a float scale per row
    rows = sum(v.shape[0] for k, v in fp32.tensors.items() if k.endswith(".weight"))
    assert stored(trained_xor["cfc"]) - stored(tmp_path / "q8.st") == 3 * weights - 4 * rows
    assert stored(trained_xor["cfc"]) - stored(tmp_path / "q4.st") >= 3.5 * weights - 4 * rows - 8
    good = load(learned_xor)
    base = good.record["metrics"]["accuracy"]
    assert base >= 0.95
    static4 = evaluate(quantize(good, QuantizeConfig(bits=4, calib=128)))
    qat4_ckpt = quantize(good, QuantizeConfig(scheme="qat", bits=4, epochs=1, calib=128))
    assert qat4_ckpt.record["compression"]["quantization"]["qat_kept_epoch"] in (0, 1)  # 0: the start kept
    assert "qat_kept_epoch" not in q8.record["compression"]["quantization"]
    qat4 = evaluate(qat4_ckpt)
    assert qat4["engine"] == "folded-int8" and qat4["accuracy"] >= base - 0.03
    assert qat4["accuracy"] >= static4["accuracy"] - 0.01  # fine-tuning through the rounding does not hurt


def test_dynamic_scheme_needs_no_scales(trained_xor):
    q = quantize(load(trained_xor["cfc"]), QuantizeConfig(scheme="dynamic", calib=64))
    comp = q.record["compression"]["quantization"]
    assert comp["activation_scales"] == {} and comp["state_mse"]["mean"] > 0
    assert evaluate(q)["engine"] == "folded-int8"


def test_mse_observer_beats_minmax_on_an_outlier_unit(trained_xor):
    """Scaling one ReLU unit's input row by 30 and its head column by 1/30 leaves the fp32
    function unchanged but stretches the min-max range: clipping it lowers the state error."""
    ckpt = load(trained_xor["cfc"])
    t = dict(ckpt.tensors)
    w1, b1 = t["rnn.cells.0.backbone.0.weight"].clone(), t["rnn.cells.0.backbone.0.bias"].clone()
    w1[0] *= 30
    b1[0] *= 30
    t["rnn.cells.0.backbone.0.weight"], t["rnn.cells.0.backbone.0.bias"] = w1, b1
    for head in ("ff1", "ff2", "time_a", "time_b"):
        w = t[f"rnn.cells.0.{head}.weight"].clone()
        w[:, 0] /= 30
        t[f"rnn.cells.0.{head}.weight"] = w
    stretched = ckpt.derive(tensors=t)
    batch = generate(ckpt.task, "test", 64)
    with torch.no_grad():
        same = model_from_checkpoint(stretched)(batch.x, batch.dt, batch.mask)
        assert (same - model_from_checkpoint(ckpt)(batch.x, batch.dt, batch.mask)).abs().max() < 1e-4
    minmax = quantize(stretched, QuantizeConfig(observer="minmax", calib=128)).record["compression"]["quantization"]
    mse = quantize(stretched, QuantizeConfig(observer="mse", calib=128)).record["compression"]["quantization"]
    name = "cells.0.backbone.0"
    assert mse["activation_scales"][name] < minmax["activation_scales"][name]
    assert mse["state_mse"]["mean"] < minmax["state_mse"]["mean"]


def test_quantize_errors(trained_xor, quantized, tmp_path, cli):
    with pytest.raises(CfcError, match="already quantized .*fp32 original"):
        quantize(quantized["cfc"][1], QuantizeConfig())
    with pytest.raises(ConfigError, match="bits must be 8 or 4"):
        quantize(load(trained_xor["cfc"]), QuantizeConfig(bits=3))
    r = cli("quantize", trained_xor["cfc"], "--bits", "3", "-o", tmp_path / "q.st")
    assert r.code == 2 and "bits must be 8 or 4" in r.err and not (tmp_path / "q.st").exists()
    r = cli("quantize", trained_xor["cfc"], "--scheme", "dynamic", "--no-fuse", "-o", tmp_path / "q.st")
    assert r.code == 2 and "--no-fuse" in r.err and "not dynamic" in r.err and not (tmp_path / "q.st").exists()
    r = cli("quantize", trained_xor["ltc"], "-o", tmp_path / "ltc.st")  # no integer path: runs simulated, says so
    assert r.code == 0 and "no integer engine runs 'ltc' models: 1 weight tensor(s) stored as int8 (head.weight)" \
        in r.err and "state MSE" not in r.err, r.err
    assert load(tmp_path / "ltc.st").record["compression"]["quantization"]["integer_engine"] is False
    report = evaluate(load(tmp_path / "ltc.st"))
    assert report["engine"] == "loop" and "simulated" in report["engine_note"]


def test_static_and_qat_without_the_task_data_are_clear_errors(tmp_path, monkeypatch):
    """An IMDB-shaped checkpoint whose data is nowhere to be found."""
    from cfctool.checkpoint import Checkpoint, new_record
    from cfctool.families.build import build_model

    task = {"dataset": "imdb", "input": {"kind": "tokens", "vocab_size": 30, "pad_id": 0, "oov_id": 1},
            "output": {"kind": "classification", "size": 2, "per_step": False},
            "preprocessing": {"seq_len": 10, "vocab_words": 28}}
    arch = dict(name="cfc", hidden=4, mode="default", backbone_widths=[4], backbone_activation="relu",
                backbone_dropout=0.0, mixed_memory=False, embedding_dim=3, head_activation="tanh")
    model = build_model(arch, task)
    ckpt = Checkpoint(tensors={**model.state_dict(), "task.vocab": torch.zeros(5, dtype=torch.uint8)},
                      record=new_record(arch, task))
    monkeypatch.delenv("CFCTOOL_DATA", raising=False)
    with pytest.raises(DataError, match="static quantization needs the training data of 'imdb'.*--data"):
        quantize(ckpt, QuantizeConfig(scheme="static"))
    with pytest.raises(DataError, match="qat quantization needs the training data"):
        quantize(ckpt, QuantizeConfig(scheme="qat"))


def test_cli_quantize_round_trip(cli, trained_xor, tmp_path):
    out = tmp_path / "q.st"
    r = cli("quantize", trained_xor["cfc-ncp"], "--observer", "percentile", "--calib", "64", "-o", out)
    assert r.code == 0, r.err
    assert r.out.strip() == str(out) and "state MSE vs fp32" in r.err
    info = cli("info", out)
    assert "int8 tensors" in info.out
    assert "int8 static (channel weight scales, percentile observer, 0 activation scales, state MSE vs fp32" in info.out
    history = load(out).record["history"]
    assert [h["command"] for h in history] == ["train", "quantize"]


def test_fold_embedding_is_exact_and_quantizes_per_row(tmp_path):
    """A token model: E W_in^T as the table gives the same outputs (loop and folded engine)."""
    from cfctool.checkpoint import Checkpoint, new_record
    from cfctool.families.build import build_model
    from cfctool.families.cfc import fold_embedding
    from cfctool.models.inference import FoldedCfC

    task = {"dataset": "imdb", "input": {"kind": "tokens", "vocab_size": 50, "pad_id": 0, "oov_id": 1},
            "output": {"kind": "classification", "size": 2, "per_step": False},
            "preprocessing": {"seq_len": 12, "vocab_words": 48}}
    arch = dict(name="cfc", hidden=10, mode="default", backbone_widths=[6, 5], backbone_activation="relu",
                backbone_dropout=0.0, mixed_memory=False, embedding_dim=16, head_activation="lecun_tanh")
    torch.manual_seed(0)
    model = build_model(arch, task)
    ckpt = Checkpoint(tensors=dict(model.state_dict()), record=new_record(arch, task))
    folded = fold_embedding(ckpt)
    assert folded.tensors["embedding.weight"].shape == (50, 6) and folded.arch["input_projected"]
    save(folded, tmp_path / "f.st")
    back = model_from_checkpoint(load(tmp_path / "f.st"))
    x = torch.randint(0, 50, (7, 12))
    mask = torch.arange(12).unsqueeze(0) < torch.tensor([12, 3, 7, 1, 12, 9, 5]).unsqueeze(1)
    with torch.no_grad():
        want = model.eval()(x, None, mask)
        assert (back(x, None, mask) - want).abs().max() <= 1e-5  # the training loop
    assert (FoldedCfC(back)(x, None, mask) - want).abs().max() <= 1e-5  # and the folded engine
    from cfctool.errors import CfcError
    from cfctool.ops.quantize import fold_embedding as op_fold

    with pytest.raises(CfcError, match="not folded yet"):
        op_fold(folded)
    wide = ckpt.derive(arch={**arch, "backbone_widths": [16, 5]})  # 16 units for a 16-wide embedding
    wide.tensors.update({"rnn.cells.0.backbone.0.weight": torch.zeros(16, 26), "rnn.cells.0.backbone.0.bias":
                         torch.zeros(16)})
    with pytest.raises(CfcError, match="not narrower than the embedding.*larger, not smaller"):
        op_fold(wide)


def test_embedding_row_scales_are_float16_and_decode_consistently(trained_xor):
    from cfctool import encodings

    w = torch.randn(30, 8, generator=torch.Generator().manual_seed(3))
    parts, spec = encodings.encode(w, encodings.quantize_spec(8, w.shape, scale_dtype="float16"))
    assert parts["scale"].dtype == torch.float16
    back = encodings.decode("w", spec, parts)
    assert ((back - w).abs() <= parts["scale"].float().unsqueeze(1) * 0.5 + 1e-6).all()


def test_qat_fake_quantizes_activations_like_the_engine(learned_xor):
    """With the engine's activation scales set on the cells, the training loop computes what
    the int8 engine computes (dt varying, so the engine keeps the two gate heads: its
    constant-dt gate fold requantizes, which the loop does not mirror), and gradients flow."""
    from cfctool.ops.quantize import calibrate

    ckpt = load(learned_xor)
    q = quantize(ckpt, QuantizeConfig(calib=128))
    scales = q.record["compression"]["quantization"]["activation_scales"]
    model = model_from_checkpoint(q)
    batch = generate(q.task, "test", 256)
    batch.dt[0, 0] += 1e-6  # not constant: no gate fold in the engine
    engine = QuantFoldedCfC(model, q, scales)(batch.x, batch.dt, batch.mask)
    with torch.no_grad():
        plain = model(batch.x, batch.dt, batch.mask)
        for k, cell in enumerate(model.rnn.cells):
            cell.fake_quant = {"acts": [scales[f"cells.{k}.backbone.{j}"] for j in range(len(cell.backbone))]}
        faked = model(batch.x, batch.dt, batch.mask)
    assert (faked - engine).abs().mean() < (plain - engine).abs().mean() / 50
    model.train()
    model(batch.x[:8], batch.dt[:8], batch.mask[:8]).sum().backward()
    assert model.rnn.cells[0].backbone[0].weight.grad.abs().sum() > 0  # straight-through
    assert calibrate  # the QAT path calibrates with the same function


def _unfused_reference(model, scales, x, dt, mask):
    """The unfused int8 model written from the definition, with the decoded float weights:
    the state on its 1/127 grid, every Linear output and every activation rounded at its
    calibrated scale, the four heads rounded apart. One cell with a backbone."""
    import torch.nn.functional as F

    from cfctool.models import HEADS

    def grid(v, s, lo=-127):
        return torch.clamp(torch.round(v / s), lo, 127) * s

    cell = model.rnn.cells[0]
    a, h, relu = cell.head_scale, cell.hidden, isinstance(cell.act, torch.nn.ReLU)
    feats = model.embedding(x) if model.embedding is not None else x
    state = feats.new_zeros(x.shape[0], h)
    heads_w, heads_b = cell.head_params()
    for t in range(x.shape[1]):
        y_q = torch.floor(127 * (state / a + 1) / 2 + 0.5) / 127
        z = torch.cat([feats[:, t], a * (2 * y_q - 1)], 1)
        for j, layer in enumerate(cell.backbone):
            pre = grid(layer(z), scales[f"cells.0.backbone.{j}.linear"])
            z = grid(cell.act(pre), scales[f"cells.0.backbone.{j}"], 0 if relu else -127)
        heads = F.linear(z, heads_w, heads_b).split(h, 1)
        ff1, ff2, t_a, t_b = (grid(v, scales[f"cells.0.heads.{n}"]) for v, n in zip(heads, HEADS))
        step_dt = 1.0 if dt is None else dt[:, t:t + 1]
        new = a * (2 * torch.lerp(ff1.sigmoid(), ff2.sigmoid(), (t_a * step_dt + t_b).sigmoid()) - 1)
        state = new if mask is None else torch.where(mask[:, t:t + 1], new, state)
    return model.head(state)


@pytest.mark.parametrize("arch", ["cfc", "cfc-deep", "cfc-ncp"])
def test_no_fuse_rounds_every_linear_output(trained_xor, quantized, arch):
    fp32, fused = quantized[arch]
    q = quantize(fp32, QuantizeConfig(scheme="static", calib=128, fuse=False))
    record = q.record["compression"]["quantization"]
    scales = record["activation_scales"]
    assert record["fuse"] is False and {f"cells.0.heads.{n}" for n in ("ff1", "ff2", "time_a", "time_b")} <= set(scales)
    model = model_from_checkpoint(q)
    batch = generate(q.task, "test")
    real = QuantFoldedCfC(model, q, scales, fuse=False)(batch.x, batch.dt, batch.mask)
    assert torch.equal(real, QuantFoldedCfC(model, q, scales, fuse=False, simulate=True)(batch.x, batch.dt, batch.mask))
    assert evaluate(q)["accuracy"] == pytest.approx((real.argmax(-1) == batch.y).float().mean().item())
    if arch != "cfc-ncp":  # one cell with a backbone: against the definition
        # more rounding points than the fused engine (NCP's fused engine folds and requantizes the gate instead)
        assert record["state_mse"]["mean"] > fused.record["compression"]["quantization"]["state_mse"]["mean"]
        assert any(f"cells.0.backbone.{j}.linear" in scales for j in range(2))
        with torch.no_grad():
            want = _unfused_reference(model, scales, batch.x, batch.dt, batch.mask)
            fused_out = QuantFoldedCfC(model_from_checkpoint(fused), fused, fused.record["compression"][
                "quantization"]["activation_scales"])(batch.x, batch.dt, batch.mask)
        assert (real - want).abs().max() < 1e-3 < (fused_out - want).abs().max()


def _run_folded(f, split):
    """A folded engine's step over a batch, written out (no packing)."""
    u, dts, masks = f.time_major(split.x, split.dt, split.mask)
    ys = f.initial(u)
    with torch.no_grad():
        for t in range(u.shape[0]):
            ys = f.step(ys, u[t], None if dts is None else dts[t], None if masks is None else masks[t])
    return f.readout(ys[-1])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["cfc", "cfc-ncp"])
def test_export_of_an_int8_checkpoint_runs_integer_products_in_the_scan_body(quantized, arch, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    import onnx
    import onnxruntime as ort

    from cfctool.ops.export import export_onnx, graph_inputs

    _, q = quantized[arch]
    info = export_onnx(q, tmp_path / "q.onnx", generate(q.task, "test", 32))
    assert info["graph"] == "scan-int8" and info["verified_against"].startswith("folded-int8")
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    scan = next(n for n in graph.node if n.op_type == "Scan")
    body = [n.op_type for n in next(a.g for a in scan.attribute if a.name == "body").node]
    assert body.count("MatMulInteger") >= 2 and "MatMul" not in body and "Gemm" not in body
    # a fresh batch: the graph computes the integer engine (rows equal but for rounding ties)
    other = generate(q.task, "train", 64)
    session = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {k: v.numpy() for k, v in graph_inputs(other).items()})[0])
    model = model_from_checkpoint(q)
    engine = QuantFoldedCfC(model, q, q.record["compression"]["quantization"]["activation_scales"])
    want = _run_folded(engine.folded(None), other)  # the graph reads dt: the gate heads stay apart
    close = ((got - want).abs().amax(-1) <= 1e-4).float().mean()
    assert close >= 0.9 and (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.97


def test_the_quantization_record_is_one_typed_section(trained_xor, tmp_path):
    """quantize writes compression.quantization through QuantizationRecord and the engines read
    it back through it: the section round-trips through the file, and a section a tool altered
    (an unknown key, a missing field) is refused with the reason."""
    from cfctool.checkpoint import CheckpointError, load, save
    from cfctool.records import QuantizationRecord

    ckpt = load(trained_xor["cfc"])
    assert QuantizationRecord.read(ckpt.record) is None  # not quantized
    out = quantize(ckpt, QuantizeConfig(scheme="static", calib=16, keep_float="cells.0.heads"))
    save(out, tmp_path / "q.st")
    section = load(tmp_path / "q.st").record["compression"]["quantization"]
    typed = QuantizationRecord.read(load(tmp_path / "q.st").record)
    assert typed is not None and typed.to_dict() == section  # one reader, one writer, nothing lost
    assert typed.float_layers == ["rnn.cells.0.ff1.weight", "rnn.cells.0.ff2.weight", "rnn.cells.0.time_a.weight",
                                  "rnn.cells.0.time_b.weight"]
    assert typed.runs_on_integers and typed.activation_scales == section["activation_scales"]
    assert "qat_kept_epoch" not in section and "budget" not in section  # optional fields only when set
    for change, message in (({"bitz": 4}, "unknown keys"), ({"bits": None}, None)):
        bad = {**section, **change}
        if message is None:
            del bad["bits"]
            message = "lacks bits"
        with pytest.raises(CheckpointError, match=message):
            QuantizationRecord.read({"compression": {"quantization": bad}})
