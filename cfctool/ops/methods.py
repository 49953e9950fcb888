"""The compression methods: one record each, one line each in METHODS.

A method is a checkpoint -> checkpoint command (`cfctool NAME IN.st [settings] -o OUT.st`)
whose settings are one config dataclass (with `validate()`, `to_dict()`, `threads`, `seed`
and `max_drop`). The driver (`cfctool.ops.compress`) finds the method by the config's type,
validates the settings once and does what every method shares (threads, the record's
`compression` sections, the history entry, the `--max-drop` search). The method's module
(imported only when the method runs, so that `cfctool --help` stays torch-free) provides:

- `check(ckpt, cfg)`: what the (valid) settings cannot be for this checkpoint, raised before
  any work;
- `transform(ckpt, cfg, ctx) -> compress.Result`: the compressed checkpoint and the record
  sections it writes under `compression` (`section` below first);
- `AXIS`: what `--max-drop` turns (an `ops.budget` axis: `LargestFraction("ratio")`,
  `SmallestInteger("dim")`, or the method's own);
- `label(config) -> str`: a history entry's config as a few words (`cfctool report`);
- `describe(compression) -> {section: line}`: the recorded section as one line (`cfctool info`);
- `result_line(out) -> str | None`: the line printed on stderr after the command.

The CLI, `report`, `info` and the Python API read METHODS, so a new method is its module
plus one line here (tests/test_registries.py shows it).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from cfctool.configs import PruneConfig, QuantizeConfig, ReduceConfig
from cfctool.errors import ConfigError


@dataclass(frozen=True)
class Method:
    name: str  # the command, the Python API name and the history entry's command
    config: type  # its settings (a dataclass with validate() and to_dict()); the flags derive from it
    module: str  # where its op and hooks live
    section: str  # its key in the record's `compression`
    panel: str  # the title of its flags in `cfctool NAME --help`
    help: str  # the command's one-line help
    description: str  # the paragraph after it in --help
    example: str  # a runnable command line, the last line of --help

    def hooks(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def op(self) -> Callable[..., Any]:
        """The Python API: `op(ckpt, cfg, *, data_dir, argv, notify, progress)`, through the driver."""
        return functools.partial(importlib.import_module("cfctool.ops.compress").compress, method=self.name)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "quantize",
            QuantizeConfig,
            "cfctool.ops.quantize",
            "quantization",
            "Quantization settings",
            "Store weights as int8/int4 with calibrated activation scales; eval and bench then run the int8 engine.",
            "Weights become int8 (or int4, --bits 4) with one scale per output channel; --scheme static calibrates "
            "activation scales on training sequences, dynamic scales them at every step, qat fine-tunes through "
            "fake quantization first. The record keeps the scales and the state error against fp32; a quantized "
            "CfC then runs on integer kernels (the folded-int8 engine).",
            "cfctool quantize model.st --scheme static -o model-int8.st",
        ),
        Method(
            "prune",
            PruneConfig,
            "cfctool.ops.prune",
            "pruning",
            "Pruning settings",
            "Remove weights (unstructured) or whole units (--structured, a physically smaller model), then fine-tune.",
            "Unstructured pruning zeroes exactly round(ratio x n) of the selected weights (lowest |w|, --global: one "
            "threshold, --local: per tensor); --storage sparse makes the file shrink with the ratio. Structured "
            "pruning removes backbone units, hidden units or embedding dimensions and records the new sizes, so "
            "every engine runs a smaller model. --finetune N trains with the pruned weights held at zero.",
            "cfctool prune model.st --global --ratio 0.95 --finetune 3 --storage sparse -o pruned.st",
        ),
        Method(
            "reduce",
            ReduceConfig,
            "cfctool.ops.reduce",
            "reduction",
            "Reduction settings",
            "Model-order reduction of a Neural ODE or a CfC (POD-DEIM, Q-DEIM, ODEIM, POD, SVD, APoZ).",
            "Snapshots of the state and the nonlinearity on training inputs give a K-dimensional basis; the ODE "
            "block (conv-ode, ode-rnn) or the CfC's hidden state is projected onto it, with K interpolation points "
            "(--interpolation deim, or lstsq: the least-squares rebuild from the snapshots). A reduced CfC is an "
            "ordinary smaller CfC; --finetune N trains the layers after the block.",
            "cfctool reduce ode.st --method svd --interpolation lstsq --dim 125 -o ode-r125.st",
        ),
    )
}


def method_for(cfg: Any) -> Method:
    """The method whose settings `cfg` is (the driver dispatches on the config's type)."""
    found = next((m for m in METHODS.values() if type(cfg) is m.config), None)
    if found is None:
        names = ", ".join(f"{m.config.__name__} ({m.name})" for m in METHODS.values())
        raise ConfigError(f"{type(cfg).__name__} is no compression method's settings; give one of {names}")
    return found


def by_section(section: str) -> Method | None:
    return next((m for m in METHODS.values() if m.section == section), None)
