"""The CfC family (Hasani et al. 2022): one CfC cell with a backbone MLP; `cfc-deep` is the
same family with a 5-layer, 256-wide backbone by default.

The record keeps each backbone layer's width (`backbone_widths`), so a model whose
backbone units were pruned is an ordinary record with other numbers.
"""

from __future__ import annotations

from typing import Any

from cfctool.families.base import EMBEDDING, HIDDEN, Family, UnitGroup, front_end, standard_counts
from cfctool.models import HEADS
from cfctool.settings import Setting

CFC_MODES = ("default", "no_gate", "pure")
ACTIVATIONS = ("relu", "silu", "tanh", "gelu", "lecun_tanh")

MODE = Setting("mode", str, "default", "CfC mode: default, no_gate or pure (the closed form).", CFC_MODES)
HEAD_ACTIVATION = Setting(
    "head_activation",
    str,
    "tanh",
    "Activation of the ff1/ff2 heads: tanh (as ncps) or lecun_tanh, 1.7159 tanh(0.666 x) (as the reference TF code).",
    ("tanh", "lecun_tanh"),
)
MIXED_MEMORY = Setting("mixed_memory", bool, False, "Run an LSTM memory beside the CfC state (mixed memory).")
# what compressions write into a CfC record beyond its settings
RECORD_KEYS = (
    Setting(
        "input_projected", bool, False, "The embedding is folded into the first product (quantize --fold-embedding)."
    ),
    Setting("embedding_folded_from", int, None, "The embedding width before folding.", low=1),
    Setting("head_rank", int, None, "The heads factored to this rank (reduce --method svd).", low=1),
)
SETTINGS = (
    HIDDEN,
    MODE,
    Setting("backbone_units", int, 64, "Width of each backbone layer.", low=1),
    Setting("backbone_layers", int, 1, "Backbone layers (0: the heads read [input; state] directly).", low=0),
    Setting("backbone_widths", list, None, "Per-layer backbone widths, e.g. 64,32 (replaces units x layers).", low=1),
    Setting("backbone_activation", str, "lecun_tanh", "Backbone activation.", ACTIVATIONS),
    Setting("backbone_dropout", float, 0.0, "Dropout after each backbone layer (training only).", low=0, below=1),
    HEAD_ACTIVATION,
    MIXED_MEMORY,
    *EMBEDDING,
)


def record(values: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    widths = values.get("backbone_widths")
    if widths is None:
        widths = [values["backbone_units"]] * values["backbone_layers"]
    return {
        "name": values["name"],
        "hidden": values["hidden"],
        "mode": values["mode"],
        "backbone_widths": [int(w) for w in widths],
        "backbone_activation": values["backbone_activation"],
        "backbone_dropout": values["backbone_dropout"],
        "head_activation": values["head_activation"],
        "mixed_memory": values["mixed_memory"],
        **front_end(values, task),
    }


def head_rank(arch: dict[str, Any]) -> int | None:
    """K of rank-factored heads (`reduce --method svd`), None for full heads."""
    return arch.get("head_rank")


def fold_embedding(ckpt):
    """The same function with the embedding multiplied into the first backbone layer's
    input half: a (vocabulary x units) table instead of (vocabulary x embedding width)
    plus that half, so 3x fewer bytes for IMDB's 192 -> 64. Exact up to float rounding."""
    arch = ckpt.arch
    if ckpt.task["input"]["kind"] != "tokens" or arch.get("input_projected"):
        raise ValueError("only token models whose embedding is not folded yet can fold it")
    if not arch["backbone_widths"] or arch["mixed_memory"]:
        raise ValueError(
            "folding the embedding needs a backbone (its first layer is linear in its input) "
            "and no mixed memory (the LSTM reads the embedding itself)"
        )
    t = dict(ckpt.tensors)
    e, w = t["embedding.weight"], t["rnn.cells.0.backbone.0.weight"]
    n_in = e.shape[1]
    if w.shape[0] >= n_in:
        raise ValueError(
            f"the first backbone layer ({w.shape[0]} units) is not narrower than the embedding "
            f"({n_in} wide): the folded table would be larger, not smaller; quantize without it"
        )
    t["embedding.weight"] = (e.double() @ w[:, :n_in].double().t()).float()
    t["rnn.cells.0.backbone.0.weight"] = w[:, n_in:].contiguous()
    new_arch = {
        **arch,
        "input_projected": True,
        "embedding_dim": arch["backbone_widths"][0],
        "embedding_folded_from": n_in,
    }
    return ckpt.derive(tensors=t, arch=new_arch)


def cell_sizes(arch: dict[str, Any]) -> list[int]:
    """Hidden units per cell: one cell, or the NCP's inter, command and motor cells."""
    return [int(n) for n in arch["ncp_layers"]] if "ncp_layers" in arch else [int(arch["hidden"])]


def unit_groups(arch: dict[str, Any], tensors: dict[str, Any]) -> list[UnitGroup]:
    """Backbone units, hidden units of each cell, and embedding dimensions of a CfC core
    (one cell with a backbone, or wired cells without). Mixed memory is not covered: its
    LSTM reads every unit of every cell."""
    if arch.get("mixed_memory"):
        raise ValueError("structured pruning of a mixed-memory CfC is not supported (its LSTM reads every unit)")
    sizes = cell_sizes(arch)
    pure = arch["mode"] == "pure"
    heads = HEADS[:1] if pure else HEADS
    widths = list(arch.get("backbone_widths") or [])
    groups = []

    def first(k: int) -> list[str]:  # the tensors of cell k's first product on [input; state]
        return [f"rnn.cells.{k}.backbone.0.weight"] if widths else [f"rnn.cells.{k}.{h}.weight" for h in heads]

    def mask(k: int) -> list[str]:  # the cell's wiring mask, if it has one
        name = f"rnn.cells.{k}.sparsity_mask"
        return [name] if name in tensors else []

    n_in = [0] * len(sizes)
    for k in range(len(sizes)):
        n_in[k] = tensors[first(k)[0]].shape[1] - sizes[k]
    for k, h in enumerate(sizes):
        p = f"rnn.cells.{k}"
        for j, w in enumerate(widths):
            consumers = (
                [f"{p}.backbone.{j + 1}.weight"]
                if j + 1 < len(widths)
                else [f"{p}.head_basis.weight"]
                if head_rank(arch)
                else [f"{p}.{x}.weight" for x in heads]
            )
            groups.append(
                UnitGroup(
                    f"cells.{k}.backbone.{j}",
                    "backbone",
                    w,
                    (
                        (f"{p}.backbone.{j}.weight", 0, 0, "own"),
                        (f"{p}.backbone.{j}.bias", 0, 0, "own"),
                        *((c, 1, 0, "next") for c in consumers),
                    ),
                )
            )
        own = [(f"{p}.{x}.{t}", 0, 0, "own") for x in heads for t in ("weight", "bias")]
        if pure:
            own += [(f"{p}.w_tau", 1, 0, "own"), (f"{p}.A", 1, 0, "own")]
        rec = [(name, 1, n_in[k], "recurrent") for name in first(k)]
        own += [(m, 0, 0, "own") for m in mask(k)]
        rec += [(m, 1, tensors[m].shape[1] - h, "recurrent") for m in mask(k)]
        if k + 1 < len(sizes):
            nxt = [(name, 1, 0, "next") for name in first(k + 1) + mask(k + 1)]
        else:
            nxt = [("head.weight", 1, 0, "next")]
        groups.append(UnitGroup(f"cells.{k}.hidden", "hidden", h, tuple(own + rec + nxt)))
    if "embedding.weight" in tensors and not arch.get("input_projected"):
        reads = [(name, 1, 0, "next") for name in first(0) + mask(0)]
        groups.append(
            UnitGroup(
                "embedding",
                "embedding",
                int(tensors["embedding.weight"].shape[1]),
                (("embedding.weight", 1, 0, "own"), *reads),
            )
        )
    return groups


def resize(arch: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """The arch record with new group sizes (see `unit_groups`)."""
    arch = dict(arch)
    cells = cell_sizes(arch)
    widths = list(arch.get("backbone_widths") or [])
    for name, n in sizes.items():
        parts = name.split(".")
        if name == "embedding":
            arch["embedding_dim"] = n
        elif parts[-1] == "hidden":
            cells[int(parts[1])] = n
        else:
            widths[int(parts[-1])] = n
    if "ncp_layers" in arch:
        arch.update(ncp_layers=cells, hidden=sum(cells), motor=cells[-1])
    else:
        arch.update(hidden=cells[0], backbone_widths=widths)
    return arch


def upgrade(arch: dict[str, Any]) -> dict[str, Any]:
    """Format 1 recorded `backbone_units` x `backbone_layers`; records before head
    activations were selectable had tanh heads."""
    if "backbone_widths" in arch and "head_activation" in arch:
        return arch
    arch = {"head_activation": "tanh", **arch}
    if "backbone_widths" not in arch:
        units, layers = arch.pop("backbone_units"), arch.pop("backbone_layers")
        arch["backbone_widths"] = [units] * layers
    return arch


def build(arch: dict[str, Any], features: int):
    from cfctool.models.cfc import CfC, CfCCell

    cell = CfCCell(
        features,
        arch["hidden"],
        arch["mode"],
        arch["backbone_widths"],
        arch["backbone_activation"],
        arch["backbone_dropout"],
        head_activation=arch["head_activation"],
        input_projected=arch.get("input_projected", False),
        head_rank=head_rank(arch),
    )
    return CfC([cell], mixed_memory=arch["mixed_memory"])


def macs_per_step(core) -> int:
    """The defining form's products: backbone layers, the four (or one) heads, the LSTM
    memory. Dense: wiring masks do not skip work."""
    macs = 0
    for cell in core.cells:
        macs += sum(layer.weight.numel() for layer in cell.backbone)
        macs += cell.head_params()[0].numel()
        if cell.head_basis is not None:
            macs += cell.head_basis.weight.numel()
    if core.lstm is not None:
        macs += core.lstm.input_map.weight.numel() + core.lstm.recurrent_map.weight.numel()
    return macs


def counts(model) -> dict[str, int]:
    """Wired heads (NCP) count only the weights their mask keeps."""
    masks = {}
    for k, cell in enumerate(model.rnn.cells):
        if cell.sparsity_mask is not None:
            for head in ("ff1", "ff2"):
                if hasattr(cell, head):
                    masks[f"rnn.cells.{k}.{head}.weight"] = cell.sparsity_mask
    return standard_counts(model, masks)


FAMILY = Family(
    name="cfc",
    summary="CfC with a backbone MLP (64x1, lecun_tanh by default).",
    settings=SETTINGS,
    record=record,
    build=build,
    macs_per_step=macs_per_step,
    counts=counts,
    upgrade=upgrade,
    fold_embedding=fold_embedding,
    unit_groups=unit_groups,
    resize=resize,
    heads=HEADS,
    reduction="cfc",
    record_keys=RECORD_KEYS,
)
DEEP = Family(
    name="cfc-deep",
    summary="CfC with a deep backbone (256x5, dropout 0.1).",
    settings=SETTINGS,
    record=record,
    build=build,
    macs_per_step=macs_per_step,
    counts=counts,
    upgrade=upgrade,
    fold_embedding=fold_embedding,
    unit_groups=unit_groups,
    resize=resize,
    heads=HEADS,
    reduction="cfc",
    record_keys=RECORD_KEYS,
    defaults={"backbone_units": 256, "backbone_layers": 5, "backbone_dropout": 0.1},
)
