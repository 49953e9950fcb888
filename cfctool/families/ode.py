"""The Neural ODEs of the model-order-reduction study (the MOR paper): `conv-ode` (MNIST images)
and `ode-rnn` (the shifted antisymmetric ODE-RNN, pixel MNIST). Solver method and step are
recorded in the arch, so a reduced model is an ordinary record with other numbers."""

from __future__ import annotations

from typing import Any

from cfctool.errors import ConfigError
from cfctool.families.base import EMBEDDING, HIDDEN, Family, front_end, standard_counts
from cfctool.settings import Setting

SOLVER = Setting("solver", str, "rk4", "ODE solver (fixed step): euler or rk4 (classic 4th order).", ("euler", "rk4"))
STEP = Setting("ode_dt", float, 0.1, "ODE solver step size.", low=1e-6)
SIDE = Setting("side", int, None, "conv-ode: the images' side (from the task).", low=1)
CONV_SETTINGS = (
    Setting("channels", int, 16, "conv-ode: channels of the front conv and of the ODE block.", low=1),
    SOLVER,
    STEP,
    Setting("t_end", float, 1.0, "conv-ode: integrate the block from t = 0 to t_end.", low=1e-6),
)
RNN_SETTINGS = (
    HIDDEN,
    SOLVER,
    STEP,
    Setting("gamma", float, 0.01, "ode-rnn: the shift of A = W - W^T - gamma I (damping).", low=0),
    Setting(
        "init_std",
        float,
        0.1,
        "ode-rnn: W starts N(0, (init_std / sqrt(hidden))^2); small keeps the Euler step's "
        "eigenvalues near the unit circle (1.0 explodes gradients at the start).",
        low=0,
    ),
    *EMBEDDING,
)


def _image_side(task: dict[str, Any]) -> int:
    inp = task["input"]
    view = (task.get("preprocessing") or {}).get("view", "")
    if inp["kind"] != "features" or not view.startswith("rows") or inp["size"] < 3:
        raise ConfigError(
            f"conv-ode reads square images given as rows (mnist, fashion-mnist); "
            f"'{task['dataset']}' is a {view or inp['kind']} sequence: use a sequence arch "
            "(cfc, ode-rnn, ...)"
        )
    return int(inp["size"])


def conv_record(values: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": values["name"],
        "channels": values["channels"],
        "side": _image_side(task),
        "solver": values["solver"],
        "ode_dt": values["ode_dt"],
        "t_end": values["t_end"],
    }


def conv_build(arch: dict[str, Any], features: int):
    from cfctool.models.ode import ConvODE

    return ConvODE(arch["channels"], arch["side"], arch["t_end"], arch["ode_dt"], arch["solver"])


def conv_macs_per_sequence(core, seq_len: int) -> int:
    """Per image: the front conv, the block at every solver evaluation, no per-row work."""
    evals = max(1, round(core.t_end / core.dt)) * (4 if core.solver == "rk4" else 1)
    front = core.front.weight.numel() * (core.side - 2) ** 2
    block = core.block.weight.numel() * core.grid**2
    return front + evals * block


def rnn_record(values: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": values["name"],
        "hidden": values["hidden"],
        "gamma": values["gamma"],
        "init_std": values["init_std"],
        "solver": values["solver"],
        "ode_dt": values["ode_dt"],
        **front_end(values, task),
    }


def rnn_build(arch: dict[str, Any], features: int):
    from cfctool.models.ode import ODERNN

    # init_std only shapes a fresh model; records written before it existed started at 1.0
    return ODERNN(
        features, arch["hidden"], arch["gamma"], arch["ode_dt"], arch["solver"], init_std=arch.get("init_std", 1.0)
    )


def rnn_macs_per_step(core) -> int:
    evals = 4 if core.solver == "rk4" else 1
    return evals * core.state_size**2 + core.input_size * core.state_size


def conv_state_size(arch: dict[str, Any]) -> int:
    """Channels x the grid the stem's 3x3 stride-3 convolution leaves."""
    grid = (int(arch["side"]) - 2) // 3
    return int(arch["channels"]) * grid * grid


CONV = Family(
    name="conv-ode",
    summary="Convolutional Neural ODE (MNIST images; the MOR paper).",
    settings=CONV_SETTINGS,
    record=conv_record,
    build=conv_build,
    macs_per_step=lambda core: 0,
    counts=standard_counts,
    macs_per_sequence=conv_macs_per_sequence,
    reduction="ode",
    state_size=conv_state_size,
    record_keys=(SIDE,),
)
RNN = Family(
    name="ode-rnn",
    summary="Shifted antisymmetric ODE-RNN (pixel MNIST; the MOR paper).",
    settings=RNN_SETTINGS,
    record=rnn_record,
    build=rnn_build,
    macs_per_step=rnn_macs_per_step,
    counts=standard_counts,
    defaults={"hidden": 512, "solver": "euler"},
    weights=("weight", "W"),
    reduction="ode",
    state_size=lambda arch: int(arch["hidden"]),
)
