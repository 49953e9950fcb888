"""Model families: explicit recorded structure (widths, NCP layers), older records, and the
per-step internals `capture` exposes."""

import json
import struct

import pytest
import torch
from helpers import ACT, plain_run, tiny_run

from cfctool import checkpoint
from cfctool.checkpoint import Checkpoint, load, save
from cfctool.data.xor import generate
from cfctool.families.build import build_model, model_from_checkpoint
from cfctool.ops.train import train

TASK = {"dataset": "xor", "input": {"kind": "features", "size": 3},
        "output": {"kind": "classification", "size": 2, "per_step": False}}


def test_per_layer_backbone_widths_save_load_and_match_the_paper(tmp_path):
    arch = dict(name="cfc", hidden=100, mode="default", backbone_widths=[64, 32], backbone_activation="relu",
                backbone_dropout=0.0, mixed_memory=False)
    torch.manual_seed(0)
    model = build_model(arch, TASK)
    assert [layer.out_features for layer in model.rnn.cells[0].backbone] == [64, 32]
    ckpt = Checkpoint(tensors={k: v.detach() for k, v in model.state_dict().items()},
                      record=checkpoint.new_record(arch, TASK))
    save(ckpt, tmp_path / "w.st")
    back = load(tmp_path / "w.st")
    assert back.arch["backbone_widths"] == [64, 32]
    loaded = model_from_checkpoint(back)
    x, dt = torch.randn(4, 7, 3), torch.rand(4, 7) + 0.1
    mask = torch.rand(4, 7) > 0.3
    with torch.no_grad():
        _, ref = plain_run(loaded.rnn, x, dt, mask, ACT["relu"])
        assert (loaded(x, dt, mask) - loaded.head(ref)).abs().max() <= 1e-5
        from cfctool.models.inference import FoldedCfC  # the folded engine serves the new sizes too

        assert (FoldedCfC(loaded)(x, dt, mask) - loaded.head(ref)).abs().max() <= 1e-5


def test_train_records_explicit_sizes_and_widths_flag():
    ckpt = train(tiny_run("cfc", backbone_widths="12,5", max_steps=2))
    assert ckpt.arch["backbone_widths"] == [12, 5] and "backbone_units" not in ckpt.arch
    ncp = train(tiny_run("cfc-ncp", hidden=10, max_steps=2))
    assert sum(ncp.arch["ncp_layers"]) == 10 and ncp.arch["ncp_layers"][-1] == 2


def test_ncp_with_other_layer_sizes_is_an_ordinary_checkpoint(trained_xor, tmp_path):
    """A wired model with a neuron removed: new recorded sizes and its own masks, no regeneration."""
    ckpt = load(trained_xor["cfc-ncp"])
    inter, command, motor = ckpt.arch["ncp_layers"]
    keep = torch.arange(inter - 1)  # drop the last inter neuron
    t = dict(ckpt.tensors)
    for head in ("ff1", "ff2", "time_a", "time_b"):
        t[f"rnn.cells.0.{head}.weight"] = t[f"rnn.cells.0.{head}.weight"][keep][:, torch.cat([torch.arange(1), 1 + keep])]
        t[f"rnn.cells.0.{head}.bias"] = t[f"rnn.cells.0.{head}.bias"][keep]
        t[f"rnn.cells.1.{head}.weight"] = torch.cat([t[f"rnn.cells.1.{head}.weight"][:, keep],
                                                     t[f"rnn.cells.1.{head}.weight"][:, inter:]], 1)
    t["rnn.cells.0.sparsity_mask"] = t["rnn.cells.0.sparsity_mask"][keep][:, torch.cat([torch.arange(1), 1 + keep])]
    t["rnn.cells.1.sparsity_mask"] = torch.cat([t["rnn.cells.1.sparsity_mask"][:, keep],
                                                t["rnn.cells.1.sparsity_mask"][:, inter:]], 1)
    smaller = ckpt.derive(tensors=t, arch={**ckpt.arch, "hidden": ckpt.arch["hidden"] - 1,
                                           "ncp_layers": [inter - 1, command, motor]})
    save(smaller, tmp_path / "s.st")
    model = model_from_checkpoint(load(tmp_path / "s.st"))
    assert torch.equal(model.rnn.cells[1].sparsity_mask, t["rnn.cells.1.sparsity_mask"])  # the file's masks
    batch = generate(ckpt.task, "test", 16)
    with torch.no_grad():
        assert model(batch.x, batch.dt, batch.mask).shape == (16, 2)


def test_format_1_checkpoints_load(trained_xor, tmp_path):
    """A file written before explicit sizes: format 1 with backbone_units x backbone_layers."""
    data = trained_xor["cfc-deep"].read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    record = json.loads(header["__metadata__"]["cfctool.record"])
    widths = record["arch"].pop("backbone_widths")
    record["arch"].update(backbone_units=widths[0], backbone_layers=len(widths))
    record.pop("encodings")
    record["format"] = 1
    header["__metadata__"] = {"cfctool.format": "1", "cfctool.record": json.dumps(record)}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    old = tmp_path / "old.st"
    old.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    ckpt = load(old)
    assert ckpt.arch["backbone_widths"] == widths
    batch = generate(ckpt.task, "test", 16)
    with torch.no_grad():
        assert torch.equal(model_from_checkpoint(ckpt)(batch.x, batch.dt, batch.mask),
                           model_from_checkpoint(load(trained_xor["cfc-deep"]))(batch.x, batch.dt, batch.mask))
    header["__metadata__"]["cfctool.format"] = "0"
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    old.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    with pytest.raises(checkpoint.CheckpointError, match="format 0 is not supported .*formats 1 to 2"):
        load(old)


def test_capture_returns_each_cells_states_equal_to_the_loop():
    torch.manual_seed(2)
    ncp = build_model(dict(name="cfc-ncp", hidden=10, mode="default", sparsity=0.5, wiring_seed=1, motor=2,
                           mixed_memory=False), TASK).eval()
    deep = build_model(dict(name="cfc", hidden=6, mode="default", backbone_widths=[5, 4], backbone_activation="relu",
                            backbone_dropout=0.0, mixed_memory=False), TASK).eval()
    x, dt = torch.randn(3, 9, 3), torch.rand(3, 9) + 0.2
    mask = torch.rand(3, 9) > 0.3
    for model in (ncp, deep):
        got = model.capture(x, dt, mask)
        outs, _ = plain_run(model.rnn, x, dt, mask, ACT["relu"])
        cells = [got[f"cells.{k}.state"] for k in range(len(model.rnn.cells))]
        assert [c.shape for c in cells] == [(3, 9, n) for n in model.rnn.sizes]
        assert (cells[-1] - outs).abs().max() <= 1e-5
        with torch.no_grad():
            assert torch.equal(model.head(cells[-1][:, -1]), model(x, dt, mask))  # the same loop
    assert got["cells.0.backbone.0"].shape == (3, 9, 5) and got["cells.0.backbone.1"].shape == (3, 9, 4)
    assert (got["cells.0.backbone.1"] >= 0).all()  # ReLU activations
