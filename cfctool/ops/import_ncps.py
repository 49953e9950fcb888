"""`cfctool import ncps WEIGHTS`: a model trained with ncps as an ordinary cfctool checkpoint.

Reads the state dict of a module holding one ncps `CfC` (any mode, mixed memory, any
backbone, `proj_size`), NCP-wired `CfC`, or `LTC` (fully connected or wired), plus an
optional embedding and linear readout, from a safetensors file: `safetensors.torch.save_file(
model.state_dict(), "weights.safetensors")` in the ncps code. Pickles (.pt, .pth) are refused:
loading one runs whatever code it carries. Sizes come from the tensor shapes; what they cannot
say (the mode beyond `pure`, the backbone activation, the data set) comes from the settings,
and settings that contradict the shapes are an error naming both. Wiring masks are ncps's own
(its state dicts carry them). The result equals ncps's forward for the same inputs (Δt given
per step as (batch, 1); see the guide on ncps's batched-timespans bug).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from cfctool.checkpoint import (
    TASK_TENSOR_PREFIX,
    Checkpoint,
    history_entry,
    new_record,
    read_header,
    verify_architecture,
)
from cfctool.configs import DataConfig, dataset_argument
from cfctool.configs.commands import ImportNcpsConfig
from cfctool.data import raw_io
from cfctool.data.registry import input_kind, load_dataset
from cfctool.errors import CfcError, CheckpointError, ConfigError, DataError
from cfctool.escape import terminal
from cfctool.families import record_problem
from cfctool.families.build import MAX_PARAMS, build_model
from cfctool.files import CHECKPOINT_LIMIT, read_bounded
from cfctool.models import ncps_layout
from cfctool.models.ltc import LTC
from cfctool.models.wiring import NcpShape, cfc_layer_masks, ncp_adjacency

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
SAVE_LINE = "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a pickle is refused, saying how to write the file."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path.name} looks like a pickle ({path.suffix}); cfctool never unpickles (loading one runs "
            f"the code it carries). In your ncps code, write the weights with: {SAVE_LINE}"
        )
    if str(path) == "-":
        raise ConfigError("import ncps reads a file, not standard input: give the weights file's path")
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = read_bounded(path, CHECKPOINT_LIMIT, "weights file", CheckpointError)
    try:
        read_header(data, str(path))  # sizes and offsets proved against the bytes before any tensor is made
        return load(data)
    except (SafetensorError, CheckpointError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a safetensors file ({str(exc)[:200]}); write it with: {SAVE_LINE}"
        ) from None


def import_ncps(
    weights: str | Path,
    cfg: ImportNcpsConfig,
    *,
    state: dict[str, torch.Tensor] | None = None,
    argv: list[str] | None = None,
    notify=None,
) -> Checkpoint:
    """An ordinary checkpoint of the ncps model in `weights`, on the task of `cfg.dataset`
    (`state`: the file's tensors when the caller has read them already)."""

    cfg.validate()
    started = time.perf_counter()
    state = read_weights(weights) if state is None else state
    source = str(weights)
    m = _malformed_is_file_error(source, lambda: ncps_layout.read(state))
    assert cfg.dataset is not None  # ImportNcpsConfig.validate
    name, described = dataset_argument(cfg.dataset)
    data_cfg = DataConfig(dataset=name, data_dir=cfg.data_dir, **described)
    data_cfg.validate()
    kind = input_kind(data_cfg)
    if kind is not None:  # the flags against the file before the data are read (IMDB takes most of a minute)
        _check_embedding_flag(cfg, kind == "tokens")
    say = notify or (lambda _: None)
    say(
        f"found an ncps {m.kind}: {m.features} inputs, {m.hidden} neurons"
        + (f", layers {m.layers}" if m.layers else f", backbone {m.backbone_widths}" if m.kind == "cfc" else "")
    )
    try:
        dataset = load_dataset(data_cfg)
    except DataError as exc:
        raise DataError(f"importing onto '{cfg.dataset}' needs its data (the task and its sizes): {exc}") from None
    task = dataset.task
    if m.kind == "cfc-ncp" and "rnn_cell.layer_0.sparsity_mask" not in m.tensors:
        _rebuild_masks(m, cfg)
    arch = _malformed_is_file_error(source, lambda: _arch(m, cfg, task))

    def convert() -> dict[str, torch.Tensor]:
        out = {"rnn." + k: v for k, v in ncps_layout.core_from_ncps(m, arch.get("backbone_dropout", 0.0)).items()}
        out.update(_front_and_head(m, cfg, state, task))
        return out

    tensors = _malformed_is_file_error(source, convert)
    # every size the record will claim, proved by the file's tensors before anything is built
    # (a few bytes may claim a million neurons), then every shape on the meta device: what
    # `load` checks of a checkpoint, so that no import writes a file `info` refuses
    draft = Checkpoint(tensors=tensors, record=new_record(arch, task), source=source)
    problem = record_problem({**draft.record, "tensors": {}})
    if problem:
        raise CheckpointError(
            f"{source}: the weights and settings make an arch cfctool would refuse to load: {problem}"
        )
    verify_architecture(draft)
    if m.kind == "ltc" and cfg.ltc_constraints == "explicit":  # ncps used these raw (clipped >= 0): softplus^-1
        for name in ("gleak", "cm", "w", "sensory_w"):
            x = tensors["rnn." + name].clamp_min(1e-12)
            tensors["rnn." + name] = x + torch.log(-torch.expm1(-x))
    model = build_model(arch, task)
    missing = set(model.state_dict()) - set(tensors)
    extra = set(tensors) - set(model.state_dict())
    if missing or extra:  # pragma: no cover - read() and _arch() agree on every layout ncps writes
        raise CfcError(
            f"the ncps weights do not fill a cfctool {arch['name']}: missing {sorted(missing)}, "
            f"left over {sorted(extra)}"
        )
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"the ncps weights do not fit the model the settings describe: {exc}") from None
    if m.kind == "cfc-ncp" and cfg.wiring_seed is not None:
        _check_wiring(m, arch, tensors)
    io = raw_io.of(task, dataset.task_tensors)
    if io is not None:
        _read_standardised_inputs(model, io, dataset.splits["test"])
    out = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    out.update({TASK_TENSOR_PREFIX + k: v for k, v in dataset.task_tensors.items()})
    config = {k: v for k, v in asdict(cfg).items() if k not in ("dataset", "data_dir")}
    used = data_cfg.resolved_data_dir()
    config["data"] = {
        "dataset": name,
        **described,
        "data_dir": str(used.resolve()) if used is not None and used.is_dir() else None,
    }
    ckpt = Checkpoint(tensors=out, record=new_record(arch, task))
    return ckpt.with_history(
        history_entry("import ncps", argv, config, inputs=[weights], wall_time_s=time.perf_counter() - started)
    )


def _read_standardised_inputs(model: torch.nn.Module, io: raw_io.RawIO, test) -> None:
    """The ncps model read your data's values as the file holds them (a missing value as 0
    beside its observed flag); a cfctool model reads them standardised with the recorded
    training statistics (`data.raw_io`). Its first product becomes W raw + b = (W M) x + (W c + b)
    for raw = M x + c, and a regression readout gives standardised targets, so the checkpoint
    computes what the ncps model did, then proves it on test sequences."""

    matrix, shift = io.affine()
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        if isinstance(model.rnn, LTC):  # an element-wise input map: a diagonal M only
            if io.indicator:
                raise ConfigError(
                    "an LTC's input map is per input, so it cannot take the missing-value indicator's "
                    "standardisation: import onto a description with missing: error"
                )
            model.rnn.input_b += model.rnn.input_w * shift
            model.rnn.input_w *= matrix.diagonal()
        else:
            for linear, n_in, mask in model.rnn.input_linears():
                w = linear.weight[:, :n_in] * (1.0 if mask is None else mask[:, :n_in])  # the weights in effect
                linear.bias += w @ shift
                linear.weight[:, :n_in] = w @ matrix
        if io.out_scale is not None:
            model.head.bias.sub_(io.out_shift).div_(io.out_scale)
            model.head.weight.div_(io.out_scale.unsqueeze(1))
        rows = test.sample(64)
        want = reference(io.raw(rows.x), rows.dt, rows.mask)
        if io.out_scale is not None:
            want = (want - io.out_shift) / io.out_scale
        got = model.eval()(rows.x, rows.dt, rows.mask)
    diff = float((got - want).abs().max()) / max(1.0, float(want.abs().max()))
    if not diff <= 1e-4:
        raise CfcError(
            f"taking the standardisation into the imported weights changed the outputs by {diff:.3g} "
            "(relative); a wired model's masks may not allow it. Please report this with the files"
        )


def _arch(m: ncps_layout.NcpsModel, cfg: ImportNcpsConfig, task: dict[str, Any]) -> dict[str, Any]:
    """Our arch record for the ncps model, the settings checked against the shapes."""
    tokens = task["input"]["kind"] == "tokens"
    front = {"embedding_dim": m.features} if tokens else {}
    if not tokens and m.features != task["input"]["size"]:
        raise ConfigError(
            f"the ncps model reads {m.features} inputs per step, but data set '{task['dataset']}' has "
            f"{task['input']['size']}: check --dataset"
        )
    if m.kind == "ltc":
        if m.mixed_memory:
            raise ConfigError(
                "this ncps LTC has mixed memory (lstm.*); cfctool's LTC has none: import a CfC, or "
                "retrain the LTC without mixed_memory"
            )
        if cfg.mode is not None:
            raise ConfigError(f"--mode {cfg.mode} is for CfC models; these weights are an ncps LTC (rnn_cell.gleak)")
        return {"name": "ltc", "hidden": m.hidden, "ode_unfolds": cfg.ode_unfolds, **front}
    mode = cfg.mode or ("pure" if m.pure else "default")
    if (mode == "pure") != m.pure:
        raise ConfigError(
            f"--mode {mode} does not fit these weights: they "
            + ("have" if m.pure else "lack")
            + " w_tau and A, which only mode 'pure' has"
            + ("" if m.pure else " (give --mode default or no_gate)")
        )
    common = {"mode": mode, "head_activation": "tanh", "mixed_memory": m.mixed_memory, **front}
    if m.kind == "cfc-ncp":
        if len(m.layers) != 3:
            raise ConfigError(
                f"this wired ncps CfC has {len(m.layers)} layers; cfctool's cfc-ncp is an NCP (inter, command, motor)"
            )
        masks = [m.tensors[f"rnn_cell.layer_{k}.sparsity_mask"] for k in range(3)]
        measured = 1.0 - float(sum(x.sum() for x in masks) / sum(x.numel() for x in masks))
        return {
            "name": "cfc-ncp",
            "hidden": m.hidden,
            "motor": m.layers[-1],
            "sparsity": cfg.sparsity if cfg.sparsity is not None else round(min(max(measured, 0.1), 0.9), 2),
            "wiring_seed": cfg.wiring_seed if cfg.wiring_seed is not None else -1,
            "ncp_layers": m.layers,
            **common,
        }
    if m.backbone_dropout_layers and not cfg.backbone_dropout:
        raise ConfigError(
            "this ncps backbone has Dropout layers (its Linear layers sit at 0, 2, 5, ...): give their "
            "rate with --backbone-dropout (ncps's backbone_dropout)"
        )
    if m.backbone_dropout_layers is False and cfg.backbone_dropout:
        raise ConfigError(
            f"--backbone-dropout {cfg.backbone_dropout} does not fit these weights: their backbone "
            "has no Dropout layers (Linear layers at 0, 2, 4, ...)"
        )
    return {
        "name": "cfc",
        "hidden": m.hidden,
        "backbone_widths": m.backbone_widths,
        "backbone_activation": cfg.activation,
        "backbone_dropout": cfg.backbone_dropout or 0.0,
        **common,
    }


def _front_and_head(
    m: ncps_layout.NcpsModel, cfg: ImportNcpsConfig, state: dict[str, torch.Tensor], task: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """The embedding and our readout (the ncps projection and the user's readout composed)."""
    out: dict[str, torch.Tensor] = {}
    tokens = task["input"]["kind"] == "tokens"
    _check_embedding_flag(cfg, tokens)
    if tokens:
        assert cfg.embedding is not None  # _check_embedding_flag
        e = _linear(state, cfg.embedding, "--embedding", bias=False)[0]
        vocab = task["input"]["vocab_size"]
        if e.shape != (vocab, m.features):
            raise ConfigError(
                f"'{cfg.embedding}.weight' is {tuple(e.shape)}, but the ncps model reads {m.features} "
                f"values per token and '{task['dataset']}' has a vocabulary of {vocab} (its ids are "
                "cfctool's, built from the training split: the embedding's rows must follow them)"
            )
        out["embedding.weight"] = e
    n_out = task["output"]["size"]
    width = m.layers[-1] if m.kind == "cfc-ncp" else m.hidden  # what our head reads
    w, b = torch.eye(m.outputs), torch.zeros(m.outputs)  # the ncps module's output
    if m.projection:
        w, b = m.tensors["fc.weight"], m.tensors["fc.bias"]
    elif m.kind == "ltc" and m.outputs < m.hidden:  # the first `motor` neurons (their output_w is in the core)
        w = torch.cat([torch.eye(m.outputs), torch.zeros(m.outputs, m.hidden - m.outputs)], 1)
    if cfg.readout is not None:
        rw, rb = _linear(state, cfg.readout, "--readout")
        if rw.shape[1] != m.outputs or rw.shape[0] != n_out:
            raise ConfigError(
                f"the readout '{cfg.readout}' maps {rw.shape[1]} -> {rw.shape[0]}, but the ncps module "
                f"gives {m.outputs} values and '{task['dataset']}' has {n_out} outputs"
            )
        w, b = rw @ w, rw @ b + rb
    elif m.outputs != n_out:
        raise ConfigError(
            f"the ncps module gives {m.outputs} values per step but '{task['dataset']}' has {n_out} "
            "outputs: give --readout PREFIX (the nn.Linear after it)"
        )
    out["head.weight"], out["head.bias"] = w.reshape(n_out, width).contiguous(), b.contiguous()
    return out


def _check_embedding_flag(cfg: ImportNcpsConfig, tokens: bool) -> None:
    if tokens != (cfg.embedding is not None):
        raise ConfigError(
            f"data set '{cfg.dataset}' reads token ids: give --embedding PREFIX (the nn.Embedding "
            "before the ncps module)"
            if tokens
            else f"--embedding is for token data sets; '{cfg.dataset}' reads features"
        )


def _malformed_is_file_error(source: str, read):
    """`read()`, where a shape that no ncps module has (a scalar where a vector belongs, a
    1-D matrix) is a file error naming the file, not a traceback."""
    try:
        return read()
    except (IndexError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{source}: the ncps weights are malformed ({type(exc).__name__}: "
            f"{terminal(exc, 200)}); write them from the ncps model with: {SAVE_LINE}"
        ) from None


def _linear(state, prefix: str, flag: str, bias: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    keys = [f"{prefix}.weight"] + ([f"{prefix}.bias"] if bias else [])
    if any(k not in state for k in keys):
        near = sorted(k.rsplit(".", 1)[0] for k in state if k.endswith(".weight") and "rnn_cell." not in k)
        raise ConfigError(
            f"{flag} {terminal(prefix, 80)}: the file has no {terminal(' / '.join(keys), 200)}; "
            f"candidates: {terminal(', '.join(near[:20]), 400) or 'none'}"
        )
    if state[keys[0]].dim() != 2 or (bias and state[keys[1]].dim() != 1):
        raise CheckpointError(
            f"{flag} {terminal(prefix, 80)}: '{terminal(keys[0], 120)}' is not a matrix"
            + (" with a bias vector" if bias else "")
            + "; is it the right prefix?"
        )
    return state[keys[0]].float(), state[keys[1]].float() if bias else None


def _autoncp_masks(m: ncps_layout.NcpsModel, sparsity: float, seed: int) -> list[torch.Tensor]:
    """The three layer masks ncps's AutoNCP(hidden, motor, sparsity, seed) draws (our generator
    draws the same circuit), for a wired model whose layer sizes are that AutoNCP's."""

    try:
        shape = NcpShape.auto(m.hidden, m.layers[-1], sparsity)
    except ValueError as exc:
        raise ConfigError(
            f"no AutoNCP of {m.hidden} units, {m.layers[-1]} motor and sparsity {sparsity}: {exc}"
        ) from None
    if [shape.inter, shape.command, shape.motor] != m.layers:
        raise ConfigError(
            f"AutoNCP({m.hidden}, {m.layers[-1]}, sparsity_level={sparsity}) has layers "
            f"{[shape.inter, shape.command, shape.motor]}, the weights {m.layers}: check --sparsity"
        )
    sensory, internal = ncp_adjacency(shape, m.features, seed)
    return [torch.from_numpy(mask).float() for mask in cfc_layer_masks(shape, sensory, internal)]


def _rebuild_masks(m: ncps_layout.NcpsModel, cfg: ImportNcpsConfig) -> None:
    """A wired CfC saved without its masks: AutoNCP's from --wiring-seed and --sparsity."""
    if cfg.wiring_seed is None or cfg.sparsity is None:
        raise ConfigError(
            "this wired ncps CfC's state dict has no wiring masks (rnn_cell.layer_K.sparsity_mask): give "
            "--wiring-seed and --sparsity of its AutoNCP to rebuild them"
        )
    if m.hidden * m.hidden > MAX_PARAMS:  # AutoNCP draws a units x units wiring: bounded before it is made
        raise CheckpointError(f"the file claims a wired CfC of {m.hidden:,} units, more than cfctool builds")
    for k, mask in enumerate(_autoncp_masks(m, cfg.sparsity, cfg.wiring_seed)):
        m.tensors[f"rnn_cell.layer_{k}.sparsity_mask"] = mask


def _check_wiring(m: ncps_layout.NcpsModel, arch: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """--wiring-seed: the masks AutoNCP draws for it must be the stored ones."""
    for k, mask in enumerate(_autoncp_masks(m, arch["sparsity"], arch["wiring_seed"])):
        if not torch.equal(tensors[f"rnn.cells.{k}.sparsity_mask"].float(), mask):
            raise ConfigError(
                f"AutoNCP({m.hidden}, {m.layers[-1]}, sparsity_level={arch['sparsity']}, "
                f"seed={arch['wiring_seed']}) draws other masks than the file's (layer {k}): check "
                "--wiring-seed and --sparsity, or leave them out (the stored masks are used either way)"
            )
