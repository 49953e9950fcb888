"""Reduced Neural ODEs (`cfctool reduce` on conv-ode / ode-rnn): the block `z' = N f(M z + b)
(+ Z u)` on a smaller state, with the projection and lift of the image model as layers.
Made by `reduce`, never trained from scratch: every size is in the record."""

from __future__ import annotations

from typing import Any

from cfctool.errors import ConfigError
from cfctool.families.base import EMBEDDING, Family, standard_counts
from cfctool.families.ode import CONV_SETTINGS, SIDE, SOLVER, STEP
from cfctool.settings import Setting


def record(values: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    raise ConfigError("'ode-reduced' models are made by `cfctool reduce` from a conv-ode or ode-rnn checkpoint")


def build(arch: dict[str, Any], features: int):
    from cfctool.models.ode import ReducedODE

    return ReducedODE(arch, features)


def _evals(core) -> int:
    return 4 if core.solver == "rk4" else 1


def _block(core) -> int:
    macs = core.M.numel() + (core.M_out.numel() if core.M_out is not None else 0)
    return macs + (core.N.numel() if core.N is not None else 0)


def macs_per_sequence(core, seq_len: int) -> int:
    if core.image:
        steps = max(1, round(core.t_end / core.dt))
        lift = 2 * core.project.numel() if core.project is not None else 0
        return core.front.weight.numel() * (core.side - 2) ** 2 + lift + steps * _evals(core) * _block(core)
    return seq_len * (_evals(core) * _block(core) + core.Z.weight.numel())


FAMILY = Family(
    name="ode-reduced",
    summary="A reduced Neural ODE (made by `cfctool reduce`).",
    settings=(),
    record=record,
    build=build,
    macs_per_step=lambda core: 0,
    counts=standard_counts,
    macs_per_sequence=macs_per_sequence,
    weights=("weight", "M", "M_out", "N"),
    record_keys=(
        Setting("base", str, None, "The family it was reduced from.", ("conv-ode", "ode-rnn")),
        Setting("method", str, None, "The reduction method.", ("pod-deim", "qdeim", "odeim", "pod", "svd", "apoz")),
        Setting("dim", int, None, "The reduced state size.", low=1),
        Setting("points", int, None, "Interpolation points.", low=1),
        Setting("rank", int, None, "The rank of an SVD-truncated block.", low=1),
        Setting("interpolated", bool, None, "Whether the nonlinearity is interpolated."),
        Setting("projected", bool, None, "Whether the image front is projected."),
        SOLVER,
        STEP,
        SIDE,
        *[s for s in CONV_SETTINGS if s.name in ("channels", "t_end")],
        *EMBEDDING,
    ),
)
