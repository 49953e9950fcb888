"""Inference engines: one entry each, one line each in ENGINES; every report names the one
that ran.

An entry says which models it `supports` (given the checkpoint when there is one) and how
it `build`s the module that runs them, with the encodings it executes as stored (`keeps`).
`choose` takes the first entry, in ENGINES' order, that supports the checkpoint and keeps
its lossy encodings; the training `loop` runs anything, on decoded weights, and says when
the numbers are therefore simulated. The names are the one vocabulary of engines: `eval`
and `bench` reports, `bench --engine`, the ONNX export.

The folded engines compute a sequence as a loop over one step function on folded weights;
`FoldedStep` is that step's protocol, which the ONNX export turns into a Scan body and a
generated-code engine would translate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from cfctool.checkpoint import Checkpoint
from cfctool.encodings import CODECS, INTEGER_CODECS
from cfctool.errors import ConfigError
from cfctool.models import inference, ode_inference
from cfctool.models.quantized import QuantFoldedCfC, supports_integer
from cfctool.records import QuantizationRecord

INT8_NOTE = (
    "int8 products with int32 accumulation (int4 weights widened to int8; with constant dt the two gate "
    "heads summed and requantized per row at load); the token table and the once-per-sequence readout in "
    "float32"
)


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


@dataclass(frozen=True)
class EngineEntry:
    """One engine: what it runs and how it is built, and what it can do (the commands ask
    these fields, never the name)."""

    name: str
    supports: Callable[[Checkpoint | None, nn.Module], bool]  # checkpoint None: the model alone
    build: Callable[[Checkpoint | None, nn.Module], nn.Module]
    keeps: tuple[str, ...] = ()  # encodings executed as stored; others are decoded to dense float first
    runs_decoded: bool = False  # runs any encoding on its decoded weights (the numbers are then simulated)
    note: str | None = None
    auto: bool = True  # a candidate for the automatic choice (else only when asked for by name)
    folded: bool = False  # its module follows `FoldedEngine` (`folded(dt)` gives the step a Scan graph exports)
    integer: bool = False  # computes on the stored integer codes (int8 products, int32 sums)
    one_sequence: bool = False  # runs one sequence at a time and times its own steps (`last_seconds`, `last_steps`)
    in_process: bool = True  # builds a module in this process (else: an exported graph, which `bench` times)


def _quantization(ckpt: Checkpoint | None) -> QuantizationRecord | None:
    quant = QuantizationRecord.read(ckpt.record) if ckpt is not None else None
    return quant if quant is not None and quant.runs_on_integers else None


def _exported_only(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    raise ConfigError("the onnxruntime engine runs an exported graph: `cfctool bench --engine onnxruntime` times it")


def _int8(ckpt: Checkpoint | None, model: nn.Module) -> nn.Module:
    settings = integer_settings(ckpt, model)
    assert settings is not None  # `supports` said the engine runs it
    return QuantFoldedCfC(model, ckpt, settings["act_scales"], dynamic=settings["dynamic"], fuse=settings["fuse"])


ENGINES: list[EngineEntry] = [
    EngineEntry(
        "folded-int8",
        lambda ck, m: _quantization(ck) is not None and supports_integer(ck, m),
        _int8,
        keeps=INTEGER_CODECS,
        note=INT8_NOTE,
        folded=True,
        integer=True,
    ),
    EngineEntry("folded", lambda ck, m: inference.supports(m), lambda ck, m: inference.FoldedCfC(m), folded=True),
    EngineEntry(
        "folded", lambda ck, m: ode_inference.supports(m), lambda ck, m: ode_inference.FoldedODE(m), folded=True
    ),
    EngineEntry("loop", lambda ck, m: True, lambda ck, m: m.eval(), runs_decoded=True),
    # generated C compiled by the system compiler, one sequence at a time (cfctool.engines.native):
    # the folded-int8 step on the stored integers, else float32
    EngineEntry(
        "c",
        lambda ck, m: integer_settings(ck, m) is not None,
        lambda ck, m: c_engine(ck, m, integer_settings(ck, m)),
        keeps=INTEGER_CODECS,
        note="generated C99 (cfctool export --format c) of the folded-int8 step, compiled with the system "
        "compiler; one sequence at a time",
        auto=False,
        integer=True,
        one_sequence=True,
    ),
    EngineEntry(
        "c",
        lambda ck, m: inference.supports(m) or ode_inference.supports(m),
        lambda ck, m: c_engine(ck, m, None),
        runs_decoded=True,
        note="generated C99 (cfctool export --format c), compiled with the system compiler; one sequence at a "
        "time, float32",
        auto=False,
        one_sequence=True,
    ),
    # the checkpoint exported as an ONNX graph (cfctool.ops.export) and run by ONNX Runtime: bench builds it
    EngineEntry(
        "onnxruntime",
        lambda ck, m: ck is not None,
        _exported_only,
        keeps=INTEGER_CODECS,
        note="the exported ONNX graph on ONNX Runtime (the onnx extra)",
        auto=False,
        in_process=False,
    ),
]


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


def names() -> tuple[str, ...]:
    """The engines by name, in the registry's order."""
    return tuple(dict.fromkeys(e.name for e in ENGINES))


def entry(name: str) -> EngineEntry:
    """The first registry entry of that name (what it can do: entries of one name agree)."""
    found = next((e for e in ENGINES if e.name == name), None)
    if found is None:
        raise ConfigError(f"unknown engine '{name}'; engines: {', '.join(names())}")
    return found


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
    found = next(e for e in ENGINES if e.auto and e.supports(None, model))
    return Engine(found.name, found.build(None, model), entry=found)


def choose(ckpt: Checkpoint, model: nn.Module, name: str | None = None) -> Engine:
    """The engine that runs `ckpt` (whose decoded weights `model` holds): the first eligible
    entry, or the first eligible one called `name`."""
    if name is not None and name not in names():
        raise ConfigError(f"unknown engine '{name}'; engines: {', '.join(names())}")
    codecs = sorted({spec["codec"] for spec in ckpt.encodings.values()})
    lossy = {c for c in codecs if not CODECS[c].exact}  # exact ones run as dense values: nothing simulated
    if name is not None and not entry(name).in_process:
        entry(name).build(ckpt, model)  # says how it runs
    eligible = [
        e
        for e in ENGINES
        if (e.auto if name is None else e.name == name)
        and e.in_process
        and e.supports(ckpt, model)
        and (e.runs_decoded or lossy <= set(e.keeps))
    ]
    if not eligible:
        raise ConfigError(
            f"the {name} engine does not run this {ckpt.arch['name']} checkpoint"
            + (f" ({', '.join(codecs)}-encoded tensors)" if codecs else "")
            + f"; engines: {', '.join(names())}"
        )
    chosen = eligible[0]
    module = chosen.build(ckpt, model)
    if lossy - set(chosen.keeps):
        return Engine(
            chosen.name,
            module,
            f"{', '.join(codecs)}-encoded tensors are decoded to float32 and run "
            f"through the {chosen.name} engine: simulated, not integer or sparse kernels",
            chosen,
        )
    if codecs and not chosen.keeps:
        return Engine(
            chosen.name,
            module,
            f"{', '.join(codecs)}-encoded tensors decoded exactly to dense float32: "
            "dense kernels (zeros are multiplied, not skipped)",
            chosen,
        )
    return Engine(chosen.name, module, chosen.note, chosen)
