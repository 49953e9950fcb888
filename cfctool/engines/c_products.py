"""The C engine's weight products, one typed description each and one emitter per form.

A product is `out (+)= W x` for one weight matrix of the step. How it runs is chosen per
product from its own weights: dense (float32 stored in blocks of TILE outputs, so a block's
sums stay in vector registers while the rows stream past; integers as padded rows for byte
dot products) or sparse (only the non-zeros, grouped by how many a row has, so each group
is a loop of fixed length with nothing to mispredict). Sparse is chosen where it measured
faster on the host (`SPARSE_BELOW`, from benchmarks/c_products.py) and always where the
user asks for it (`sparse="always"`); the choice is recorded in the header comment and in
the export's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from cfctool.configs.base import literal_choices
from cfctool.configs.commands import ExportConfig

# float32 outputs per dense block: 4 AVX-512 (8 AVX2) registers of sums; the block's rows are
# contiguous in flash, so the product reads its weights once, in order
TILE = 64
# the densities under which a sparse product measured faster than the dense one on the IMDB
# CfC step's shapes (1 thread, AMD EPYC with AVX-512 VNNI; benchmarks/results/c-products.yaml):
# the dense float product is bound by reading its weights (sparse wins up to 10%), the dense
# integer one reads a quarter as much with 64 multiply-adds an instruction (sparse wins below
# about 1.5%; on a target without byte dot products dense int8 is slower and sparse pays sooner)
SPARSE_BELOW = {"float": 0.10, "int8": 0.015}
SPARSE_CHOICES = literal_choices(ExportConfig)["sparse"]  # auto, never, always: export --sparse
Form = Literal["dense", "sparse"]


@dataclass(frozen=True)
class Product:
    """One weight product as the C runs it."""

    label: str  # the arrays' name stem (NAME_label...)
    outputs: int
    inputs: int
    nonzeros: int
    integer: bool  # stored integers (int8/int4 codes) into int32 sums, else float32
    form: Form
    flash_bytes: int  # its arrays

    @property
    def density(self) -> float:
        return self.nonzeros / max(1, self.outputs * self.inputs)

    def describe(self) -> str:
        kind = "int8" if self.integer else "fp32"
        return f"{self.label} {self.outputs}x{self.inputs} {kind} {self.form}" + (
            f" ({self.nonzeros} non-zeros of {self.outputs * self.inputs})" if self.form == "sparse" else ""
        )

    def record(self) -> dict:
        return {
            "product": self.label,
            "shape": [self.outputs, self.inputs],
            "integer": self.integer,
            "form": self.form,
            "nonzeros": self.nonzeros,
            "flash_bytes": self.flash_bytes,
        }


def choose_form(weight: torch.Tensor, integer: bool, sparse: str = "auto") -> Form:
    """dense or sparse for an (out x in) matrix: `sparse` is auto (by SPARSE_BELOW), never or always."""
    if sparse == "never":
        return "dense"
    nonzero = int(torch.count_nonzero(weight))
    if sparse == "always":
        return "sparse"
    return "sparse" if nonzero < SPARSE_BELOW["int8" if integer else "float"] * weight.numel() else "dense"


def tiled(w_t: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """An (in x out) matrix as the dense float product reads it: blocks of `tile` outputs
    (the last one narrower), each block's `in` rows contiguous."""
    n, m = w_t.shape
    return torch.cat([w_t[:, b : b + tile].reshape(-1) for b in range(0, m, tile)]) if m else w_t.reshape(-1)


def vnni_blocks(q: torch.Tensor) -> torch.Tensor:
    """An (out x in) integer matrix, `in` a multiple of 4, in the order AVX-512 VNNI's
    vpdpbusd reads it: blocks of 16 outputs (the last one filled with zero rows), each a run of
    `in / 4` groups of 16 outputs x 4 consecutive inputs."""
    m, n = q.shape
    full = torch.nn.functional.pad(q, (0, 0, 0, -(-m // 16) * 16 - m))
    return full.reshape(-1, 16, n // 4, 4).permute(0, 2, 1, 3).reshape(-1)


@dataclass(frozen=True)
class SparseLayout:
    """The non-zeros of an (out x in) matrix, rows grouped by their count of non-zeros (counts
    ascending, rows ascending within a group, columns ascending within a row)."""

    values: torch.Tensor  # (nnz,) in the order the loops read them
    columns: torch.Tensor  # (nnz,) int64
    rows: torch.Tensor  # (rows with a non-zero,) int64: the output each summed row goes to
    groups: tuple[tuple[int, int], ...]  # (non-zeros per row, rows) in reading order

    @classmethod
    def of(cls, weight: torch.Tensor) -> SparseLayout:
        counts = (weight != 0).sum(1)
        order = sorted((int(c), j) for j, c in enumerate(counts.tolist()) if c)
        values: list[torch.Tensor] = []
        columns: list[torch.Tensor] = []
        groups: list[list[int]] = []
        for count, j in order:
            cols = torch.nonzero(weight[j]).reshape(-1)
            values.append(weight[j, cols])
            columns.append(cols)
            if groups and groups[-1][0] == count:
                groups[-1][1] += 1
            else:
                groups.append([count, 1])
        empty = weight.new_zeros(0)
        return cls(
            torch.cat(values) if values else empty,
            torch.cat(columns) if columns else torch.zeros(0, dtype=torch.int64),
            torch.tensor([j for _, j in order], dtype=torch.int64),
            tuple((c, r) for c, r in groups),
        )


def row_starts(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compressed rows of a matrix: where each row's non-zeros start (rows + 1 entries), their
    columns, and the non-zero mask (`weight[mask]` are the values in that order)."""
    mask = weight != 0
    return torch.cat([torch.zeros(1, dtype=torch.int64), mask.sum(1).cumsum(0)]), torch.nonzero(mask)[:, 1], mask


def index_type(limit: int) -> tuple[str, int]:
    """The narrowest unsigned C type (and its bytes) for indices below `limit`."""
    return ("uint8_t", 1) if limit <= 256 else ("uint16_t", 2) if limit <= 65536 else ("int32_t", 4)


def sparse_function(fname: str, layout: SparseLayout, ident: str, integer: bool) -> str:
    """The sparse product's C: one fixed-length loop per group of rows. Float: out[row] += the
    row's sum (out holds the bias or the other half's sums); integer: acc[row] = the int32 sum
    (every acc entry written: rows without non-zeros get 0)."""
    if integer:
        head = (
            f"static void {fname}(const uint8_t *x, int32_t *acc, int m)\n{{\n"
            f"    int r, t, j, k = 0, q = 0;\n    for (j = 0; j < m; ++j) acc[j] = 0;\n"
        )
        body = (
            "int32_t s = 0; for (t = 0; t < {c}; ++t) s += (int32_t){v}[k + t] * (int32_t)x[{col}[k + t]]; "
            "acc[{row}[q++]] = s;"
        )
    else:
        head = f"static void {fname}(const float *x, float *out)\n{{\n    int r, t, k = 0, q = 0;\n"
        body = "float s = 0.0f; for (t = 0; t < {c}; ++t) s += {v}[k + t] * x[{col}[k + t]]; out[{row}[q++]] += s;"
    loops = [
        f"    for (r = 0; r < {rows}; ++r, k += {count}) {{ "
        + body.format(c=count, v=f"{ident}_v", col=f"{ident}_c", row=f"{ident}_r")
        + " }"
        for count, rows in layout.groups
    ]
    if not loops:  # an all-zero matrix: nothing to add
        loops = ["    (void)x; (void)r; (void)t; (void)k; (void)q;"]
    return head + "\n".join(loops) + "\n}\n"
