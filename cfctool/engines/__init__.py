"""Inference engines: the registry is `cfctool.engine_registry.ENGINES` (torch-free, one line
an engine); this package holds the built-in engines' `supports` and `build` functions and the
choice; every report names the engine that ran.

An entry says which models it `supports` (given the checkpoint when there is one) and how
it `build`s the module that runs them, with the encodings it executes as stored.
`choose` takes the first entry, in the registry's order, that supports the checkpoint and keeps
its lossy encodings; the training `loop` runs anything, on decoded weights, and says when
the numbers are therefore simulated. The names are the one vocabulary of engines: `eval`
and `bench` reports, `bench --engine`, the ONNX export.

The folded engines compute a sequence as a loop over one step function on folded weights;
`FoldedStep` is that step's protocol, which the ONNX export turns into a Scan body and a
generated-code engine would translate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from cfctool import engine_registry as registry
from cfctool.checkpoint import Checkpoint
from cfctool.encodings import CODECS, INTEGER_CODECS
from cfctool.engine_registry import EngineEntry, names
from cfctool.errors import ConfigError
from cfctool.models import inference, ode_inference
from cfctool.models.quantized import QuantFoldedCfC, supports_integer
from cfctool.records import QuantizationRecord


@runtime_checkable
class FoldedStep(Protocol):
    """One sequence model's weights folded for one choice of dt: time_major(x, dt, mask) ->
    (u, dts, masks), each (time, batch, ...), dts None when dt is constant; initial(u) -> the
    per-cell states; step(states, u_t, dt_t, mask_t) -> the new states (masked steps keep
    the old ones); readout(y) -> logits from the last cell's state (every step's when
    per_step)."""

    per_step: bool

    def time_major(self, x: torch.Tensor, dt: torch.Tensor | None, mask: torch.Tensor | None): ...

    def initial(self, u: torch.Tensor) -> list[torch.Tensor]: ...

    def step(
        self, ys: list[torch.Tensor], u_t: torch.Tensor, dt_t: torch.Tensor | None, mask_t: torch.Tensor | None
    ) -> list[torch.Tensor]: ...

    def readout(self, y: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FoldedEngine(Protocol):
    """A folded engine module: called like the model, and `folded(dt)` gives its step."""

    def __call__(
        self, x: torch.Tensor, dt: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def folded(self, dt: float | None) -> FoldedStep: ...


def _quantization(ckpt: Checkpoint | None) -> QuantizationRecord | None:
    quant = QuantizationRecord.read(ckpt.record) if ckpt is not None else None
    return quant if quant is not None and quant.runs_on_integers else None


# the built-in entries' functions (named in cfctool.engine_registry)


def int8_supports(ckpt: Checkpoint | None, model: nn.Module) -> bool:
    return _quantization(ckpt) is not None and supports_integer(ckpt, model)


def int8_build(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    settings = integer_settings(ckpt, model)
    assert settings is not None  # `supports` said the engine runs it
    return QuantFoldedCfC(model, ckpt, settings["act_scales"], dynamic=settings["dynamic"], fuse=settings["fuse"])


def cfc_supports(ckpt: Checkpoint | None, model: nn.Module) -> bool:
    return inference.supports(model)


def cfc_build(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    return inference.FoldedCfC(model)


def ode_supports(ckpt: Checkpoint | None, model: nn.Module) -> bool:
    return ode_inference.supports(model)


def ode_build(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    return ode_inference.FoldedODE(model)


def any_model(ckpt: Checkpoint | None, model: nn.Module) -> bool:
    return True


def loop_build(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    return model.eval()


def c_int8_supports(ckpt: Checkpoint | None, model: nn.Module) -> bool:
    return integer_settings(ckpt, model) is not None


def c_int8_build(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    return c_engine(ckpt, model, integer_settings(ckpt, model))


def c_float_supports(ckpt: Checkpoint | None, model: nn.Module) -> bool:
    return inference.supports(model) or ode_inference.supports(model)


def c_float_build(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    return c_engine(ckpt, model, None)


def has_checkpoint(ckpt: Checkpoint | None, model: nn.Module) -> bool:
    return ckpt is not None


def exported_only(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    raise ConfigError("the onnxruntime engine runs an exported graph: `cfctool bench --engine onnxruntime` times it")


def integer_settings(ckpt: Checkpoint | None, model: nn.Module) -> dict | None:
    """What the integer step of a quantized checkpoint needs (its activation scales, dynamic or
    static, fused or not), or None when no integer engine runs it."""
    quant = _quantization(ckpt)
    if quant is None or not supports_integer(ckpt, model):
        return None
    return {"act_scales": quant.activation_scales, "dynamic": quant.scheme == "dynamic", "fuse": quant.fuse}


def c_engine(ckpt: Checkpoint | None, model: nn.Module, integer: dict | None = None) -> nn.Module:
    """The checkpoint's generated C, compiled: the integer step with `integer` (see
    integer_settings), float32 without (also for a quantized checkpoint's decoded weights)."""
    from cfctool.engines.native import CModel

    if ckpt is None:
        raise ConfigError("the c engine needs a checkpoint")
    return CModel(ckpt, model, integer)


AUTO = "auto"  # the first automatic entry that runs the checkpoint (what `eval` runs by default)
ALIASES = {"torch": AUTO}  # `torch` named the automatic choice before the engines had a registry


def entry(name: str) -> EngineEntry:
    """The first registry entry of that name (what it can do: entries of one name agree)."""
    found = registry.entry(name)
    if found is None:
        raise ConfigError(f"unknown engine '{name}'; engines: {', '.join(names())}")
    return found


def _keeps(e: EngineEntry) -> set[str]:
    return set(INTEGER_CODECS) if e.keeps_integer else set()


@dataclass
class Engine:
    name: str
    module: torch.nn.Module
    note: str | None = None
    entry: EngineEntry | None = None  # the registry entry that built it (its capabilities)

    def describe(self) -> dict:
        return {"engine": self.name, **({"engine_note": self.note} if self.note else {})}


def fastest(model: nn.Module) -> Engine:
    """The fastest exact form of a float model as it is now (training's validation, export):
    the first entry that supports the model without a checkpoint."""
    found = next(e for e in registry.ENGINES if e.auto and e.call("supports", None, model))
    return Engine(found.name, found.call("build", None, model), entry=found)


def choose(ckpt: Checkpoint, model: nn.Module, name: str | None = None) -> Engine:
    """The engine that runs `ckpt` (whose decoded weights `model` holds): the first eligible
    entry, or the first eligible one called `name`."""
    if name is not None and name not in names():
        raise ConfigError(f"unknown engine '{name}'; engines: {', '.join(names())}")
    codecs = sorted({spec["codec"] for spec in ckpt.encodings.values()})
    lossy = {c for c in codecs if not CODECS[c].exact}  # exact ones run as dense values: nothing simulated
    if name is not None and not entry(name).in_process:
        entry(name).call("build", ckpt, model)  # says how it runs
    eligible = [
        e
        for e in registry.ENGINES
        if (e.auto if name is None else e.name == name)
        and e.in_process
        and e.call("supports", ckpt, model)
        and (e.runs_decoded or lossy <= _keeps(e))
    ]
    if not eligible:
        raise ConfigError(
            f"the {name} engine does not run this {ckpt.arch['name']} checkpoint"
            + (f" ({', '.join(codecs)}-encoded tensors)" if codecs else "")
            + f"; engines: {', '.join(names())}"
        )
    chosen = eligible[0]
    module = chosen.call("build", ckpt, model)
    if lossy - _keeps(chosen):
        return Engine(
            chosen.name,
            module,
            f"{', '.join(codecs)}-encoded tensors are decoded to float32 and run "
            f"through the {chosen.name} engine: simulated, not integer or sparse kernels",
            chosen,
        )
    if codecs and not _keeps(chosen):
        return Engine(
            chosen.name,
            module,
            f"{', '.join(codecs)}-encoded tensors decoded exactly to dense float32: "
            "dense kernels (zeros are multiplied, not skipped)",
            chosen,
        )
    return Engine(chosen.name, module, chosen.note, chosen)
