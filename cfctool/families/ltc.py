"""The Liquid Time-Constant network (Hasani et al. 2021): the ODE-solved baseline, fully
connected, `ode_unfolds` semi-implicit Euler sub-steps per input step."""

from __future__ import annotations

from typing import Any

from cfctool.families.base import EMBEDDING, HIDDEN, Family, front_end, standard_counts
from cfctool.settings import Setting

SETTINGS = (HIDDEN, Setting("ode_unfolds", int, 6, "ltc: solver sub-steps per input step.", low=1), *EMBEDDING)


def record(values: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": values["name"],
        "hidden": values["hidden"],
        "ode_unfolds": values["ode_unfolds"],
        **front_end(values, task),
    }


def build(arch: dict[str, Any], features: int):
    from cfctool.models.ltc import LTC

    return LTC(features, arch["hidden"], ode_unfolds=arch["ode_unfolds"])


def macs_per_step(core) -> int:
    # per unfold: w * sigmoid and * erev over all H x H synapses; sensory synapses once per step
    return core.ode_unfolds * 2 * core.state_size**2 + 2 * core.input_size * core.state_size


FAMILY = Family(
    name="ltc",
    summary="Liquid time-constant network (ODE solver, the slow baseline).",
    settings=SETTINGS,
    record=record,
    build=build,
    macs_per_step=macs_per_step,
    counts=standard_counts,
    weights=("weight", "w", "sensory_w"),
    proof=lambda arch: {"rnn.sparsity_mask": [arch["hidden"], arch["hidden"]]},
)
