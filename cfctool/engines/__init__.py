"""Which engine runs a checkpoint, said out loud: every report names it.

A family offers its fastest exact inference form (e.g. 'folded' for 'default'-mode CfCs)
or the training 'loop'. Folding is refused when the checkpoint stores tensors encoded
(quantized or sparse) in a way the folded form would not keep: such a model runs through
the loop on its decoded weights, and the note says that the numbers are simulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cfctool.checkpoint import Checkpoint
from cfctool.families.build import family_of
from cfctool.models.quantized import QuantFoldedCfC, supports_integer

# encodings each engine executes as stored; others are decoded to dense float first
ENGINE_KEEPS: dict[str, tuple[str, ...]] = {"folded": (), "loop": (), "folded-int8": ("int8", "int4")}
# encodings whose decoding is exact: any engine runs their dense values, nothing is simulated
EXACT_CODECS = ("sparse",)


@dataclass
class Engine:
    name: str
    module: torch.nn.Module
    note: str | None = None

    def describe(self) -> dict:
        return {"engine": self.name, **({"engine_note": self.note} if self.note else {})}


def choose(ckpt: Checkpoint, model: torch.nn.Module) -> Engine:
    quant = (ckpt.record.get("compression") or {}).get("quantization")
    if quant and quant.get("scheme") in ("static", "dynamic", "qat"):
        if supports_integer(ckpt, model):
            module = QuantFoldedCfC(model, ckpt, quant.get("activation_scales") or {},
                                    dynamic=quant["scheme"] == "dynamic", fuse=quant.get("fuse", True))
            return Engine("folded-int8", module, "int8 products with int32 accumulation (int4 weights widened to "
                                                 "int8; with constant dt the two gate heads summed and requantized "
                                                 "per row at load); the token table and the once-per-sequence "
                                                 "readout in float32")
    name, module = family_of(model).engine(model)
    codecs = sorted({spec["codec"] for spec in ckpt.encodings.values()})
    lossy = [c for c in codecs if c not in ENGINE_KEEPS[name] and c not in EXACT_CODECS]
    if name != "loop" and lossy:
        name, module = "loop", model.eval()
    if lossy:
        return Engine(name, module, f"{', '.join(codecs)}-encoded tensors are decoded to float32 and run through "
                                    f"the {name} engine: simulated, not integer or sparse kernels")
    if codecs:
        return Engine(name, module, f"{', '.join(codecs)}-encoded tensors decoded exactly to dense float32: dense "
                                    "kernels (zeros are multiplied, not skipped)")
    return Engine(name, module)
