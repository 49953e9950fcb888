"""The inference engines: one entry each, one line each in ENGINES.

Torch-free (outside the `engines` package, whose modules load torch), so `--engine`'s help
and its choices come from this list without loading torch. An entry names its `supports`
and `build` functions as "module:function" (imported the first time the entry is asked) or
gives the functions themselves, and states what the engine can do; `cfctool.engines.choose`
reads the list in order, so an entry's place is its preference.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Hook = str | Callable[..., Any]  # "module:function", or the function


@dataclass(frozen=True)
class EngineEntry:
    """One engine: what it runs and how it is built, and what it can do (the commands ask
    these fields, never the name)."""

    name: str
    supports: Hook  # (ckpt | None, model) -> bool; ckpt None: the model alone (training, export)
    build: Hook  # (ckpt | None, model) -> the module called as module(x, dt, mask)
    help: str = ""  # one line for --engine's help
    keeps_integer: bool = False  # runs the integer-coded weights as stored (others are decoded to float first)
    runs_decoded: bool = False  # runs any encoding on its decoded weights (the numbers are then simulated)
    note: str | None = None  # what a report says about its numbers
    auto: bool = True  # a candidate for the automatic choice (else only when asked for by name)
    folded: bool = False  # its module follows `FoldedEngine` (`folded(dt)` gives the step a Scan graph exports)
    integer: bool = False  # computes on the stored integer codes (int8 products, int32 sums)
    one_sequence: bool = False  # runs one sequence at a time and times its own steps (`last_seconds`, `last_steps`)
    in_process: bool = True  # builds a module in this process (else: an exported graph, which `bench` times)

    def call(self, hook: str, *args: Any) -> Any:
        """Run the entry's `supports` or `build` on (ckpt, model)."""
        target = getattr(self, hook)
        if isinstance(target, str):
            module, _, function = target.partition(":")
            target = getattr(importlib.import_module(module), function)
        return target(*args)


INT8_NOTE = (
    "int8 products with int32 accumulation (int4 weights widened to int8; with constant dt the two gate "
    "heads summed and requantized per row at load); the token table and the once-per-sequence readout in "
    "float32"
)
_E = "cfctool.engines"  # the functions of the built-in entries

# in the order of the automatic choice (entries of one name serve different models)
ENGINES: list[EngineEntry] = [
    EngineEntry(
        "folded-int8",
        f"{_E}:int8_supports",
        f"{_E}:int8_build",
        "int8 products on the stored integers, int32 sums, for quantized checkpoints",
        keeps_integer=True,
        note=INT8_NOTE,
        folded=True,
        integer=True,
    ),
    EngineEntry(
        "folded", f"{_E}:cfc_supports", f"{_E}:cfc_build", "the step on folded weights in PyTorch", folded=True
    ),
    EngineEntry("folded", f"{_E}:ode_supports", f"{_E}:ode_build", folded=True),
    EngineEntry(
        "loop",
        f"{_E}:any_model",
        f"{_E}:loop_build",
        "the training loop, plain PyTorch eager: any model, encodings decoded",
        runs_decoded=True,
    ),
    # generated C compiled by the system compiler, one sequence at a time (cfctool.engines.native):
    # the folded-int8 step on the stored integers, else float32
    EngineEntry(
        "c",
        f"{_E}:c_int8_supports",
        f"{_E}:c_int8_build",
        "generated C99 compiled with the system compiler, one sequence at a time, fp32 or the int8 step of a "
        "quantized checkpoint",
        keeps_integer=True,
        note="generated C99 (cfctool export --format c) of the folded-int8 step, compiled with the system "
        "compiler; one sequence at a time",
        auto=False,
        integer=True,
        one_sequence=True,
    ),
    EngineEntry(
        "c",
        f"{_E}:c_float_supports",
        f"{_E}:c_float_build",
        runs_decoded=True,
        note="generated C99 (cfctool export --format c), compiled with the system compiler; one sequence at a "
        "time, float32",
        auto=False,
        one_sequence=True,
    ),
    # the checkpoint exported as an ONNX graph (cfctool.ops.export) and run by ONNX Runtime: bench builds it
    EngineEntry(
        "onnxruntime",
        f"{_E}:has_checkpoint",
        f"{_E}:exported_only",
        "the exported graph on ONNX Runtime, bench only, with the onnx extra",
        keeps_integer=True,
        note="the exported ONNX graph on ONNX Runtime (the onnx extra)",
        auto=False,
        in_process=False,
    ),
]


def names() -> tuple[str, ...]:
    """The engines by name, in the registry's order."""
    return tuple(dict.fromkeys(e.name for e in ENGINES))


def entry(name: str) -> EngineEntry | None:
    """The first entry of that name (entries of one name agree on what they can do)."""
    return next((e for e in ENGINES if e.name == name), None)


def runnable() -> tuple[str, ...]:
    """The engines a checkpoint runs on in-process (eval)."""
    return tuple(dict.fromkeys(e.name for e in ENGINES if e.in_process))


def listing(engines: tuple[str, ...] | None = None) -> str:
    """'name: what it is; ...' for the help of an --engine option (the first line of each name)."""
    helps = {}
    for e in ENGINES:
        if e.help and e.name not in helps:
            helps[e.name] = e.help
    return "; ".join(f"{name}: {helps.get(name, '')}" for name in (engines or names()))
