"""ncps's PyTorch state-dict layout against ours: one mapping for `cfctool import ncps`,
`cfctool export --format ncps` and the benchmarks that run ncps on our weights.

ncps (the reference CfC library) names the same tensors differently:

- `CfC(in, units)`: `rnn_cell.backbone.{i}` is a `Sequential` index (Linear, activation and,
  from the second layer on, Dropout when `backbone_dropout > 0`: layer i sits at 0, 2, 4, ...
  or 0, 2, 5, 8, ...), `rnn_cell.{ff1,ff2,time_a,time_b,w_tau,A}`, `lstm.*` with mixed memory,
  `fc.*` with `proj_size`;
- `CfC(in, wiring)` (NCP): `rnn_cell.layer_{k}.*`, each layer with its `sparsity_mask`;
- `LTC(in, units or wiring)`: `rnn_cell.*` with `sparsity_mask` and `sensory_sparsity_mask`;
  its output is the first `motor` neurons, `output_w`/`output_b` of that length.

Ours: `rnn.cells.{k}.*` (`rnn.cells.0.backbone.{i}` per layer), `rnn.lstm.*`, and the LTC's
tensors directly under `rnn.`, its output over every neuron.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from cfctool.errors import CheckpointError, ConfigError


def backbone_index(layer: int, dropout: float) -> int:
    """ncps's Sequential index of backbone layer `layer` (no Dropout after the first layer)."""
    return 0 if layer == 0 else 2 + (3 if dropout > 0 else 2) * (layer - 1)


@dataclass
class NcpsModel:
    """What an ncps state dict holds, read from its keys and shapes."""

    kind: str  # "cfc", "cfc-ncp" or "ltc"
    features: int  # inputs per step
    hidden: int  # state neurons (all cells together)
    outputs: int  # width of what the module returns (units, motor neurons or proj_size)
    tensors: dict[str, torch.Tensor]  # the module's own keys (prefix removed)
    backbone_widths: list[int] = field(default_factory=list)
    backbone_dropout_layers: bool | None = None  # None: two layers or fewer, the keys cannot tell
    layers: list[int] = field(default_factory=list)  # wired cells' sizes
    pure: bool = False
    mixed_memory: bool = False
    projection: bool = False


def find_module(state: dict[str, torch.Tensor]) -> str:
    """The key prefix of the one ncps module (`CfC`/`LTC`) in a state dict."""
    prefixes = sorted({k[: k.index("rnn_cell.")] for k in state if "rnn_cell." in k})
    if not prefixes:
        raise CheckpointError(
            "no ncps CfC or LTC in this file: its keys have no 'rnn_cell.' (ncps modules store their "
            f"cell there); keys seen: {', '.join(sorted(state)[:6])}{' ...' if len(state) > 6 else ''}"
        )
    if len(prefixes) > 1:
        raise CheckpointError(
            f"more than one ncps module in this file (at {', '.join(map(repr, prefixes))}); "
            "cfctool imports one: save the state dict of the one to import"
        )
    return prefixes[0]


def read(state: dict[str, torch.Tensor]) -> NcpsModel:
    """The ncps module's configuration, from the keys and shapes of its state dict alone."""
    prefix = find_module(state)
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    mixed = "lstm.input_map.weight" in own
    if "rnn_cell.gleak" in own:
        hidden = own["rnn_cell.gleak"].shape[0]
        return NcpsModel(
            "ltc",
            own["rnn_cell.sensory_w"].shape[0],
            hidden,
            own["rnn_cell.output_w"].shape[0] if "rnn_cell.output_w" in own else hidden,
            own,
            mixed_memory=mixed,
        )
    if "rnn_cell.layer_0.ff1.weight" in own:
        layers: list[Any] = []
        while f"rnn_cell.layer_{len(layers)}.ff1.weight" in own:
            layers.append(own[f"rnn_cell.layer_{len(layers)}.ff1.weight"].shape[0])
        features = own["rnn_cell.layer_0.ff1.weight"].shape[1] - layers[0]
        return NcpsModel(
            "cfc-ncp",
            features,
            sum(layers),
            layers[-1],
            own,
            layers=layers,
            pure="rnn_cell.layer_0.w_tau" in own,
            mixed_memory=mixed,
        )
    if "rnn_cell.ff1.weight" not in own:
        raise CheckpointError(
            f"the ncps module at '{prefix}' is neither a CfC (rnn_cell.ff1) nor an LTC (rnn_cell.gleak)"
        )
    hidden = own["rnn_cell.ff1.weight"].shape[0]
    indices = sorted(int(m.group(1)) for k in own if (m := re.fullmatch(r"rnn_cell\.backbone\.(\d+)\.weight", k)))
    widths = [own[f"rnn_cell.backbone.{i}.weight"].shape[0] for i in indices]
    dropout = None
    if len(indices) > 2:
        for flag, rate in ((False, 0.0), (True, 0.5)):
            if indices == [backbone_index(i, rate) for i in range(len(indices))]:
                dropout = flag
        if dropout is None:
            raise CheckpointError(
                f"the ncps backbone's layers sit at Sequential indices {indices}, which no ncps CfC has"
            )
    first = own[f"rnn_cell.backbone.{indices[0]}.weight"] if indices else own["rnn_cell.ff1.weight"]
    outputs = own["fc.weight"].shape[0] if "fc.weight" in own else hidden
    return NcpsModel(
        "cfc",
        first.shape[1] - hidden,
        hidden,
        outputs,
        own,
        backbone_widths=widths,
        backbone_dropout_layers=dropout,
        pure="rnn_cell.w_tau" in own,
        mixed_memory=mixed,
        projection="fc.weight" in own,
    )


def core_from_ncps(m: NcpsModel, dropout: float) -> dict[str, torch.Tensor]:
    """Our `rnn.*` tensors (without the prefix) from an ncps module's."""
    out = {}
    for key, value in m.tensors.items():
        if key.startswith("lstm."):
            out[key] = value
        elif m.kind == "ltc":
            name = key.removeprefix("rnn_cell.")
            if name in ("output_w", "output_b") and value.shape[0] < m.hidden:  # motor neurons: the rest read 0
                value = torch.cat([value, value.new_zeros(m.hidden - value.shape[0])])
            out[name] = value
        elif m.kind == "cfc-ncp":
            out[key.replace("rnn_cell.layer_", "cells.")] = value
        elif key.startswith("rnn_cell.backbone."):
            index, part = key.split(".")[2:]
            layer = [backbone_index(i, dropout) for i in range(len(m.backbone_widths))].index(int(index))
            out[f"cells.0.backbone.{layer}.{part}"] = value
        elif key.startswith("rnn_cell."):
            out["cells.0." + key.removeprefix("rnn_cell.")] = value
    return out


def core_to_ncps(arch: dict[str, Any], core: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ncps module's state dict from our `rnn.*` tensors (without the prefix)."""
    out = {}
    for key, value in core.items():
        if key.startswith("lstm."):
            out[key] = value
        elif arch["name"] == "ltc":
            out["rnn_cell." + key] = value
        elif arch["name"] == "cfc-ncp":
            out[key.replace("cells.", "rnn_cell.layer_", 1)] = value
        elif key.startswith("cells.0.backbone."):
            layer, part = key.split(".")[3:]
            out[f"rnn_cell.backbone.{backbone_index(int(layer), arch.get('backbone_dropout', 0.0))}.{part}"] = value
        else:
            out["rnn_cell." + key.removeprefix("cells.0.")] = value
    return out


def representable(arch: dict[str, Any]) -> None:
    """Raises naming what ncps cannot hold: per-layer backbone widths, factored heads, a folded embedding."""
    if arch["name"] not in ("cfc", "cfc-deep", "cfc-ncp", "ltc"):
        raise ConfigError(f"ncps has no {arch['name']} model; --format ncps exports cfc, cfc-deep, cfc-ncp and ltc")
    widths = arch.get("backbone_widths") or []
    if len(set(widths)) > 1:
        raise ConfigError(
            f"ncps's CfC has one backbone width for every layer; this model's are {widths} "
            "(structured pruning): export it as C or ONNX, or prune with --local per layer evenly"
        )
    for key, why in (
        ("head_rank", "its heads are factored (reduce --method svd)"),
        ("input_projected", "its embedding is folded into the first layer (quantize --fold-embedding)"),
    ):
        if arch.get(key):
            raise ConfigError(f"ncps cannot hold this model: {why}")


def _spec(arch: dict[str, Any], features: int) -> tuple[str, tuple | None, dict[str, Any]]:
    """(class, wiring (its class and arguments) or None, keyword arguments) of the ncps module
    `core_to_ncps` fills: the masks come with the weights, so a wiring only has to have the sizes."""
    if arch["name"] == "ltc":
        return "LTC", None, {"units": arch["hidden"], "ode_unfolds": arch["ode_unfolds"]}
    common = {"mode": arch["mode"], "mixed_memory": arch["mixed_memory"]}
    if arch["name"] == "cfc-ncp":
        from cfctool.models.wiring import NcpShape

        inter, command, motor = arch["ncp_layers"]
        try:
            auto = NcpShape.auto(inter + command + motor, motor, arch["sparsity"])
        except ValueError:
            auto = None
        if auto is not None and [auto.inter, auto.command, auto.motor] == [inter, command, motor]:
            wiring: tuple[str, tuple[int, ...], dict[str, Any]] = (
                "AutoNCP",
                (inter + command + motor, motor),
                {"sparsity_level": arch["sparsity"]},
            )
        else:  # other sizes (neurons pruned): the fan-outs only shape the masks the file replaces
            wiring = ("NCP", (inter, command, motor, 1, 1, 1, 1), {})
        return "CfC", wiring, common
    widths = arch.get("backbone_widths") or []
    return (
        "CfC",
        None,
        {
            "units": arch["hidden"],
            **common,
            "activation": arch["backbone_activation"],
            "backbone_units": widths[0] if widths else 128,
            "backbone_layers": len(widths),
            "backbone_dropout": arch.get("backbone_dropout", 0.0),
        },
    )


def constructor(arch: dict[str, Any], features: int) -> str:
    """The ncps constructor line of the module `core_to_ncps` fills."""
    cls, wiring, kwargs = _spec(arch, features)
    units = kwargs.pop("units", None)
    second = (
        f"{wiring[0]}({', '.join([*map(repr, wiring[1]), *(f'{k}={v!r}' for k, v in wiring[2].items())])})"
        if wiring
        else repr(units)
    )
    return f"{cls}({features}, {second}, {', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def build(arch: dict[str, Any], features: int) -> torch.nn.Module:
    """The ncps module itself (needs the `ncps` package)."""
    from ncps import torch as ncps_torch
    from ncps import wirings

    cls, wiring, kwargs = _spec(arch, features)
    units = kwargs.pop("units", None)
    if wiring is not None:
        units = getattr(wirings, wiring[0])(*wiring[1], **wiring[2])
    return getattr(ncps_torch, cls)(features, units, **kwargs)
