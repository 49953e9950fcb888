"""The C engine's writer: named `static const` arrays (their bytes are the flash size), each
weight product dense or sparse (`c_products`), and the block of C a cell adds to the step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cfctool.engines.c_products import (
    TILE,
    Product,
    SparseLayout,
    choose_form,
    index_type,
    sparse_function,
    tiled,
    vnni_blocks,
)
from cfctool.errors import CheckpointError
from cfctool.escape import c_comment


def floats(values: torch.Tensor) -> str:
    """An array's body: 8 float literals a line."""
    flat = values.detach().to(torch.float32).reshape(-1).tolist()
    lines = []
    for start in range(0, len(flat), 8):
        lines.append("    " + ", ".join(literal(v) for v in flat[start : start + 8]) + ",")
    return "\n".join(lines)


def integers(values: torch.Tensor, per_line: int) -> str:
    """An array's body: `per_line` integers a line."""
    flat = values.detach().to(torch.int64).reshape(-1).tolist()
    return "\n".join(
        "    " + ", ".join(str(v) for v in flat[i : i + per_line]) + "," for i in range(0, len(flat), per_line)
    )


def literal(v: float) -> str:
    """A float32 constant in C: 9 significant digits, which float32 reads back exactly."""
    v = float(v)
    if not math.isfinite(v):  # weights are checked before generation; a scale from the record may not be
        raise CheckpointError(
            f"a value to emit in C is not finite ({v}): the checkpoint is damaged; use an intact copy"
        )
    text = f"{v:.9g}"
    if "e" not in text and "." not in text and "n" not in text:
        text += ".0"
    return text + "f"


class Writer:
    """Collects the weight arrays (their bytes are the flash size), the products' own
    functions and the choice made for each product."""

    def __init__(self, name: str, align: int = 1, sparse: str = "auto"):
        self.name = name
        self.align = align  # integer rows padded to a multiple of this many bytes
        self.sparse = sparse  # c_products.SPARSE_CHOICES
        self.arrays: list[str] = []
        self.functions: list[str] = []
        self.products: list[Product] = []
        self.flash = 0
        self.vnni = False  # an integer product also stored in AVX-512 VNNI blocks

    def _emit(
        self,
        label: str,
        values: torch.Tensor,
        comment: str,
        ctype: str,
        body: str,
        size: int,
        shape: tuple[int, ...] | None = None,
    ) -> str:
        """One named `static const` array: its declaration, and its bytes counted as flash."""
        ident = f"{self.name}_{label}"
        dims = " x ".join(str(s) for s in (shape or values.shape))
        self.arrays.append(
            f"/* {comment} ({dims}) */\nstatic const {ctype} {ident}[{values.numel()}] = {{\n{body}\n}};\n"
        )
        self.flash += size * values.numel()
        return ident

    def array(self, label: str, values: torch.Tensor, comment: str) -> str:
        return self._emit(label, values, comment, "float", floats(values), 4)

    def int32(self, label: str, values: torch.Tensor, comment: str) -> str:
        return self._emit(label, values, comment, "int32_t", integers(values, 12), 4)

    def indices(self, label: str, values: torch.Tensor, comment: str, limit: int) -> str:
        """Indices below `limit`, in the narrowest unsigned type that holds them."""
        ctype, size = index_type(limit)
        return self._emit(label, values, comment, ctype, integers(values, 16), size)

    def codes(self, label: str, values: torch.Tensor, comment: str) -> str:
        """Integer codes as a flat int8 array (no row padding)."""
        return self._emit(label, values, comment, "int8_t", integers(values, 16), 1)

    def int8(self, label: str, values: torch.Tensor, comment: str) -> str:
        """An (out x in) integer matrix, each row zero-padded to a multiple of `align` bytes."""
        pad = padded(values.shape[1], self.align) - values.shape[1]
        if pad:
            values = torch.nn.functional.pad(values, (0, pad))
            comment += f", rows zero-padded to {values.shape[1]}"
        return self._emit(label, values, comment, "int8_t", integers(values, 16), 1)

    def matvec(self, label: str, w_t: torch.Tensor, comment: str, x: str, out: str) -> str:
        """`out += W x` for an (in x out) float matrix, dense or sparse (`c_products`): the C
        statement; the weights and any function of its own are kept."""
        n, m = w_t.shape
        before = self.flash
        form = choose_form(w_t.t(), False, self.sparse)
        if form == "dense":
            ident = self._emit(
                label, w_t, comment + f", in blocks of {TILE} outputs", "float", floats(tiled(w_t)), 4, shape=(n, m)
            )
            call = f"{self.name}_matvec({x}, {n}, {ident}, {m}, {out});"
        else:
            call = f"{self._sparse(label, w_t.t(), comment, False)}({x}, {out});"
        self.products.append(Product(label, m, n, int(torch.count_nonzero(w_t)), False, form, self.flash - before))
        return call

    def dot_u8(self, label: str, q: torch.Tensor, comment: str, x: str, acc: str) -> str:
        """`acc = Q x` (int32 sums) for an (out x in) matrix of stored integers, dense (padded
        rows) or sparse: the C statement."""
        m, n = q.shape
        before = self.flash
        form = choose_form(q, True, self.sparse)
        if form == "dense":
            ident = self.int8(label, q, comment) if self.align % 4 else self._int8_both(label, q, comment)
            call = f"{self.name}_dot_u8({x}, {padded(n, self.align)}, {ident}, {m}, {acc});"
        else:
            call = f"{self._sparse(label, q, comment, True)}({x}, {acc}, {m});"
        self.products.append(Product(label, m, n, int(torch.count_nonzero(q)), True, form, self.flash - before))
        return call

    def _int8_both(self, label: str, q: torch.Tensor, comment: str) -> str:
        """An integer product's matrix in the two orders the two dot products read: padded rows
        (portable), and for AVX-512 VNNI blocks of 16 outputs x 4 inputs, one vpdpbusd each
        (`c_products.vnni_blocks`); the compiler keeps the one its target uses. The flash
        counted is the rows' (the blocks add at most 15 zero rows a product)."""
        before = len(self.arrays)
        ident = self.int8(label, q, comment)
        rows = self.arrays.pop(before)
        blocks = vnni_blocks(torch.nn.functional.pad(q, (0, padded(q.shape[1], self.align) - q.shape[1])))
        vnni = (
            f"/* {comment}, in blocks of 16 outputs x 4 inputs ({blocks.numel()} bytes) */\n"
            f"static const int8_t {ident}[{blocks.numel()}] = {{\n{integers(blocks, 16)}\n}};\n"
        )
        self.arrays.append(f"#if {self.name.upper()}_VNNI\n{vnni}#else\n{rows}#endif\n")
        self.vnni = True
        return ident

    def _sparse(self, label: str, weight: torch.Tensor, comment: str, integer: bool) -> str:
        """A sparse product's arrays (non-zeros, their columns, each summed row's output) and
        its function; its name."""
        layout = SparseLayout.of(weight)
        ident = f"{self.name}_{label}"
        if layout.values.numel():
            words = f"{comment}: the {layout.values.numel()} non-zeros, rows grouped by their count"
            (self.codes if integer else self.array)(f"{label}_v", layout.values, words)
            self.indices(f"{label}_c", layout.columns, "their columns", weight.shape[1])
            self.indices(f"{label}_r", layout.rows, "the output of each summed row", weight.shape[0])
        fname = f"{ident}_product"
        self.functions.append(
            f"/* {c_comment(comment, 200)}: sparse */\n" + sparse_function(fname, layout, ident, integer)
        )
        return fname


def padded(n: int, align: int) -> int:
    return -(-n // align) * align


@dataclass
class Cell:
    stages: list[str]  # the cell's functions
    step: str  # its block in NAME_step
    scratch: int  # bytes of its stack arrays
