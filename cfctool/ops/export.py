"""`cfctool export`: a checkpoint as an ONNX graph, verified against PyTorch on real inputs.

The recurrent loop is unrolled for a fixed sequence length (ONNX Runtime runs an
unrolled graph about 2x faster than PyTorch eager; its Loop operator is slower than
eager). Batch size stays dynamic. `onnx`, `onnxscript` and `onnxruntime` come with the
optional extra `cfctool[onnx]`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from cfctool.checkpoint import Checkpoint
from cfctool.data.base import Split
from cfctool.errors import CfcError, ConfigError

# Allowed difference from PyTorch, per unit of output scale: 1e-4 absolute for outputs of
# order 1, growing with the largest |output| (float32 rounding grows with magnitude: a
# Person Activity model with logits near 15 differs by 2.5e-4 after 50 steps).
TOLERANCE = 1e-4


def allowed_difference(reference) -> float:
    return TOLERANCE * max(1.0, float(abs(reference).max()))


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"ONNX support needs the optional packages ({exc.name} is missing): "
                          "pip install 'cfctool[onnx]'") from None


class _Graph(torch.nn.Module):
    """The model with every input explicit, as the ONNX graph's signature."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, dt, mask):
        return self.model(x, dt, mask)


def graph_inputs(split: Split) -> dict[str, torch.Tensor]:
    """The three graph inputs for a batch; dt and mask default to 1 and all-valid."""
    shape = split.x.shape[:2]
    dt = split.dt if split.dt is not None else torch.ones(shape)
    mask = split.mask if split.mask is not None else torch.ones(shape, dtype=torch.bool)
    return {"x": split.x, "dt": dt.float(), "mask": mask.bool()}


def export_onnx(ckpt: Checkpoint, path: str | Path, example: Split) -> dict[str, Any]:
    """Write `path` (atomically) and return {'max_abs_diff', 'seq_len', 'nodes'}; raise above TOLERANCE."""
    require_onnx()
    import numpy as np
    import onnxruntime as ort

    from cfctool.checkpoint import atomic_write
    from cfctool.models.registry import model_from_checkpoint

    model = model_from_checkpoint(ckpt)
    inputs = graph_inputs(example)
    names = list(inputs)
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(devnull):
            try:
                program = torch.onnx.export(_Graph(model), tuple(inputs.values()), dynamo=True, input_names=names,
                                            output_names=["logits"],
                                            dynamic_shapes=tuple({0: "batch"} for _ in names), verbose=False)
            except Exception as exc:  # the exporter raises many kinds
                raise CfcError(f"ONNX export of '{ckpt.arch['name']}' failed: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        program.save(str(tmp_path))
        payload = tmp_path.read_bytes()
    session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        want = model(**{"x": inputs["x"], "dt": inputs["dt"], "mask": inputs["mask"]}).numpy()
    diff = float(np.abs(got - want).max())
    allowed = allowed_difference(want)
    if not diff <= allowed:
        raise CfcError(f"the exported graph differs from PyTorch by {diff:.3g} (> {allowed:.3g} = {TOLERANCE} x "
                       f"max(1, largest |output|)); not written. Please report this with the checkpoint")
    out = Path(path)
    if not out.parent.exists():
        raise ConfigError(f"cannot write {out}: directory {out.parent} does not exist")
    atomic_write(out, payload)
    mismatched = int((got.argmax(-1) != want.argmax(-1)).sum())
    return {"path": str(out), "max_abs_diff": diff, "allowed_diff": allowed, "max_abs_output": float(np.abs(want).max()),
            "argmax_mismatches": mismatched, "seq_len": int(inputs["x"].shape[1]),
            "bytes": len(payload), "verified_on": int(inputs["x"].shape[0])}
