"""`cfctool reduce`: model-order reduction of Neural ODEs and of CfC (the MOR paper; `cfctool.mor`).

Neural ODEs (`conv-ode`, `ode-rnn`; the block x' = tanh(A x + b) [+ Z u]):
- snapshots of the state and of the nonlinearity from `snapshots` training inputs, every
  `every`-th step, streamed into float64 Gram matrices (POD bases, singular values kept);
- `pod-deim` / `qdeim` / `odeim`: z' = N tanh(M z + b_P) [+ V^T Z u] with M = P^T A V,
  N = V^T U (P^T U)^+ (`interpolation="lstsq"`: N = V^T G_:P G_PP^+, the least-squares
  rebuild of f from f_P over the snapshots, much more accurate at small m on the conv ODE);
  `pod`: the Galerkin projection (N = V^T, M = A V, every unit);
- `svd`: A truncated to rank K (two factors), every unit kept; with `interpolation="lstsq"`
  the rank-K map closest to A on the snapshot states (`mor.low_rank` with their second moment);
- `apoz`: the K units with the largest mean |state| at the last step kept (an ode-rnn stays
  an ordinary smaller ode-rnn);
- the readout of a sequence model reads V z (V folded into it); an image model lifts V z
  before its pool. The result is an `ode-reduced` checkpoint (or the base family, apoz).
CfC (`cfc`, `cfc-deep`, one cell): `pod-deim` / `qdeim` interpolate the hidden state at K
points, x ~ D x_P with D = V (P^T V)^-1 (or the least-squares D), which is an ordinary CfC
with K hidden units (the heads' rows P, the recurrent columns W_s D, the readout W_out D); `apoz` removes the
hidden units least active at the last step (the structured-pruning machinery); `svd`
factors the four stacked heads (4h x U, reading the last backbone layer) to rank K through
a shared K-wide linear map (`head_rank`), every unit kept: the weights' truncated SVD, or
with `interpolation="lstsq"` the rank-K map that is least-squares optimal on the snapshots
(the top eigenvectors of the heads' output second moment W C W^T, C that of the backbone
output).
`finetune` epochs through `fit()`: the layers after the ODE block (the seed's protocol) or all.
"""

from __future__ import annotations

from typing import Any

import torch

from cfctool import mor
from cfctool.checkpoint import Checkpoint
from cfctool.configs import ReduceConfig
from cfctool.errors import CfcError, ConfigError
from cfctool.families import FAMILIES, get
from cfctool.families.build import model_from_checkpoint
from cfctool.models import HEADS
from cfctool.models.units import remove_units
from cfctool.mor import Gram
from cfctool.ops.budget import SmallestInteger
from cfctool.ops.compress import Context, Result, compress
from cfctool.task_data import task_dataset
from cfctool.training.finetune import finetune_checkpoint

CFC_METHODS = ("pod-deim", "qdeim", "apoz", "svd")


def check(ckpt: Checkpoint, cfg: ReduceConfig) -> None:
    """Every problem before any work: settings that do not fit this model are usage errors
    (ConfigError, exit 2), a model reduce cannot take is a CfcError (exit 1)."""
    name, family = ckpt.arch["name"], get(ckpt.arch["name"])
    if ckpt.encodings:
        raise CfcError(f"{ckpt.source or 'the checkpoint'} stores encoded tensors; reduce its fp32 original")
    assert cfg.dim is not None  # ReduceConfig.validate
    if family.reduction == "ode":
        assert family.state_size is not None  # an ODE family states its state size
        n = family.state_size(ckpt.arch)
        if cfg.dim > n or (cfg.points or cfg.dim) > n:
            raise ConfigError(f"--dim/--points must be at most the state size {n} of this {name} (got {cfg.dim})")
        return
    if family.reduction == "cfc":
        if cfg.method not in CFC_METHODS:
            raise ConfigError(
                f"--method {cfg.method} does not apply to '{name}'; for CfC use one of {', '.join(CFC_METHODS)}"
            )
        if ckpt.arch.get("mixed_memory") or ckpt.arch["mode"] != "default":
            raise CfcError("CfC reduction needs a 'default'-mode CfC without mixed memory")
        if cfg.method == "svd":
            widths = ckpt.arch["backbone_widths"]
            if not widths or ckpt.arch.get("head_rank"):
                raise CfcError(
                    "SVD truncation of the heads needs a CfC with a backbone whose heads are not factored already"
                )
            if cfg.dim > widths[-1]:
                raise ConfigError(
                    f"--dim (the heads' rank) must be at most the backbone's output width {widths[-1]} (got {cfg.dim})"
                )
            return
        if cfg.dim >= ckpt.arch["hidden"]:
            raise ConfigError(f"--dim must be below the hidden size {ckpt.arch['hidden']} (got {cfg.dim})")
        return
    reducible = [f.name for f in FAMILIES.values() if f.reduction]
    raise CfcError(f"reduce applies to {', '.join(reducible[:-1])} and {reducible[-1]}, not '{name}'")


def reduce(
    ckpt: Checkpoint, cfg: ReduceConfig, *, data_dir=None, argv: list[str] | None = None, notify=None, progress=None
) -> Checkpoint:
    """A new checkpoint whose state (or heads) is projected onto a K-dimensional basis."""
    return compress(ckpt, cfg, method="reduce", data_dir=data_dir, argv=argv, notify=notify, progress=progress)


def transform(ckpt: Checkpoint, cfg: ReduceConfig, ctx: Context) -> Result:
    dataset = task_dataset(ckpt, ctx.data_dir, "reduction (its snapshots)")
    model = model_from_checkpoint(ckpt)
    sample = dataset.splits["train"].sample(cfg.snapshots, seed=cfg.seed)
    ode = get(ckpt.arch["name"]).reduction == "ode"
    if cfg.method != "svd" or (not ode and cfg.interpolation == "lstsq"):
        ctx.say(f"snapshots from {len(sample):,} training inputs, every {cfg.every} step(s)")
    if ode:
        out, detail = _reduce_ode(ckpt, model, sample, cfg)
    else:
        out, detail = _reduce_cfc(ckpt, model, sample, cfg)
    if cfg.finetune:
        out, detail["finetune_result"] = _finetune(out, dataset, cfg, ctx.say, ctx.progress)
    return Result(out, {"reduction": {**cfg.to_dict(), **detail}})


AXIS = SmallestInteger("dim")


def snapshot_grams(model, split, every: int, batch: int = 64):
    """(Gram of the states, Gram of the nonlinearity values, mean |state| at the last step)."""
    grams: dict[str, Gram] = {}
    last_abs: Any = None  # the summed |final state|, once a batch is in
    count = 0
    for b in split.batches(batch):
        trace = model.capture(b.x, b.dt, b.mask)
        for key in ("state", "nonlinearity"):
            t = trace.get(f"cells.0.{key}")
            if t is None:
                continue
            picked = t[:, every - 1 :: every] if t.shape[1] >= every else t
            grams.setdefault(key, Gram(t.shape[-1])).add(picked)
        if "cells.0.initial" in trace:  # a nonzero x(0) (the conv front's output) is a state the basis must hold
            grams["state"].add(trace["cells.0.initial"])
        final = trace["cells.0.state"][:, -1].abs()
        last_abs = final.sum(0) if last_abs is None else last_abs + final.sum(0)
        count += final.shape[0]
    return grams["state"], grams.get("nonlinearity"), last_abs / max(count, 1)


def _reduce_ode(ckpt, model, sample, cfg) -> tuple[Checkpoint, dict[str, Any]]:
    base = ckpt.arch["name"]
    core = model.rnn
    if base == "conv-ode":
        a, b = core.dense_block()
    else:
        a, b = core.matrix().detach(), core.b.detach()
    a, b = a.double(), b.double()
    n, k = a.shape[0], cfg.dim
    detail: dict[str, Any] = {"state_size": n}
    if cfg.method == "svd" and cfg.interpolation != "lstsq":  # the weights alone: no snapshots
        left, right, s = mor.low_rank(a, None, k)
        detail["singular_values_A"] = s.tolist()
        return _reduced(ckpt, model, _svd_parts(base, left, right, b), n, n, cfg, rank=k, interpolated=False), detail
    x_gram, f_gram, activity = snapshot_grams(model, sample, cfg.every)
    detail["snapshot_count"] = x_gram.count
    if cfg.method == "svd":  # rank K closest to A on the snapshot states
        left, right, s = mor.low_rank(a, x_gram.matrix / x_gram.count, k)
        detail["singular_values_A_weighted"] = s.tolist()
        return _reduced(ckpt, model, _svd_parts(base, left, right, b), n, n, cfg, rank=k, interpolated=False), detail
    if cfg.method == "apoz":
        keep = torch.sort(torch.argsort(activity, descending=True)[:k]).values
        detail["kept_units"] = keep.tolist()
        if base == "ode-rnn":  # a smaller ode-rnn: W, b, Z and the readout restricted to the kept units
            return _smaller_ode_rnn(ckpt, keep), detail
        eye = torch.eye(n, dtype=torch.float64)[:, keep]
        return _reduced(
            ckpt, model, dict(M=a[keep][:, keep], b=b[keep], project=eye), k, k, cfg, interpolated=False
        ), detail
    v, sx = x_gram.basis(k)
    detail["singular_values_state"] = sx.tolist()
    if cfg.method == "pod":
        parts = dict(M=a @ v, b=b, N=v.t())
        m = n
    else:
        m = cfg.points or k
        u, sf = f_gram.basis(m)
        detail["singular_values_nonlinearity"] = sf.tolist()
        points = {
            "pod-deim": lambda: mor.deim(u),
            "qdeim": lambda: mor.qdeim(u),
            "odeim": lambda: mor.odeim(u, cfg.oversample),
        }[cfg.method]()
        detail["points"] = points.tolist()
        rebuild = (
            mor.lstsq_interpolation(f_gram.matrix, points)
            if cfg.interpolation == "lstsq"
            else mor.interpolation(u, points)
        )
        parts = dict(M=a[points] @ v, b=b[points], N=v.t() @ rebuild)
        m = len(points)
    parts["project"] = v
    return _reduced(ckpt, model, parts, k, m, cfg), detail


def _svd_parts(base: str, left: torch.Tensor, right: torch.Tensor, b: torch.Tensor) -> dict:
    """A ~ left @ right: f reads left (right z) + b, every unit kept."""
    parts = dict(M=right, M_out=left, b=b)
    if base == "conv-ode":
        parts["project"] = None
    return parts


def _reduced(
    ckpt, model, parts: dict, k: int, m: int, cfg, rank: int | None = None, interpolated: bool = True
) -> Checkpoint:
    """An `ode-reduced` checkpoint from the reduced operators (float64 -> float32)."""
    base = ckpt.arch
    arch = {
        "name": "ode-reduced",
        "base": base["name"],
        "method": cfg.method,
        "dim": k,
        "points": m,
        "solver": base["solver"],
        "ode_dt": base["ode_dt"],
        "interpolated": interpolated and parts.get("N") is not None,
    }
    if rank is not None:
        arch["rank"] = rank
    t = {"rnn.M": parts["M"], "rnn.b": parts["b"]}
    if parts.get("M_out") is not None:
        t["rnn.M_out"] = parts["M_out"]
    if arch["interpolated"]:
        t["rnn.N"] = parts["N"]
    v = parts.get("project")
    head_w = ckpt.tensors["head.weight"].double()
    if base["name"] == "conv-ode":
        arch.update(channels=base["channels"], side=base["side"], t_end=base["t_end"], projected=v is not None)
        t["rnn.front.weight"], t["rnn.front.bias"] = ckpt.tensors["rnn.front.weight"], ckpt.tensors["rnn.front.bias"]
        if v is not None:
            t["rnn.project"] = v
    else:  # the readout reads V z; the input term is V^T Z u
        z = ckpt.tensors["rnn.Z.weight"].double()
        t["rnn.Z.weight"] = z if v is None else v.t() @ z
        head_w = head_w if v is None else head_w @ v
    t["head.weight"], t["head.bias"] = head_w, ckpt.tensors["head.bias"]
    for name in ("embedding.weight",):
        if name in ckpt.tensors:
            t[name] = ckpt.tensors[name]
    tensors = {name: val.float().contiguous() for name, val in t.items()}
    tensors.update({name: val for name, val in ckpt.tensors.items() if name.startswith("task.")})
    return ckpt.derive(tensors=tensors, arch=arch)


def _smaller_ode_rnn(ckpt: Checkpoint, keep: torch.Tensor) -> Checkpoint:
    t = dict(ckpt.tensors)
    t["rnn.W"] = t["rnn.W"][keep][:, keep].contiguous()
    t["rnn.b"] = t["rnn.b"][keep].contiguous()
    t["rnn.Z.weight"] = t["rnn.Z.weight"][keep].contiguous()
    t["head.weight"] = t["head.weight"][:, keep].contiguous()
    return ckpt.derive(tensors=t, arch={**ckpt.arch, "hidden": len(keep)})


def _reduce_cfc(ckpt, model, sample, cfg) -> tuple[Checkpoint, dict[str, Any]]:
    family = get(ckpt.arch["name"])
    assert family.unit_groups is not None and family.resize is not None  # a CfC family
    groups = family.unit_groups(ckpt.arch, ckpt.tensors)
    hidden = next(g for g in groups if g.name == "cells.0.hidden")
    k = cfg.dim
    if cfg.method == "svd":
        return _factor_heads(ckpt, model, sample, cfg)
    states, _, activity = snapshot_grams(model, sample, cfg.every)
    if cfg.method == "apoz":  # hidden units by their last-step activity, backbone units by their mean |activation|
        drop = {hidden.name: torch.sort(torch.argsort(activity)[: hidden.size - k]).values}
        detail: dict[str, Any] = {"kept_units": sorted(set(range(hidden.size)) - set(drop[hidden.name].tolist()))}
        tensors = remove_units(ckpt.tensors, [hidden], drop)
        return ckpt.derive(tensors=tensors, arch=family.resize(ckpt.arch, {hidden.name: k})), detail
    v, s = states.basis(k)
    points = mor.deim(v) if cfg.method == "pod-deim" else mor.qdeim(v)
    # x ~ D x_P: interpolation in the POD basis, or the least-squares fit over the snapshots
    d = (
        mor.lstsq_interpolation(states.matrix, points)
        if cfg.interpolation == "lstsq"
        else v @ torch.linalg.inv(v[points])
    )
    t = {name: val.clone() for name, val in ckpt.tensors.items()}
    for name, dim, offset, role in hidden.slices:
        w = t[name].double()
        if role == "own":  # the heads' rows (and biases) of the kept points
            t[name] = w.index_select(dim, points).float()
        else:  # columns that read the state: W (.., n) -> W D (.., k)
            cols = w.narrow(dim, offset, hidden.size)
            new = cols @ d if dim == 1 else (d.t() @ cols)
            t[name] = torch.cat(
                [
                    w.narrow(dim, 0, offset),
                    new,
                    w.narrow(dim, offset + hidden.size, w.shape[dim] - offset - hidden.size),
                ],
                dim,
            ).float()
    detail = {
        "points": points.tolist(),
        "singular_values_state": s.tolist(),
        "state_size": hidden.size,
        "snapshot_count": states.count,
    }
    return ckpt.derive(tensors=t, arch=family.resize(ckpt.arch, {hidden.name: k})), detail


def _factor_heads(ckpt, model, sample, cfg) -> tuple[Checkpoint, dict[str, Any]]:
    """Heads W (4h x U) -> P Q with P = E_K (4h x K, orthonormal), Q = E_K^T W (K x U): E_K the
    top eigenvectors of W C W^T, C = I (the weights' SVD: P Q is their rank-K truncation) or
    the backbone output's second moment over the snapshots (least-squares optimal there)."""
    names = [f"rnn.cells.0.{h}.weight" for h in HEADS]
    w = torch.cat([ckpt.tensors[n].double() for n in names])
    c = None
    if cfg.interpolation == "lstsq":
        last = f"cells.0.backbone.{len(ckpt.arch['backbone_widths']) - 1}"
        gram = mor.Gram(w.shape[1])
        for b in sample.batches(64):
            z = model.capture(b.x, b.dt, b.mask)[last]
            gram.add(z[:, cfg.every - 1 :: cfg.every] if z.shape[1] >= cfg.every else z)
        c = gram.matrix / max(gram.count, 1)
    p, q, singular = mor.low_rank(w, c, cfg.dim)
    t = dict(ckpt.tensors)
    for name, rows in zip(names, p.split(w.shape[0] // 4)):
        t[name] = rows.float().contiguous()
    t["rnn.cells.0.head_basis.weight"] = q.float().contiguous()
    detail = {"singular_values_heads": singular.tolist(), "heads_shape": list(w.shape)}
    return ckpt.derive(tensors=t, arch={**ckpt.arch, "head_rank": cfg.dim}), detail


def _finetune(ckpt: Checkpoint, dataset, cfg: ReduceConfig, say, progress):
    freeze: tuple[str, ...] = ()
    if cfg.finetune_scope == "after":  # the seed's protocol: only what reads the ODE block's output
        freeze = tuple({n.split(".")[0] for n in ckpt.model_tensors()} - {"head"})
    say(f"fine-tuning {cfg.finetune} epoch(s) at lr {cfg.lr} ({cfg.finetune_scope})")
    return finetune_checkpoint(ckpt, dataset, cfg, freeze=freeze, progress=progress)


# ----------------------------------------------------------------------------- how reports show it


def label(c: dict) -> str:
    pts = f"/{c['points']}" if c.get("points") else ""
    ft = f" +ft{c['finetune']}" if c.get("finetune") else ""
    return f"reduce {c.get('method')} {c.get('dim')}{pts}{ft}"


def result_line(out: Checkpoint) -> str:
    r = out.record["compression"]["reduction"]
    if "heads_shape" in r:
        return f"svd: heads {r['heads_shape'][0]}x{r['heads_shape'][1]} -> rank {out.arch['head_rank']}"
    return f"{r['method']}: state {r.get('state_size')} -> {out.arch.get('dim', out.arch.get('hidden'))}"
