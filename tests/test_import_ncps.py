"""`cfctool import ncps` and `export --format ncps`: against ncps itself, for random weights of
every configuration we take, a model ncps trained here, and the round trip.

ncps is stepped by hand with dt of shape (batch, 1): its sequence API mis-broadcasts batched
timespans (tests/test_parity_ncps.py::test_ncps_batched_timespans_bug).
"""

from __future__ import annotations

import pytest
import torch

ncps_torch = pytest.importorskip("ncps.torch", reason="ncps is not installed; pip install -e '.[test]'")
from ncps.wirings import AutoNCP  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from cfctool import checkpoint  # noqa: E402
from cfctool.families.build import model_from_checkpoint  # noqa: E402
from cfctool.ops.import_ncps import ImportNcpsConfig, import_ncps  # noqa: E402

B, T = 6, 9  # batch differs from every hidden size here (see the module docstring)

CONFIGS = {
    "cfc-default-relu-2": (lambda: ncps_torch.CfC(1, 8, backbone_units=16, backbone_layers=2, activation="relu"),
                           {"activation": "relu"}),
    "cfc-no_gate-lecun": (lambda: ncps_torch.CfC(1, 8, mode="no_gate", backbone_units=12, backbone_layers=1),
                          {"mode": "no_gate"}),
    "cfc-pure-mixed": (lambda: ncps_torch.CfC(1, 8, mode="pure", mixed_memory=True, backbone_units=16,
                                              backbone_layers=1, activation="silu"), {"activation": "silu"}),
    "cfc-no-backbone": (lambda: ncps_torch.CfC(1, 8, backbone_layers=0), {}),
    "cfc-dropout-3": (lambda: ncps_torch.CfC(1, 8, backbone_units=16, backbone_layers=3, backbone_dropout=0.2,
                                             activation="gelu"), {"activation": "gelu", "backbone_dropout": 0.2}),
    "cfc-proj": (lambda: ncps_torch.CfC(1, 10, proj_size=4, backbone_units=8, backbone_layers=1, activation="tanh"),
                 {"activation": "tanh"}),
    "ncp-default": (lambda: ncps_torch.CfC(1, AutoNCP(16, 3, sparsity_level=0.5, seed=7)), {}),
    "ncp-pure-mixed": (lambda: ncps_torch.CfC(1, AutoNCP(14, 2, seed=3), mode="pure", mixed_memory=True), {}),
    "ltc": (lambda: ncps_torch.LTC(1, 8), {}),
    "ltc-ncp": (lambda: ncps_torch.LTC(1, AutoNCP(12, 2, seed=5)), {}),
    "ltc-explicit": (lambda: ncps_torch.LTC(1, 8, implicit_param_constraints=False), {"ltc_constraints": "explicit"}),
}


def _ncps_steps(rnn, x, dt):
    """ncps's outputs per step, the cell stepped by hand (dt as (batch, 1))."""
    cell = rnn.rnn_cell
    h = torch.zeros(x.shape[0], rnn.state_size)
    c = torch.zeros(x.shape[0], rnn.state_size)
    outs = []
    for t in range(x.shape[1]):
        if getattr(rnn, "use_mixed", False):
            h, c = rnn.lstm(x[:, t], (h, c))
        out, h = cell(x[:, t], h, dt[:, t:t + 1])
        outs.append(out)
    out = torch.stack(outs, 1)
    fc = getattr(rnn, "fc", None)
    return fc(out) if isinstance(fc, torch.nn.Linear) else out


def _save(module: torch.nn.Module, path) -> None:
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))


@pytest.mark.parametrize("config", list(CONFIGS))
def test_imported_forward_equals_ncps(config, tmp_path):
    make, settings = CONFIGS[config]
    torch.manual_seed(0)
    rnn = make()
    with torch.no_grad():  # ncps's LTC starts with an identity output map: make it count
        for name, p in rnn.named_parameters():
            if name.endswith(("output_w", "output_b", "input_w", "input_b")):
                p.add_(torch.randn_like(p) * 0.3)
    out_width = rnn.rnn_cell.motor_size if config.startswith("ltc") else (
        4 if config == "cfc-proj" else rnn.output_size if hasattr(rnn, "output_size") else rnn.state_size)
    module = torch.nn.ModuleDict({"rnn": rnn, "fc": torch.nn.Linear(out_width, 2)})
    _save(module, tmp_path / "w.safetensors")
    ckpt = import_ncps(tmp_path / "w.safetensors", ImportNcpsConfig(dataset="xor", readout="fc", **settings))
    checkpoint.save(ckpt, tmp_path / "m.st")
    model = model_from_checkpoint(checkpoint.load(tmp_path / "m.st"))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, 1, generator=g)
    dt = torch.rand(B, T, generator=g) * 2 + 0.1
    rnn.eval()
    with torch.no_grad():
        want = module["fc"](_ncps_steps(rnn, x, dt)[:, -1])
        got = model(x, dt)
    assert got.shape == want.shape == (B, 2)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
    entry = ckpt.record["history"][0]
    assert entry["command"] == "import ncps"
    assert entry["inputs"] == {str(tmp_path / "w.safetensors"): checkpoint.file_sha256(tmp_path / "w.safetensors")}


def _xor_by_length(split):
    """(x, y) groups of equal valid length: ncps has no mask, so each group runs unpadded."""
    lengths = split.mask.sum(1)
    for n in sorted(set(lengths.tolist())):
        rows = lengths == n
        yield split.x[rows][:, :n], split.y[rows]


def test_a_model_ncps_trained_imports_with_the_same_accuracy(tmp_path, cli):
    from cfctool.configs import DataConfig
    from cfctool.data.registry import load_dataset

    data = load_dataset(DataConfig(dataset="xor"))
    torch.manual_seed(0)
    rnn = ncps_torch.CfC(1, AutoNCP(12, 2, seed=11), batch_first=True)
    opt = torch.optim.Adam(rnn.parameters(), lr=0.02)
    groups = list(_xor_by_length(data.splits["train"]))
    for step in range(60):  # a short training: the point is a real ncps model, not a good one
        x, y = groups[step % len(groups)]
        out, _ = rnn(x[:256])
        loss = torch.nn.functional.cross_entropy(out[:, -1], y[:256])
        opt.zero_grad()
        loss.backward()
        opt.step()
    rnn.eval()
    with torch.no_grad():
        right = sum(int((rnn(x)[0][:, -1].argmax(-1) == y).sum()) for x, y in _xor_by_length(data.splits["test"]))
    ncps_accuracy = right / len(data.splits["test"])
    _save(torch.nn.ModuleDict({"rnn": rnn}), tmp_path / "xor.safetensors")
    r = cli("import", "ncps", tmp_path / "xor.safetensors", "--dataset", "xor", "-o", tmp_path / "xor.st", "-q")
    assert r.code == 0, r.err
    assert r.out.strip() == str(tmp_path / "xor.st")
    r = cli("eval", tmp_path / "xor.st", "--json", "-q")
    assert r.code == 0, r.err
    import json

    assert json.loads(r.out)["accuracy"] == pytest.approx(ncps_accuracy, abs=1e-9)
    assert 0.5 < ncps_accuracy  # it learned something: the accuracies compared are not both chance by construction


def test_export_ncps_round_trip(trained_xor, tmp_path, cli):
    """Our model -> ncps's layout (ncps itself loads it and computes our outputs) -> import."""
    from cfctool.models import ncps_layout

    for arch in ("cfc-deep", "cfc-ncp", "ltc"):
        out = tmp_path / f"{arch}.safetensors"
        r = cli("export", trained_xor[arch], "--format", "ncps", "-o", out)
        assert r.code == 0, r.err
        assert r.out.strip() == str(out) and "load_state_dict" in r.err
        ckpt = checkpoint.load(trained_xor[arch])
        ours = model_from_checkpoint(ckpt)
        state = load_file(str(out))
        rnn = ncps_layout.build(ckpt.arch, 1)
        rnn.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")}, strict=True)
        readout = torch.nn.Linear(*state["readout.weight"].shape[::-1])
        readout.load_state_dict({"weight": state["readout.weight"], "bias": state["readout.bias"]})
        x = torch.randn(B, T, 1, generator=torch.Generator().manual_seed(2))
        dt = torch.rand(B, T, generator=torch.Generator().manual_seed(3)) + 0.5
        with torch.no_grad():
            assert (readout(_ncps_steps(rnn.eval(), x, dt)[:, -1]) - ours(x, dt)).abs().max() <= 1e-5
        settings = ["--activation", ckpt.arch["backbone_activation"]] if "backbone_activation" in ckpt.arch else []
        r = cli("import", "ncps", out, "--dataset", "xor", "--readout", "readout", *settings, "-o", tmp_path / "b.st")
        assert r.code == 0, r.err
        back = checkpoint.load(tmp_path / "b.st")
        with torch.no_grad():
            assert (model_from_checkpoint(back)(x, dt) - ours(x, dt)).abs().max() <= 1e-6


def test_import_errors_say_what_to_do(tmp_path, cli):
    (tmp_path / "w.pt").write_bytes(b"not read")
    r = cli("import", "ncps", tmp_path / "w.pt", "--dataset", "xor", "-o", tmp_path / "o.st")
    assert r.code == 1 and "never unpickles" in r.err and "safetensors.torch.save_file(model.state_dict()" in r.err
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    r = cli("import", "ncps", tmp_path / "bad.safetensors", "--dataset", "xor", "-o", tmp_path / "o.st")
    assert r.code == 1 and "is not a safetensors file" in r.err and not (tmp_path / "o.st").exists()
    r = cli("import", "ncps", tmp_path / "none.safetensors", "--dataset", "xor", "-o", tmp_path / "o.st")
    assert r.code == 1 and "does not exist" in r.err
    torch.manual_seed(0)

    def run(module, *flags):
        _save(module, tmp_path / "w.safetensors")
        return cli("import", "ncps", tmp_path / "w.safetensors", "--dataset", "xor", *flags, "-o", tmp_path / "o.st")

    r = run(torch.nn.ModuleDict({"fc": torch.nn.Linear(3, 2)}))
    assert r.code == 1 and "no ncps CfC or LTC in this file" in r.err
    r = run(torch.nn.ModuleDict({"rnn": ncps_torch.CfC(3, 8)}), "--readout", "fc")
    assert r.code == 2 and "reads 3 inputs per step, but data set 'xor' has 1" in r.err
    r = run(torch.nn.ModuleDict({"rnn": ncps_torch.CfC(1, 8)}))
    assert r.code == 2 and "gives 8 values per step but 'xor' has 2 outputs: give --readout" in r.err
    r = run(torch.nn.ModuleDict({"rnn": ncps_torch.CfC(1, 8)}), "--readout", "head")
    assert r.code == 2 and "--readout head: the file has no head.weight" in r.err
    r = run(torch.nn.ModuleDict({"rnn": ncps_torch.CfC(1, 8, mode="pure"), "fc": torch.nn.Linear(8, 2)}),
            "--readout", "fc", "--mode", "default")
    assert r.code == 2 and "--mode default does not fit these weights: they have w_tau" in r.err
    r = run(torch.nn.ModuleDict({"rnn": ncps_torch.CfC(1, 8, backbone_layers=3, backbone_dropout=0.1),
                                 "fc": torch.nn.Linear(8, 2)}), "--readout", "fc")
    assert r.code == 2 and "give their rate with --backbone-dropout" in r.err
    r = run(torch.nn.ModuleDict({"rnn": ncps_torch.CfC(1, AutoNCP(12, 2, seed=5)), "fc": torch.nn.Linear(2, 2)}),
            "--readout", "fc", "--wiring-seed", "6", "--sparsity", "0.5")
    assert r.code == 2 and "draws other masks than the file's" in r.err
    r = run(torch.nn.ModuleDict({"rnn": ncps_torch.CfC(1, AutoNCP(12, 2, seed=5)), "fc": torch.nn.Linear(2, 2)}),
            "--readout", "fc", "--wiring-seed", "5", "--sparsity", "0.5")
    assert r.code == 0, r.err  # the right seed is checked and recorded
    assert checkpoint.load(tmp_path / "o.st").arch["wiring_seed"] == 5


def test_export_ncps_refuses_what_ncps_cannot_hold():
    from cfctool.errors import ConfigError
    from cfctool.models.ncps_layout import representable

    base = {"name": "cfc", "backbone_widths": [64, 64]}
    representable(base)
    for arch, message in (({**base, "backbone_widths": [64, 32]}, r"one backbone width .* this model's are \[64, 32\]"),
                          ({**base, "head_rank": 8}, "heads are factored"),
                          ({**base, "input_projected": True}, "embedding is folded"),
                          ({"name": "ode-rnn"}, "ncps has no ode-rnn model")):
        with pytest.raises(ConfigError, match=message):
            representable(arch)


def test_a_wired_cfc_saved_without_its_masks_is_rebuilt_from_its_seed(tmp_path, cli):
    torch.manual_seed(0)
    rnn = ncps_torch.CfC(1, AutoNCP(16, 2, sparsity_level=0.5, seed=9))
    module = torch.nn.ModuleDict({"rnn": rnn, "fc": torch.nn.Linear(2, 2)})
    state = {k: v.contiguous() for k, v in module.state_dict().items() if not k.endswith("sparsity_mask")}
    save_file(state, str(tmp_path / "w.safetensors"))
    r = cli("import", "ncps", tmp_path / "w.safetensors", "--dataset", "xor", "--readout", "fc", "-o", tmp_path / "o.st")
    assert r.code == 2 and "no wiring masks" in r.err and "--wiring-seed and --sparsity" in r.err
    r = cli("import", "ncps", tmp_path / "w.safetensors", "--dataset", "xor", "--readout", "fc", "--wiring-seed", "9",
            "--sparsity", "0.5", "-o", tmp_path / "o.st")
    assert r.code == 0, r.err
    model = model_from_checkpoint(checkpoint.load(tmp_path / "o.st"))
    x = torch.randn(B, T, 1, generator=torch.Generator().manual_seed(1))
    dt = torch.rand(B, T, generator=torch.Generator().manual_seed(2)) + 0.5
    with torch.no_grad():
        want = module["fc"](_ncps_steps(rnn.eval(), x, dt)[:, -1])
        assert (model(x, dt) - want).abs().max() <= 1e-5


@pytest.mark.parametrize("config", ["cfc-mixed-indicator-regression", "ltc-classes", "ncp-forecast"])
def test_an_ncps_model_of_your_own_data_imports_from_its_description(config, tmp_path, cli):
    """`import ncps --dataset DESCRIPTION.yaml`: an ncps model that read the file's own values
    (a missing one as 0 beside its 0/1 flag) becomes a checkpoint on standardised inputs that
    computes what ncps does, checked against ncps on the test sequences; eval then runs."""
    import numpy as np

    rng = np.random.default_rng(0)
    n, steps = 60, 7
    x = rng.normal(size=(n, steps, 3)) * np.array([40.0, 1.0, 0.02]) + np.array([120.0, -2.0, 0.5])
    description = {"data_file": "d.npz"}
    if config.startswith("cfc"):
        x[rng.random(x.shape) < 0.3] = np.nan
        np.savez(tmp_path / "d.npz", x=x, y=rng.normal(70.0, 9.0, size=n))
        description.update(target="regression", missing="indicator")
        rnn, outputs = ncps_torch.CfC(6, 8, mixed_memory=True, backbone_units=16, backbone_layers=1), 1
    elif config.startswith("ltc"):
        np.savez(tmp_path / "d.npz", x=x, y=np.where(x[:, :, 1].mean(1) > -2, "up", "down"))
        rnn, outputs = ncps_torch.LTC(3, 8), 2
    else:
        np.savez(tmp_path / "d.npz", x=x)
        description.update(target="forecast")
        rnn, outputs = ncps_torch.CfC(3, AutoNCP(12, 3, seed=2)), 3
    import yaml

    (tmp_path / "data.yaml").write_text(yaml.safe_dump(description))
    torch.manual_seed(0)
    width = rnn.rnn_cell.motor_size if config.startswith("ltc") else rnn.output_size
    module = torch.nn.ModuleDict({"rnn": rnn, "fc": torch.nn.Linear(width, outputs)})
    _save(module, tmp_path / "w.safetensors")
    r = cli("import", "ncps", tmp_path / "w.safetensors", "--dataset", tmp_path / "data.yaml", "--readout", "fc",
            "-o", tmp_path / "m.st")
    assert r.code == 0, r.err
    ckpt = checkpoint.load(tmp_path / "m.st")
    from cfctool.data.registry import load_split

    test = load_split(ckpt.task, "test", None, ckpt.task_tensors())
    held = np.sort(np.random.default_rng(0).permutation(n)[:12])  # the default split: seed 0, a fifth
    raw = x[held]
    if description.get("missing") == "indicator":
        raw = np.concatenate([np.nan_to_num(raw, nan=0.0), (~np.isnan(raw)).astype(float)], -1)
    if description.get("target") == "forecast":
        raw = raw[:, :-1]
    raw = torch.tensor(raw, dtype=torch.float32)
    with torch.no_grad():
        want = module["fc"](_ncps_steps(rnn, raw, torch.ones(raw.shape[:2])))
        got = model_from_checkpoint(ckpt).eval()(test.x, test.dt, test.mask)
    if description.get("target") == "regression":  # ours: standardised targets, from the training values
        train_y = np.delete(np.load(tmp_path / "d.npz")["y"], held)
        want = (want[:, -1].double() - train_y.mean()) / train_y.std()
    elif description.get("target") == "forecast":
        rest = np.delete(x, held, 0).reshape(-1, 3)
        want = (want.double() - torch.tensor(rest.mean(0))) / torch.tensor(rest.std(0))
    else:
        want = want[:, -1]
    got, want = got.double(), want.double()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())), float((got - want).abs().max())
    assert cli("eval", tmp_path / "m.st").code == 0
