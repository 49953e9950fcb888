"""What a model family declares, torch-free so that `--help` and option parsing stay fast.

A family is one module under `cfctool.families` holding a `Family`: its arch settings
with defaults, how a config becomes an explicit arch record, how a record becomes a
module, its MAC count and its parameter counts (which inference engine serves it is the
engine registry's business, `cfctool.engines`). The
hooks import torch inside themselves. `cfctool.families.FAMILIES` is one line per family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cfctool.settings import Setting


@dataclass(frozen=True)
class UnitGroup:
    """Units that structured pruning removes together with everything attached to them.

    `slices` are (tensor name, dim, offset, role): unit i is index offset + i along dim of
    that tensor. Roles: 'own' (the unit's incoming weights, bias, wiring-mask row),
    'recurrent' (the columns of its own cell's first product that read it), 'next' (the
    columns of the layers that read it). `kind`: 'backbone', 'hidden' or 'embedding'.
    """

    name: str
    kind: str
    size: int
    slices: tuple[tuple[str, int, int, str], ...]


@dataclass(frozen=True)
class Family:
    """One model family; every hook takes the arch record (or the built model) only.

    - `record(values, task)`: the explicit arch record for resolved setting values: every
      size a compression can change is a number here (never regenerated at load).
    - `build(arch, features)`: the recurrent core for `features` inputs per step.
    - `macs_per_step(core)`: multiply-accumulates of one step of the defining form;
      `macs_per_sequence(core, steps)` where the work is not per step (an image model).
    - `counts(model)`: {'params', 'nonzero_params', 'rnn_params'}.
    - `upgrade(arch)`: a format-1 arch record rewritten in the current form.
    - `fold_embedding(ckpt)`: the same function with the token embedding multiplied into
      the first product (a smaller table); None where the family has no such form.
    - `unit_groups(arch, tensors)`: the `UnitGroup`s structured pruning can shrink, and
      `resize(arch, sizes)` the arch record with {group name: new size}; None where the
      family has no structured form.
    - `weights`: the last name part of its weight matrices (what pruning selects and
      sparsity counts; biases and per-unit parameters are never pruned); `heads`: the
      modules `prune --scope heads` selects.
    - `reduction`: which model-order reduction serves it ('ode': the Neural ODE block,
      'cfc': the CfC hidden state; None: `reduce` does not apply), and `state_size(arch)`
      the size of the state an 'ode' reduction projects.
    """

    name: str
    summary: str
    settings: tuple[Setting, ...]
    record: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
    build: Callable[[dict[str, Any], int], Any]
    macs_per_step: Callable[[Any], int]
    counts: Callable[[Any], dict[str, int]] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    validate: Callable[[dict[str, Any]], None] | None = None
    fold_embedding: Callable[[Any], Any] | None = None
    macs_per_sequence: Callable[[Any, int], int] | None = None
    unit_groups: Callable[[dict[str, Any], dict[str, Any]], list[UnitGroup]] | None = None
    resize: Callable[[dict[str, Any], dict[str, int]], dict[str, Any]] | None = None
    # keys its records carry beyond its settings (sizes a compression or a derived structure
    # writes), each with its type and bounds: a file's arch record is checked against both
    record_keys: tuple[Setting, ...] = ()
    # {tensor name: shape (None: any size)} of tensors always stored plain whose bytes prove the
    # sizes a record claims, for families whose build does work that grows with those sizes
    # before any shape is compared (the LTC's and NCP's wirings): checked first at load
    proof: Callable[[dict[str, Any]], dict[str, list[int | None]]] | None = None
    weights: tuple[str, ...] = ("weight",)
    heads: tuple[str, ...] = ()
    reduction: str | None = None
    state_size: Callable[[dict[str, Any]], int] | None = None

    def setting_names(self) -> set[str]:
        return {s.name for s in self.settings}

    def arch_problem(self, arch: dict[str, Any]) -> str | None:
        """What is wrong with a stored arch record (in its current form), as `arch.KEY: why`."""
        declared = {s.name: s for s in (*self.settings, *self.record_keys)}
        for key, value in arch.items():
            if key == "name":
                continue
            if key not in declared:
                return f"arch.{key} is not a key of the '{self.name}' family (its keys: {', '.join(sorted(declared))})"
            problem = declared[key].check_stored(value)
            if problem:
                return f"arch.{key} {problem.removeprefix(key + ' ')}"
        return None


# settings every family shares: the state size, and the token front end of SequenceModel
HIDDEN = Setting("hidden", int, 64, "State size (units); for cfc-ncp all neurons, motor included.", low=1)
EMBEDDING = (
    Setting("embedding_dim", int, 64, "Token embedding width (token inputs only).", low=1),
    Setting("embedding_dropout", float, 0.0, "Dropout on embedded tokens (token inputs only).", low=0, below=1),
)


def front_end(values: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The arch keys of the token front end, for token tasks only."""
    if task["input"]["kind"] != "tokens":
        return {}
    out = {"embedding_dim": values["embedding_dim"]}
    if values.get("embedding_dropout"):
        out["embedding_dropout"] = values["embedding_dropout"]
    return out


def standard_counts(model, masks: dict[str, Any] | None = None) -> dict[str, int]:
    """Trainable parameters, those non-zero where they act (`masks`: {parameter name: 0/1
    mask it is multiplied by}), and those of the recurrent core."""
    import torch

    masks = masks or {}
    params = nonzero = rnn = 0
    for name, p in model.named_parameters():
        params += p.numel()
        effective = p * masks[name] if name in masks else p
        nonzero += int(torch.count_nonzero(effective))
        if name.startswith("rnn."):
            rnn += p.numel()
    return {"params": params, "nonzero_params": nonzero, "rnn_params": rnn}
