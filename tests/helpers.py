"""Helpers shared by tests (importable because pytest puts tests/ on sys.path)."""

import json
import struct

import torch


def tiny_run(arch: str, **overrides):
    """A seconds-long XOR training run for any architecture."""
    from cfctool.configs import resolve

    settings = {"train_size": 256, "test_size": 128, "epochs": 1, "batch_size": 64, "hidden": 8, "bits": 6, "seed": 0}
    if arch in ("cfc", "cfc-deep"):
        settings.update(backbone_units=8)
    if arch == "cfc-deep":
        settings.update(backbone_layers=2)
    settings.update(overrides)
    return resolve("xor", arch, overrides=settings)


# A CfC written from the CfC paper without any of the library's tricks: the
# independent reference the fused training loop and the folded inference engine are held to.
ACT = {"relu": torch.relu, "silu": torch.nn.functional.silu, "tanh": torch.tanh, "lecun_tanh": lambda v: 1.7159 * torch.tanh(0.666 * v)}


def plain_cell_step(cell, inp, h, dt, act):
    """One step of the CfC paper, written without any of the library's tricks."""
    z = torch.cat([inp, h], 1)
    for i, layer in enumerate(cell.backbone):
        z = act(z @ layer.weight.T + layer.bias)
    m = cell.sparsity_mask if cell.sparsity_mask is not None else 1.0
    head = ACT[getattr(cell, "head_activation", "tanh")]  # the ff1/ff2 activation
    ff1 = z @ (cell.ff1.weight * m).T + cell.ff1.bias
    if cell.mode == "pure":
        return -cell.A * torch.exp(-dt * (torch.abs(cell.w_tau) + torch.abs(ff1))) * ff1 + cell.A
    ff2 = z @ (cell.ff2.weight * m).T + cell.ff2.bias
    t_a = z @ cell.time_a.weight.T + cell.time_a.bias
    t_b = z @ cell.time_b.weight.T + cell.time_b.bias
    gate = torch.sigmoid(t_a * dt + t_b)
    if cell.mode == "no_gate":
        return head(ff1) + gate * head(ff2)
    return head(ff1) * (1 - gate) + gate * head(ff2)


def plain_lstm_step(lstm, inp, h, c):
    z = inp @ lstm.input_map.weight.T + lstm.input_map.bias + h @ lstm.recurrent_map.weight.T
    i, ig, fg, og = z.chunk(4, 1)
    c = c * torch.sigmoid(fg + 1.0) + torch.tanh(i) * torch.sigmoid(ig)
    return torch.tanh(c) * torch.sigmoid(og), c


def plain_run(core, x, dt, mask, act):
    B, T, _ = x.shape
    states = [torch.zeros(B, n) for n in core.sizes]
    c = torch.zeros(B, core.state_size)
    outs = []
    for t in range(T):
        keep = mask[:, t : t + 1]
        if core.lstm is not None:
            h_all, c_new = plain_lstm_step(core.lstm, x[:, t], torch.cat(states, 1), c)
            c = torch.where(keep, c_new, c)
            states = list(h_all.split(core.sizes, 1))
        inp = x[:, t]
        for k, cell in enumerate(core.cells):
            new = plain_cell_step(cell, inp, states[k], dt[:, t : t + 1], act)
            states[k] = torch.where(keep, new, states[k])
            inp = states[k]
        outs.append(states[-1])
    return torch.stack(outs, 1), states[-1]


def with_record(data: bytes, change) -> bytes:
    """The same file with its record changed by `change(record)` (the tensor data as they are)."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    record = json.loads(header["__metadata__"]["cfctool.record"])
    change(record)
    header["__metadata__"]["cfctool.record"] = json.dumps(record)
    return resign(header, data[8 + n:])


def resign(header: dict, body: bytes) -> bytes:
    """A file of `header` and `body` whose in-file header hash matches them again: what a
    tool (or an attacker) that edits a record and re-hashes it writes. Tests of what loading
    checks beyond the hash start from here."""
    from cfctool import checkpoint

    if checkpoint.META_SHA256 in header.get("__metadata__", {}):
        header["__metadata__"][checkpoint.META_SHA256] = checkpoint._content_sha256(header, [body])
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + body


def matches_its_declaration(name: str, split) -> None:
    """Every declared tensor is there with its dtype, rank and fixed sizes; the undeclared
    ones (dt, mask) are absent; N and T agree across tensors."""
    from cfctool.data.registry import tensor_spec

    spec = {t: (shape, dtype) for t, shape, dtype, _ in tensor_spec(name)}
    sizes: dict[str, int] = {}
    for t in ("x", "y", "dt", "mask"):
        value = getattr(split, t)
        if t not in spec:
            assert value is None or (t == "dt" and bool((value == 1).all())), f"{name}: {t} is not declared"
            continue
        shape, dtype = spec[t]
        assert value is not None and str(value.dtype) == f"torch.{dtype}", (name, t, value.dtype)
        assert value.dim() == len(shape), (name, t, tuple(value.shape), shape)
        for want, got in zip(shape, value.shape):
            if isinstance(want, int):
                assert got == want, (name, t, tuple(value.shape), shape)
            else:
                assert sizes.setdefault(want, got) == got, (name, t, want)
