"""`cfctool prune`: unstructured and structured, global and local, fine-tuned, physically smaller.

- Unstructured: the weights with the lowest score (|w|, or seeded random) are set to zero,
  `ratio` of the selected ones: one threshold across every selected tensor (global) or the
  same ratio in each (local). Exactly round(ratio x n) weights go, ties broken by position.
  Weights a wiring mask already removes (NCP) are not counted. Biases are never pruned.
- Structured: whole units (backbone units, hidden units, embedding dimensions; see the
  family's `unit_groups`) by the l1/l2 norm of every weight attached to them, incoming and
  outgoing; the result is the same family with smaller recorded sizes, so dense kernels
  (the folded engine, ONNX) do less work. Each group keeps at least one unit.
- `finetune` epochs through `fit()`; unstructured masks are held by `MaskConstraint`, so
  pruned weights stay exactly zero through the optimizer, momentum and weight decay.
- `storage='sparse'` stores every pruned tensor through the sparse encoding (values plus a
  bitmask or indices); loading restores the same dense weights.
"""

from __future__ import annotations

from typing import Any

import torch

from cfctool.checkpoint import Checkpoint
from cfctool.configs import PruneConfig
from cfctool.encodings import INTEGER_CODECS, sparse_spec
from cfctool.errors import CfcError
from cfctool.families import get
from cfctool.families.build import model_from_checkpoint
from cfctool.metrics import sparsity, wiring_mask
from cfctool.models.units import remove_units
from cfctool.ops.budget import LargestFraction
from cfctool.ops.compress import Context, Result, compress
from cfctool.task_data import task_dataset
from cfctool.training.finetune import finetune_checkpoint
from cfctool.training.fit import MaskConstraint


def check(ckpt: Checkpoint, cfg: PruneConfig) -> None:
    """What the settings cannot be for this checkpoint (the driver validated them already)."""
    encodings = ckpt.encodings
    if any(spec["codec"] in INTEGER_CODECS for spec in encodings.values()):
        raise CfcError(
            f"{ckpt.source or 'the checkpoint'} is quantized: prune its fp32 original, then quantize "
            "(prune -> quantize)"
        )
    family = get(ckpt.arch["name"])
    if cfg.structured and family.unit_groups is None:
        raise CfcError(
            f"structured pruning is not available for '{ckpt.arch['name']}' models; use unstructured "
            "pruning (without --structured)"
        )
    if cfg.scope == "embedding" and "embedding.weight" not in ckpt.tensors:
        raise CfcError(f"--scope embedding: this '{ckpt.task['dataset']}' model has no token embedding")
    if cfg.scope == "backbone" and not any(".backbone." in n for n in ckpt.tensors):
        raise CfcError(
            f"--scope backbone: '{ckpt.arch['name']}' models have no backbone; use --scope heads, recurrent or all"
        )
    if cfg.scope == "recurrent" and family.unit_groups is None:
        raise CfcError(f"--scope recurrent is not available for '{ckpt.arch['name']}' models; use --scope all")
    if cfg.structured:
        try:
            groups = _selected_groups(ckpt, cfg)
        except ValueError as exc:
            raise CfcError(f"--structured: {exc}") from None
        if not groups:
            raise CfcError(f"--structured --scope {cfg.scope}: '{ckpt.arch['name']}' has no such units")


def prune(
    ckpt: Checkpoint, cfg: PruneConfig, *, data_dir=None, argv: list[str] | None = None, notify=None, progress=None
) -> Checkpoint:
    """A new checkpoint with `cfg.ratio` of the selected weights (or units) removed."""
    return compress(ckpt, cfg, method="prune", data_dir=data_dir, argv=argv, notify=notify, progress=progress)


def transform(ckpt: Checkpoint, cfg: PruneConfig, ctx: Context) -> Result:
    """The weights (or units) removed, fine-tuned as asked, stored as asked."""
    if cfg.structured:
        pruned, masks, detail = structured(ckpt, cfg)
    else:
        pruned, masks, detail = unstructured(ckpt, cfg)
    ctx.say(_summary(detail))
    finetuned = None
    if cfg.finetune:
        pruned, finetuned = _finetune(pruned, cfg, held_at_zero(pruned, masks), ctx.data_dir, ctx.say, ctx.progress)
    if cfg.storage == "sparse":  # the pruned tensors (structured pruning leaves none with zeros)
        pruned = store_sparse(pruned, masks)
    section = {
        **{k: getattr(cfg, k) for k in ("ratio", "structured", "scope", "criterion", "finetune", "storage")},
        "global": cfg.global_threshold,
        "embedding_included": detail.pop("embedding_included"),
        **detail,
        **({"finetune_result": finetuned} if finetuned else {}),
        "sparsity": sparsity(pruned),
    }
    return Result(pruned, {"pruning": section})


AXIS = LargestFraction("ratio")


# ----------------------------------------------------------------------------- unstructured


def regions(ckpt: Checkpoint, scope: str = "all") -> dict[str, torch.Tensor]:
    """{tensor name: bool tensor of the entries that may be pruned} for a scope."""
    family = get(ckpt.arch["name"])
    model = model_from_checkpoint(ckpt)
    weights = [n for n, p in model.named_parameters() if p.dim() >= 2 and n.split(".")[-1] in family.weights]
    t = ckpt.tensors
    if scope == "recurrent":
        selected: dict[str, Any] = {}
        assert family.unit_groups is not None  # checked in _validate
        for group in family.unit_groups(ckpt.arch, t):
            for name, dim, offset, role in group.slices:
                if role == "recurrent" and name.endswith(".weight"):
                    region = selected.setdefault(name, torch.zeros_like(t[name], dtype=torch.bool))
                    region.narrow(dim, offset, group.size).fill_(True)
    else:
        keep = {
            "all": lambda n: True,
            "backbone": lambda n: ".backbone." in n,
            "heads": lambda n: n.split(".")[-2] in family.heads and n.startswith("rnn."),
            "embedding": lambda n: n == "embedding.weight",
        }[scope]
        selected = {n: torch.ones_like(t[n], dtype=torch.bool) for n in weights if keep(n)}
    for name, region in selected.items():
        wiring = wiring_mask(t, name)
        if wiring is not None:
            region &= wiring.bool()
    return {n: r for n, r in selected.items() if r.any()}


def _scores(values: torch.Tensor, criterion: str, generator: torch.Generator) -> torch.Tensor:
    if criterion == "random":
        return torch.rand(values.shape, generator=generator)
    return values.abs()


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k lowest scores, ties broken by position (stable)."""
    return torch.argsort(scores, stable=True)[:k]


def unstructured(ckpt: Checkpoint, cfg: PruneConfig) -> tuple[Checkpoint, dict[str, torch.Tensor], dict[str, Any]]:
    """(pruned checkpoint, {tensor: keep mask}, what was done)."""
    selected = regions(ckpt, cfg.scope)
    if not selected:
        raise CfcError(f"--scope {cfg.scope}: no weights to prune in this '{ckpt.arch['name']}' model")
    gen = torch.Generator().manual_seed(cfg.seed)
    names = sorted(selected)
    flat = {n: ckpt.tensors[n].detach().reshape(-1)[selected[n].reshape(-1)] for n in names}
    scores = {n: _scores(flat[n], cfg.criterion, gen) for n in names}
    removed: dict[str, torch.Tensor] = {}
    if cfg.global_threshold:
        allscores = torch.cat([scores[n] for n in names])
        chosen = _lowest(allscores, round(cfg.ratio * allscores.numel()))
        owner = torch.cat([torch.full((scores[n].numel(),), i) for i, n in enumerate(names)])
        starts = torch.tensor([0] + [scores[n].numel() for n in names]).cumsum(0)
        for i, n in enumerate(names):
            removed[n] = chosen[owner[chosen] == i] - starts[i]
    else:
        for n in names:
            removed[n] = _lowest(scores[n], round(cfg.ratio * scores[n].numel()))
    tensors, masks = dict(ckpt.tensors), {}
    for n in names:
        positions = torch.nonzero(selected[n].reshape(-1)).reshape(-1)[removed[n]]
        keep = torch.ones(ckpt.tensors[n].numel(), dtype=torch.bool)
        keep[positions] = False
        keep = keep.reshape(ckpt.tensors[n].shape)
        tensors[n] = ckpt.tensors[n] * keep
        masks[n] = keep
    count = sum(int(selected[n].sum()) for n in names)
    gone = sum(removed[n].numel() for n in names)
    detail = {
        "method": "unstructured",
        "selected_weights": count,
        "removed_weights": gone,
        "embedding_included": "embedding.weight" in names,
        "tensors": {n: {"selected": int(selected[n].sum()), "removed": int(removed[n].numel())} for n in names},
    }
    return ckpt.derive(tensors=tensors), masks, detail


# ----------------------------------------------------------------------------- structured


def _selected_groups(ckpt: Checkpoint, cfg: PruneConfig):
    kinds = {
        "all": ("backbone", "hidden"),
        "backbone": ("backbone",),
        "heads": ("hidden",),
        "embedding": ("embedding",),
    }[cfg.scope]
    family = get(ckpt.arch["name"])
    assert family.unit_groups is not None  # checked in _validate
    groups = family.unit_groups(ckpt.arch, ckpt.tensors)
    return [g for g in groups if g.kind in kinds and g.size > 1]


def unit_scores(ckpt: Checkpoint, group, criterion: str, generator: torch.Generator) -> torch.Tensor:
    """One score per unit: the l1 or l2 norm of every weight attached to it (wiring masks
    applied), or seeded random numbers."""
    if criterion == "random":
        return torch.rand(group.size, generator=generator)
    total = torch.zeros(group.size, dtype=torch.float64)
    for name, dim, offset, _ in group.slices:
        if not (name.endswith(".weight") or name == "embedding.weight"):
            continue  # biases and masks carry no weight of their own
        w = ckpt.tensors[name].detach().double()
        wiring = wiring_mask(ckpt.tensors, name)
        if wiring is not None:
            w = w * wiring.double()
        part = w.narrow(dim, offset, group.size).movedim(dim, 0).reshape(group.size, -1)
        total += part.abs().sum(1) if criterion == "l1" else part.pow(2).sum(1)
    return total if criterion == "l1" else total.sqrt()


def structured(ckpt: Checkpoint, cfg: PruneConfig) -> tuple[Checkpoint, dict, dict[str, Any]]:
    """(smaller checkpoint, {} (no masks: the units are gone), what was done)."""
    groups = _selected_groups(ckpt, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    scores = {g.name: unit_scores(ckpt, g, cfg.criterion, gen) for g in groups}
    drop: dict[str, torch.Tensor] = {}
    if cfg.global_threshold:  # one threshold; each group's best unit is never a candidate
        cand = [
            (float(s), g.name, i)
            for g in groups
            for i, s in enumerate(scores[g.name])
            if i != int(scores[g.name].argmax())
        ]
        total = sum(g.size for g in groups)
        k = min(round(cfg.ratio * total), len(cand))
        cand.sort(key=lambda c: c[0])
        for _, name, i in cand[:k]:
            drop.setdefault(name, []).append(i)
        drop = {n: torch.tensor(sorted(v)) for n, v in drop.items()}
    else:
        for g in groups:
            k = min(round(cfg.ratio * g.size), g.size - 1)
            drop[g.name] = torch.sort(_lowest(scores[g.name], k)).values
    tensors = remove_units(ckpt.tensors, groups, drop)
    sizes = {g.name: g.size - len(drop.get(g.name, [])) for g in groups}
    family = get(ckpt.arch["name"])
    assert family.resize is not None  # a family with unit groups resizes
    arch = family.resize(ckpt.arch, sizes)
    detail = {
        "method": "structured",
        "embedding_included": any(g.kind == "embedding" for g in groups),
        "units": {
            g.name: {"before": g.size, "after": sizes[g.name], "removed": [int(i) for i in drop.get(g.name, [])]}
            for g in groups
        },
        "removed_units": sum(len(v) for v in drop.values()),
        "selected_units": sum(g.size for g in groups),
    }
    return ckpt.derive(tensors=tensors, arch=arch), {}, detail


# ----------------------------------------------------------------------------- fine-tuning, reports


def held_at_zero(ckpt: Checkpoint, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What fine-tuning holds at zero: this pass's removals and every weight already exactly
    zero (an earlier pass's pruning, in any scope), so that none grows back."""
    family = get(ckpt.arch["name"])
    held = dict(masks)
    for name, t in ckpt.tensors.items():
        if t.dim() >= 2 and t.is_floating_point() and name.split(".")[-1] in family.weights and bool((t == 0).any()):
            held[name] = held[name] & (t != 0) if name in held else t != 0
    return held


def _finetune(ckpt: Checkpoint, cfg: PruneConfig, masks: dict[str, torch.Tensor], data_dir, say, progress):
    dataset = task_dataset(ckpt, data_dir, "fine-tuning after pruning")
    say(
        f"fine-tuning {cfg.finetune} epoch(s) at lr {cfg.lr}"
        + (" with the pruned weights held at zero" if masks else "")
    )
    out, result = finetune_checkpoint(
        ckpt, dataset, cfg, constraints=[MaskConstraint(masks)] if masks else [], progress=progress
    )
    say(f"fine-tuning kept epoch {result['kept_epoch']} (0: the pruned starting point) by validation")
    return out, result


def store_sparse(ckpt: Checkpoint, names) -> Checkpoint:
    """The named tensors that have zeros stored through the sparse encoding (exact)."""
    return ckpt.encode(
        {
            n: sparse_spec(ckpt.tensors[n].shape)
            for n in names
            if n in ckpt.tensors and bool((ckpt.tensors[n] == 0).any())
        }
    )


def _summary(detail: dict[str, Any]) -> str:
    if detail["method"] == "structured":
        sizes = ", ".join(f"{n} {u['before']} -> {u['after']}" for n, u in detail["units"].items())
        return f"removed {detail['removed_units']} of {detail['selected_units']} units ({sizes})"
    return f"removed {detail['removed_weights']:,} of {detail['selected_weights']:,} selected weights"


# ----------------------------------------------------------------------------- how reports show it


def label(c: dict) -> str:
    kind = "structured" if c.get("structured") else ("global" if c.get("global_threshold") else "local")
    scope = f" {c['scope']}" if c.get("scope") not in (None, "all") else ""
    ft = f" +ft{c['finetune']}" if c.get("finetune") else ""
    return f"prune {c.get('ratio')} {kind}{scope}{ft}"


def describe(compression: dict) -> dict[str, str]:
    p = compression["pruning"]
    how = (
        f"{'structured' if p['structured'] else 'unstructured'} {'global' if p['global'] else 'local'} "
        f"{p['ratio']:.0%} of {p['scope']}" + (" (embedding included)" if p.get("embedding_included") else "")
    )
    if p["structured"]:
        how += ", units " + ", ".join(f"{g} {u['before']}->{u['after']}" for g, u in p["units"].items())
    ft = p.get("finetune_result")
    if ft:
        how += f", fine-tuned {ft['epochs']} epoch(s) (kept {ft['kept_epoch']})"
    return {"pruning": f"pruned {how}, weight sparsity {p['sparsity']['overall']:.1%}, {p['storage']} storage"}


def result_line(out: Checkpoint) -> str:
    return f"weight sparsity {out.record['compression']['pruning']['sparsity']['overall']:.1%} overall"
