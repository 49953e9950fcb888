"""`cfctool quantize`: weights stored as integers, activations calibrated, run on int8 kernels.

- Weights: every Linear weight of the recurrent core and the readout (and the token
  embedding, per row, unless `embedding=False`) is stored int8 or int4 (symmetric, per
  output channel or per tensor) through the checkpoint's encodings.
- Activations: `static` calibrates one scale per backbone layer on `calib` training
  sequences (observer `minmax`, `percentile` or `mse`); the state y in [0, 1] has the
  fixed scale 1/127. `dynamic` takes max |z| / 127 at every step instead. `fuse=False`
  adds a quantization point on every Linear output (each backbone layer before its
  activation, each of the four heads), as an engine that does not fuse Linear and
  activation, or the heads into one product, would have: the seed's "static" column.
- `qat`: fine-tunes through `fit()` with the weights and the activations the int8 engine
  quantizes (backbone outputs at min-max scales, the state on its 1/127 grid)
  fake-quantized (straight-through), then converts and calibrates as `static`.

Every run reports the mean squared error of the cells' states against the fp32 model on
the calibration sequences, so observers can be compared (the compression study, "Analysis": the
error that matters is the state's, and it grows super-linearly with the weight error).
"""

from __future__ import annotations

from typing import Any

import torch

from cfctool.checkpoint import Checkpoint
from cfctool.configs import QuantizeConfig, TrainConfig, choices_of
from cfctool.data.registry import load_split
from cfctool.encodings import INTEGER_CODECS, integer_bytes, quant_params, quantize_spec
from cfctool.encodings import quantize as quantize_values
from cfctool.errors import CfcError, ConfigError, DataError
from cfctool.families import get
from cfctool.families.build import model_from_checkpoint
from cfctool.models import HEADS
from cfctool.models.quantized import QuantFoldedCfC, supports_integer
from cfctool.ops.budget import Budget, Found, Make
from cfctool.ops.compress import Context, Result, compress
from cfctool.records import QuantizationRecord
from cfctool.task_data import resolve_data_dir, task_dataset
from cfctool.training.fit import fit

# candidates of the mse observer, as fractions of the min-max scale (clipping the tail)
MSE_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
PERCENTILE = 99.99


def weight_names(model: torch.nn.Module, embedding: bool) -> list[str]:
    """The tensors to store as integers: Linear weights (core and readout), the embedding."""
    names = [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if embedding and getattr(model, "embedding", None) is not None:
        names.append("embedding.weight")
    return sorted(names)


def product_units(model: torch.nn.Module) -> dict[str, list[str]]:
    """The products `--keep-float` names (each backbone layer, each cell's four fused heads)
    and their weights."""
    units: dict[str, list[str]] = {}
    for k, cell in enumerate(getattr(model.rnn, "cells", [])):
        for j in range(len(getattr(cell, "backbone", []))):
            units[f"cells.{k}.backbone.{j}"] = [f"rnn.cells.{k}.backbone.{j}.weight"]
        units[f"cells.{k}.heads"] = [f"rnn.cells.{k}.{h}.weight" for h in HEADS if hasattr(cell, h)]
    return units


def kept_units(model: torch.nn.Module, keep_float: str | None) -> list[str]:
    """The units of --keep-float, checked against the model."""
    names = [u.strip() for u in (keep_float or "").split(",") if u.strip()]
    units = product_units(model)
    unknown = [u for u in names if u not in units]
    if unknown:
        raise ConfigError(
            f"--keep-float: no product {', '.join(map(repr, unknown))} in this model; its products: "
            f"{', '.join(units) or 'none'}"
        )
    if names and len(names) == len(units):
        raise ConfigError("--keep-float names every product: nothing would be quantized (keep the fp32 model)")
    return names


def _pruned(ckpt: Checkpoint, name: str, bits: int) -> bool:
    """Whether a weight is stored smaller sparse than dense at `bits` (a pruned one: its zeros
    are the pruning's, kept as zeros by the symmetric integer codecs)."""
    t = ckpt.tensors[name]
    if not bool((t == 0).any()):
        return False
    sizes = integer_bytes(t, bits)
    return sizes["sparse"] < sizes["dense"]


def _is_quantized(ckpt: Checkpoint) -> bool:
    return bool((ckpt.record.get("compression") or {}).get("quantization")) or any(
        spec["codec"] in INTEGER_CODECS for spec in ckpt.encodings.values()
    )


def check(ckpt: Checkpoint, cfg: QuantizeConfig) -> None:
    """What the settings cannot be for this checkpoint (the driver validated them already)."""
    if _is_quantized(ckpt):
        raise CfcError(
            f"{ckpt.source or 'the checkpoint'} is already quantized "
            f"({getattr(QuantizationRecord.read(ckpt.record), 'scheme', 'int')}); "
            "quantize its fp32 original instead"
        )
    if cfg.keep_float:
        kept_units(model_from_checkpoint(ckpt), cfg.keep_float)


def quantize(
    ckpt: Checkpoint, cfg: QuantizeConfig, *, data_dir=None, argv: list[str] | None = None, notify=None, progress=None
) -> Checkpoint:
    """A new checkpoint: integer weights, calibrated activation scales, the state error."""
    return compress(ckpt, cfg, method="quantize", data_dir=data_dir, argv=argv, notify=notify, progress=progress)


def transform(ckpt: Checkpoint, cfg: QuantizeConfig, ctx: Context) -> Result:
    """Integer weights, calibrated activation scales and the state error against fp32."""
    say = ctx.say
    if cfg.fold_embedding:
        ckpt = fold_embedding(ckpt)
    model = model_from_checkpoint(ckpt)
    original = model  # the fp32 model every state error is measured against
    units = kept_units(model, cfg.keep_float)
    kept = sorted(w for u in units for w in product_units(model)[u])
    names = [n for n in weight_names(model, cfg.embedding) if n not in kept]
    if not [n for n in names if n != "embedding.weight"]:
        raise CfcError(f"'{ckpt.arch['name']}' has no Linear layers to quantize")
    calib = _calibration_data(ckpt, cfg, ctx.data_dir, say)  # every scheme reports the state error on it
    qat_kept = None
    if cfg.scheme == "qat":
        ckpt, qat_kept = _qat(ckpt, cfg, names, ctx.data_dir, say, ctx.progress, calib)
    quantized = ckpt.encode(_specs(ckpt, cfg, names))
    if kept:  # the engine reads which products stay float from the record
        quantized = quantized.derive(
            compression={**(quantized.record.get("compression") or {}), "quantization": {"float_layers": kept}}
        )
    qmodel = model_from_checkpoint(quantized)
    scales: dict[str, float] = {}
    if cfg.scheme in ("static", "qat"):
        say(f"calibrating activation scales on {len(calib)} sequences ({cfg.observer} observer)")
        scales = calibrate(quantized, qmodel, calib, cfg.observer, reference=original, fuse=cfg.fuse)
    report = state_error(quantized, qmodel, original, calib, scales, cfg.scheme == "dynamic", cfg.fuse)
    integer = supports_integer(quantized, qmodel)
    if not integer:
        say(
            f"no integer engine runs '{ckpt.arch['name']}' models: the weights are stored as integers and run "
            "decoded to float32 (simulated)"
        )
    sections: dict[str, dict[str, Any]] = {}
    if cfg.fold_embedding:
        sections["embedding_folded"] = {
            "from_width": ckpt.arch["embedding_folded_from"],
            "to_width": ckpt.arch["embedding_dim"],
        }
    sections["quantization"] = QuantizationRecord(
        scheme=cfg.scheme,
        bits=cfg.bits,
        granularity=cfg.granularity,
        observer=cfg.observer if cfg.scheme != "dynamic" else None,
        calib_sequences=len(calib),
        fuse=cfg.fuse,
        embedding=cfg.embedding,
        weights=len(names),
        activations="dynamic: max|z|/127 per step" if cfg.scheme == "dynamic" else "static",
        activation_scales=scales,
        state_mse=report,
        integer_engine=integer,
        float_units=units if kept else None,
        float_layers=kept if kept else None,
        # 0: the fine-tuned epochs were worse on validation, the starting weights were kept (= static)
        qat_kept_epoch=qat_kept,
    ).to_dict()
    return Result(quantized, sections)


def _specs(ckpt: Checkpoint, cfg: QuantizeConfig, names: list[str]) -> dict[str, dict[str, Any]]:
    """The encoding of every weight: the embedding always per row (a token looks up its own
    row) with fp16 row scales; a pruned weight as its non-zeros where that is smaller."""
    axis = 0 if cfg.granularity == "channel" else None
    specs = {}
    for name in names:
        table = name == "embedding.weight"
        specs[name] = quantize_spec(
            cfg.bits,
            list(ckpt.tensors[name].shape),
            axis=0 if table else axis,
            scale_dtype="float16" if table else "float32",
        )
        if (table or axis == 0) and _pruned(ckpt, name, cfg.bits):  # pruning and quantization multiply
            # fp16 row scales: at 5% kept, float32 scales would be a fifth of the bytes
            specs[name] = {**specs[name], "codec": f"sparse-int{cfg.bits}", "layout": "auto", "scale_dtype": "float16"}
    return specs


def fold_embedding(ckpt: Checkpoint) -> Checkpoint:
    folder = get(ckpt.arch["name"]).fold_embedding
    if folder is None:
        raise CfcError(f"--fold-embedding is not available for '{ckpt.arch['name']}' models")
    try:
        return folder(ckpt)
    except ValueError as exc:
        raise CfcError(f"--fold-embedding: {exc}") from None


def _calibration_data(ckpt: Checkpoint, cfg: QuantizeConfig, data_dir, say):
    directory, how = resolve_data_dir(ckpt, data_dir)
    if how:
        say(how)
    try:
        split = load_split(ckpt.task, "train", directory, ckpt.task_tensors())
    except DataError as exc:
        raise DataError(
            f"{cfg.scheme} quantization needs the training data of '{ckpt.task['dataset']}' "
            f"(calibration and the state-error report): {exc}"
        ) from None
    return split.sample(cfg.calib, seed=cfg.seed)


def _points(name: str, t: torch.Tensor, fuse: bool) -> dict[str, torch.Tensor]:
    """The quantization points in one captured tensor: backbone outputs ('cells.K.backbone.J');
    without fusing also every Linear output: backbone pre-activations ('...J.linear') and
    each head ('cells.K.heads.ff1', ...)."""
    if name.endswith(".state") or (fuse and (name.endswith(".linear") or name.endswith(".heads"))):
        return {}
    if name.endswith(".heads"):
        if t.shape[-1] % len(HEADS):
            return {}
        return dict(zip((f"{name}.{h}" for h in HEADS), t.chunk(len(HEADS), -1)))
    return {name: t}


def calibrate(ckpt: Checkpoint, qmodel, calib, observer: str, reference, fuse: bool = True) -> dict[str, float]:
    """One scale per quantization point (see `_points`), from the decoded model's activations."""
    acts: dict[str, list[torch.Tensor]] = {}
    for b in calib.batches(256):
        for name, t in qmodel.capture(b.x, b.dt, b.mask).items():
            for point, values in _points(name, t, fuse).items():
                valid = values if b.mask is None else values[b.mask]
                acts.setdefault(point, []).append(valid.reshape(-1))
    scales = {}
    for name, parts in acts.items():
        values = torch.cat(parts).abs()
        if observer == "percentile":
            k = max(1, int(round(values.numel() * PERCENTILE / 100)))
            top = values.kthvalue(min(k, values.numel())).values
        else:
            top = values.max()
        scales[name] = max(float(top), 1e-8) / 127.0
    if observer == "mse" and scales:
        scales = _mse_search(ckpt, qmodel, reference, calib, scales, fuse)
    return scales


def _mse_search(ckpt, qmodel, reference, calib, scales: dict[str, float], fuse: bool) -> dict[str, float]:
    """Per layer in turn, the candidate scale (a fraction of min-max) with the lowest state MSE."""
    best = dict(scales)
    for name in sorted(scales):
        base = scales[name]
        trials = {
            f: state_error(ckpt, qmodel, reference, calib, {**best, name: base * f}, False, fuse)["mean"]
            for f in MSE_FRACTIONS
        }
        best[name] = base * min(trials, key=lambda c: trials[c])
    return best


def state_error(ckpt, qmodel, reference, calib, scales: dict, dynamic: bool, fuse: bool = True) -> dict[str, float]:
    """MSE of every cell's per-step states against the fp32 model: through the integer
    engine (simulated exactly in float) where there is one, else the decoded weights
    through the loop."""
    engine = (
        QuantFoldedCfC(qmodel, ckpt, scales, dynamic=dynamic, fuse=fuse, simulate=True)
        if supports_integer(ckpt, qmodel)
        else None
    )
    total, count, last_total, last_count = 0.0, 0, 0.0, 0
    for b in calib.batches(256):
        want = reference.capture(b.x, b.dt, b.mask)
        n_cells = sum(name.endswith(".state") for name in want)
        if engine is not None:
            got = engine.states(b.x, b.dt, b.mask)
        else:
            trace = qmodel.capture(b.x, b.dt, b.mask)
            got = [trace[f"cells.{k}.state"] for k in range(n_cells)]
        for k, states in enumerate(got):
            diff = (states - want[f"cells.{k}.state"]).pow(2)
            total += float((diff if b.mask is None else diff[b.mask]).sum())
            count += diff.numel() if b.mask is None else int(b.mask.sum()) * diff.shape[-1]
        final = (got[-1][:, -1] - want[f"cells.{n_cells - 1}.state"][:, -1]).pow(2)
        last_total, last_count = last_total + float(final.sum()), last_count + final.numel()
    return {"mean": total / max(count, 1), "final_state_last_cell": last_total / max(last_count, 1)}


def _qat(
    ckpt: Checkpoint, cfg: QuantizeConfig, names: list[str], data_dir, say, progress, calib
) -> tuple[Checkpoint, int]:
    """Fine-tune with fake-quantized weights (straight-through): the float result and the epoch
    kept by validation (0: the starting weights)."""
    dataset = task_dataset(ckpt, data_dir, "quantization-aware training")
    say(f"quantization-aware training: {cfg.epochs} epoch(s) at lr {cfg.lr}")
    model = model_from_checkpoint(ckpt)
    axis = 0 if cfg.granularity == "channel" else None

    def fake(bits: int):
        def fn(w: torch.Tensor) -> torch.Tensor:
            scale, _ = quant_params(w.detach(), bits, axis, True)
            q = quantize_values(w, scale, None, bits, axis)
            return (
                (q.float().reshape(w.shape[0], -1) * scale.unsqueeze(1)).reshape(w.shape)
                if axis == 0
                else q.float() * scale
            )

        return fn

    fns = {n: fake(cfg.bits) for n in names}
    # activations too, as the int8 engine quantizes them: static scales from the fp32 model
    scales = calibrate(ckpt, model, calib, "minmax", reference=model)
    cells = getattr(model.rnn, "cells", [])
    for k, cell in enumerate(cells):
        cell.fake_quant = {"acts": [scales.get(f"cells.{k}.backbone.{j}", 1.0) for j in range(len(cell.backbone))]}
    train_cfg = TrainConfig(
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed, optimizer="adam", threads=cfg.threads
    )
    try:
        result = fit(model, dataset, train_cfg, fake_quant=fns, progress=progress, start_is_candidate=True)
    finally:
        for cell in cells:
            cell.fake_quant = None
    say(
        f"quantization-aware training kept epoch {result.best_epoch} (0: the starting weights) by validation "
        "accuracy of the fake-quantized model"
    )
    tensors = {**ckpt.tensors, **{k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return ckpt.derive(tensors=tensors), result.best_epoch


# ----------------------------------------------------------------------------- how reports show it


def label(c: dict) -> str:
    return f"quantize {c.get('scheme')} int{c.get('bits', 8)}" + (" mixed" if c.get("keep_float") else "")


def describe(compression: dict) -> dict[str, str]:
    q, out = compression["quantization"], {}
    mse = (q.get("state_mse") or {}).get("mean")
    out["quantization"] = (
        f"int{q['bits']} {q['scheme']} ({q['granularity']} weight scales"
        + (f", {q['observer']} observer" if q.get("observer") else "")
        + f", {len(q.get('activation_scales') or {})} activation scales"
        + (f", state MSE vs fp32 {mse:.3g}" if mse is not None else "")
        + ")"
        + (f"; float32 kept: {', '.join(q['float_units'])}" if q.get("float_units") else "")
    )
    if compression.get("embedding_folded"):
        e = compression["embedding_folded"]
        out["embedding_folded"] = f"embedding folded ({e['from_width']} -> {e['to_width']} wide)"
    return out


def result_line(out: Checkpoint) -> str | None:
    q = out.record["compression"]["quantization"]
    if q.get("integer_engine") is False:  # say what was done instead of a state error that means nothing
        return (
            f"no integer engine runs '{out.arch['name']}' models: {q['weights']} weight tensor(s) stored as "
            f"int{q['bits']} ({', '.join(sorted(out.encodings))}), decoded to float32 at load; eval and bench run "
            "them on the loop engine (simulated)"
        )
    if not q.get("state_mse"):
        return None
    return (
        f"state MSE vs fp32 on {q['calib_sequences']} calibration sequences: {q['state_mse']['mean']:.3g} "
        f"(final state {q['state_mse']['final_state_last_cell']:.3g})"
    )


# ----------------------------------------------------------------------------- the budget's axis


class QuantizeAxis:
    """quantize --max-drop: every granularity x observer candidate of int4, then (when none of
    those is within) of int8; the fewest weight bytes within (ties: the higher accuracy). When
    none is, the best int8 candidate keeps products in float32, the most sensitive first (the
    state error with that product alone quantized), one more at a time."""

    def search(self, budget: Budget, ckpt: Checkpoint, cfg: QuantizeConfig, make: Make) -> Found:
        found: list[tuple[int, float, dict, Checkpoint]] = []
        for bits in (4, 8):
            for granularity in choices_of(QuantizeConfig, "granularity"):
                observers = choices_of(QuantizeConfig, "observer") if cfg.scheme != "dynamic" else (cfg.observer,)
                for observer in observers:
                    setting = {"bits": bits, "granularity": granularity, "observer": observer}
                    out, within = budget.trial(setting, make)
                    if within:
                        trial = budget.trials[-1]
                        found.append((trial["weight_bytes"], -budget.score(trial), setting, out))
            if found:  # int4 within the budget: no int8 file is smaller
                break
        if found:
            _, _, setting, best = min(found, key=lambda f: (f[0], f[1]))
            how = (
                f"int4, then int8, x granularity x observer "
                f"({len(budget.trials)} candidates), the fewest weight bytes (ties: the higher accuracy)"
            )
            return Found(best, setting, how)
        return self._float_fallback(budget, list(product_units(model_from_checkpoint(ckpt))), make)

    def _float_fallback(self, budget: Budget, units: list[str], make: Make) -> Found:
        best = budget.best([t for t in budget.trials if t["setting"]["bits"] == 8])["setting"]
        if len(units) < 2:
            raise budget.closest()
        sensitivity = {}
        for unit in units:  # that product alone quantized: its share of the state error
            alone = make({**best, "keep_float": ",".join(u for u in units if u != unit)}, budget.models[0])
            sensitivity[unit] = alone.record["compression"]["quantization"]["state_mse"]["mean"]
        order = sorted(units, key=lambda u: sensitivity[u], reverse=True)
        budget.say(
            "budget: no integer candidate within; keeping products in float32, most sensitive first: "
            + ", ".join(f"{u} ({sensitivity[u]:.3g})" for u in order)
        )
        for n in range(1, len(order)):
            setting = {**best, "keep_float": ",".join(order[:n])}
            out, within = budget.trial(setting, make)
            if within:
                how = (
                    "no integer candidate within: the best int8 one with products kept in float32, most sensitive first"
                )
                return Found(out, setting, how, {"sensitivity": sensitivity})
        raise budget.closest()


AXIS = QuantizeAxis()
