"""The folded-int8 engine's step of one cell as C: the same operations in the same order as
`models.quantized._QCell.step` (the oracle the tests hold it to): int32 sums of the stored
integers, `bias + acc * scale`, clamps and truncations to int8, round half to even (rintf)
where it rounds.

One `Int8Cell` describes the cell (its quantized weights, widths, scheme); each stage is one
emitter: the input (a token's table row or float inputs), the first product, the integer
backbone with its requantisations, the unfused heads' rounding, and the cell's block in
NAME_step. Emitters add their arrays to the writer in the order the step reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cfctool.engines.c_stages import activation, first_call, table_input, update
from cfctool.engines.c_writer import Cell, Writer, literal, padded


@dataclass(frozen=True)
class Int8Cell:
    """One cell of the folded-int8 engine, as the C stages need it."""

    w: Writer
    name: str
    k: int
    folded: Any  # models.quantized.QuantFolded
    token_input: bool
    table: torch.Tensor | None  # the folded token table (cell 0 of a token model), else None

    @property
    def qc(self):
        return self.folded.qcells[self.k]

    @property
    def cell(self):
        return self.folded.cells[self.k]

    @property
    def fn(self) -> str:  # the cell's function prefix
        return f"{self.name}_c{self.k}"

    @property
    def first_width(self) -> int:
        return int(self.qc.state_q.shape[1])

    @property
    def head_rows(self) -> int:
        return (3 if self.qc.gate_folded else 4) * self.qc.h

    @property
    def signed(self) -> bool:
        """Backbone codes are signed (-127..127, stored + 128 for the byte dot products) unless a
        ReLU made them 0..127."""
        return not self.qc.relu

    def pad(self, n: int) -> int:
        """The byte vectors as long as the padded rows."""
        return padded(n, self.w.align)

    def byte_vector(self, var: str, n: int) -> str:
        return f"uint8_t {var}[{self.pad(n)}]" + (" = {0}" if self.pad(n) > n else "")


def int8_cell(w: Writer, name: str, k: int, folded, token_input: bool, table, direct: bool = False) -> Cell:
    """The cell's functions, its block in NAME_step and its stack bytes (`direct`: cell 0's
    token enters by its non-zeros' input columns, `c_stages.token_columns`, not c0_input)."""
    c = Int8Cell(w, name, k, folded, token_input, table)
    stages, base = ([], "") if k == 0 and direct else _input_stage(c)
    stages.append(_first_stage(c, base))
    qc = c.qc
    scratch = 4 * c.first_width * 2 + c.head_rows * 4 + c.pad(qc.h) + (c.pad(folded.cells[k - 1].h) if k else 0)
    if qc.heads is not None:
        if not qc.fast:
            stages.append(activation(name, k, c.cell.act))
        text, extra = _backbone_stage(c)
        stages.append(text)
        scratch += extra
    if qc.linear_points:
        stages.append(_round_heads_stage(c))
    stages.append(update(name, k, qc.h, qc.gate_folded))
    return Cell(stages, _step_block(c), scratch)


def _input_stage(c: Int8Cell) -> tuple[list[str], str]:
    """Cell 0's input (the token's folded row, or u = x W_in + b1 with the gate folded and, for
    the fast scheme, / s_z + 0.5); for a cell above, its first product's bias array."""
    w, qc, cell = c.w, c.qc, c.cell
    if c.k:
        return [], w.array(f"c{c.k}_b1", qc.b1, f"cell {c.k}: bias of the first product")
    if c.table is not None:
        return [
            table_input(
                w,
                c.name,
                c.table,
                c.first_width,
                "token -> the first product's input part "
                "and bias (the embedding folded in"
                + (", divided by the first activation scale, + 0.5" if qc.fast else "")
                + ")",
            )
        ], ""
    wc = cell.w_in_t.shape[1]
    b1 = w.array("c0_b1", cell.b1, "cell 0: bias of the first product")
    lines = [
        f"    float u[{wc}];\n    int j;",
        f"    for (j = 0; j < {wc}; ++j) u[j] = 0.0f;",
        "    "
        + w.matvec(
            "c0_w_in", cell.w_in_t, "cell 0: input half of the first product, transposed (in x out)", "input", "u"
        ),
        f"    for (j = 0; j < {wc}; ++j) u[j] = u[j] + {b1}[j];",
    ]
    lines += input_post(c.folded)
    return [f"static void {c.name}_c0_input(const float *input, float *pre)\n{{\n" + "\n".join(lines) + "\n}\n"], ""


def input_post(folded) -> list[str]:
    """Cell 0's input u (= x W_in + b1) to pre: the gate folded for dt = 1 where it is, and for
    the fast scheme divided by the first activation scale, + 0.5."""
    qc = folded.qcells[0]
    h, width = qc.h, int(qc.state_q.shape[1])
    lines = [
        f"    for (j = 0; j < {2 * h}; ++j) pre[j] = u[j];\n"
        f"    for (j = 0; j < {h}; ++j) pre[{2 * h} + j] = {literal(folded.dt_value)} * u[{2 * h} + j] "
        f"+ u[{3 * h} + j];"
        if qc.folds_input
        else f"    for (j = 0; j < {width}; ++j) pre[j] = u[j];"
    ]
    if qc.fast:
        lines.append(f"    for (j = 0; j < {width}; ++j) pre[j] = pre[j] / {literal(qc.in_scale)} + 0.5f;")
    return lines


def _first_stage(c: Int8Cell, base: str) -> str:
    """The first product on the integer state (and the cell below's): pre = base + acc * s (+ acc2 * s2)."""
    w, qc, k, width = c.w, c.qc, c.k, c.first_width
    state_dot = w.dot_u8(
        f"c{k}_state_q",
        qc.state_q.t(),
        f"cell {k}: state half of the first product (stored integers, out x state)",
        "yq",
        "acc",
    )
    state_s = w.array(f"c{k}_state_s", qc.state_s, f"cell {k}: its column scales (y on the 1/127 grid)")
    lines = [f"    int32_t acc[{width}];\n    int j;", f"    {state_dot}"]
    if k == 0:
        lines.append(f"    for (j = 0; j < {width}; ++j) pre[j] = pre[j] + (float)acc[j] * {state_s}[j];")
    else:
        in_dot = w.dot_u8(
            f"c{k}_in_q", qc.in_q.t(), f"cell {k}: input half (the cell below's y; out x in)", "below", "acc"
        )
        in_s = w.array(f"c{k}_in_s", qc.in_s, f"cell {k}: its column scales")
        lines.append(
            f"    for (j = 0; j < {width}; ++j) pre[j] = {base}[j] + (float)acc[j] * {state_s}[j];\n"
            f"    {in_dot}\n"
            f"    for (j = 0; j < {width}; ++j) pre[j] = pre[j] + (float)acc[j] * {in_s}[j];"
        )
    args = "const uint8_t *yq" + (", const uint8_t *below" if k else "")
    return (
        f"/* cell {k}: the first product on the integer state{' and the cell below' if k else ''} */\n"
        f"static void {c.fn}_first({args}, float *pre)\n{{\n" + "\n".join(lines) + "\n}\n"
    )


class _Requantize:
    """How the backbone's float outputs become the next product's byte codes, per scheme:
    fast (a clamp of a pre-scaled value), static (round at a calibrated scale, optionally a
    round trip through the unfused Linear output first), dynamic (one scale per step from max |z|)."""

    def __init__(self, c: Int8Cell):
        self.c, self.qc, self.clamp = c, c.qc, f"{c.name}_clamp"
        self.lo = "0.0f" if self.qc.relu else "-127.0f"

    def code(self, expr: str) -> str:
        """A clamped integer value as the stored byte."""
        return f"(uint8_t)(128.0f + {expr})" if self.c.signed else f"(uint8_t){expr}"

    def round_trip(self, var: str, n: int, point) -> str:
        inv, sc = point
        return (
            f"    for (j = 0; j < {n}; ++j) {var}[j] = {self.clamp}(rintf({var}[j] * {literal(inv)}), -127.0f, "
            f"127.0f) * {literal(sc)};"
        )

    def static(self, var: str, n: int, inv: float) -> str:
        return (
            f"    for (j = 0; j < {n}; ++j) zq[j] = "
            + self.code(f"{self.clamp}(rintf({self.c.fn}_act({var}[j]) * {literal(inv)}), {self.lo}, 127.0f)")
            + ";"
        )

    def dynamic(self, var: str, n: int) -> str:
        relu = self.qc.relu
        return (
            f"    sz = 0.0f;\n    for (j = 0; j < {n}; ++j) {{ z[j] = {self.c.fn}_act({var}[j]); "
            + ("if (z[j] > sz) sz = z[j]; }" if relu else "if (fabsf(z[j]) > sz) sz = fabsf(z[j]); }")
            + "\n    sz = (sz < 1e-12f ? 1e-12f : sz) / 127.0f;\n"
            + (
                f"    for (j = 0; j < {n}; ++j) zq[j] = (uint8_t){self.clamp}(z[j] / sz + 0.5f, 0.0f, 127.0f);"
                if relu
                else f"    for (j = 0; j < {n}; ++j) zq[j] = "
                + self.code(f"{self.clamp}(rintf(z[j] / sz), -127.0f, 127.0f)")
                + ";"
            )
        )

    def first(self, width: int) -> list[str]:
        """The first product's outputs (pre) as codes."""
        qc, points = self.qc, self.qc.linear_points
        if qc.fast:
            return [f"    for (j = 0; j < {width}; ++j) zq[j] = (uint8_t){self.clamp}(pre[j], 0.0f, 127.0f);"]
        if qc.static:
            return ([self.round_trip("pre", width, points[0][0])] if points else []) + [
                self.static("pre", width, qc.inv_scales[0])
            ]
        return [self.dynamic("pre", width)]

    def layer(self, i: int, out: int, lb: str, ls: str) -> list[str]:
        """Backbone layer i + 1's sums (acc) rescaled, activated and coded."""
        qc, points = self.qc, self.qc.linear_points
        if qc.fast:
            return [
                f"    for (j = 0; j < {out}; ++j) zq[j] = (uint8_t){self.clamp}({lb}[j] + (float)acc[j] * "
                f"{ls}[j], 0.0f, 127.0f);"
            ]
        if qc.static:
            return (
                [f"    for (j = 0; j < {out}; ++j) z[j] = {lb}[j] + (float)acc[j] * {ls}[j];"]
                + ([self.round_trip("z", out, points[0][i + 1])] if points else [])
                + [self.static("z", out, qc.inv_scales[i + 1])]
            )
        return [
            f"    for (j = 0; j < {out}; ++j) z[j] = {lb}[j] + (float)acc[j] * ({ls}[j] * sz);",
            self.dynamic("z", out),
        ]


def _dot(c: Int8Cell, label: str, q: torch.Tensor, comment: str, n_out: int) -> str:
    """A backbone or head product on the codes zq; signed codes take 128 x each row's sum off."""
    call = "    " + c.w.dot_u8(label, q, comment, "zq", "acc")
    if not c.signed:
        return call
    sums = c.w.int32(
        label + "_rowsum", q.to(torch.int32).sum(1), "each row's sum of integers (the + 128 offset of the signed codes)"
    )
    return call + f"\n    for (j = 0; j < {n_out}; ++j) acc[j] -= 128 * {sums}[j];"


def _backbone_stage(c: Int8Cell) -> tuple[str, int]:
    """The integer backbone, then the heads' pre-activations: the function and its stack bytes."""
    w, qc, k = c.w, c.qc, c.k
    widest = max([c.first_width] + [b.numel() for _, _, b, _ in qc.layers])
    codes = _Requantize(c)
    lines = [
        f"    {c.byte_vector('zq', widest)};\n    int32_t acc[{max(widest, c.head_rows)}];"
        + ("" if qc.fast or not qc.layers else f"\n    float z[{widest}];")
        + ("" if qc.static else f"\n    float z[{widest}];\n    float sz;" if not qc.layers else "\n    float sz;")
        + "\n    int j;"
    ]
    lines += codes.first(c.first_width)
    for i, (q_t, s, b, _) in enumerate(qc.layers):
        out = b.numel()
        ls = w.array(
            f"c{k}_layer{i + 1}_s",
            s,
            f"cell {k}: backbone layer {i + 1} column scales"
            + (" x s_in / s_out" if qc.fast else " x s_in" if qc.static else ""),
        )
        lb = w.array(
            f"c{k}_layer{i + 1}_b", b, f"cell {k}: backbone layer {i + 1} bias" + (" / s_out + 0.5" if qc.fast else "")
        )
        lines.append(
            _dot(
                c, f"c{k}_layer{i + 1}_q", q_t.t(), f"cell {k}: backbone layer {i + 1} (stored integers, out x in)", out
            )
        )
        lines += codes.layer(i, out, lb, ls)
    q_t, s_h, b_h = qc.heads
    hs = w.array(
        f"c{k}_heads_s", s_h, f"cell {k}: heads column scales" + (" x the last activation scale" if qc.static else "")
    )
    hb = w.array(f"c{k}_heads_b", b_h, f"cell {k}: heads bias")
    scale = f"({hs}[j] * sz)" if not qc.static else f"{hs}[j]"
    lines.append(
        _dot(
            c,
            f"c{k}_heads_q",
            q_t.t(),
            f"cell {k}: heads (stored integers, out x in; 2c on "
            "ff1/ff2 in the scales" + ("; the gate requantized per row for dt = 1" if qc.gate_folded else "") + ")",
            c.head_rows,
        )
        + "\n"
        f"    for (j = 0; j < {c.head_rows}; ++j) heads[j] = {hb}[j] + (float)acc[j] * {scale};"
    )
    text = (
        f"/* cell {k}: the integer backbone, then the heads' pre-activations */\n"
        f"static void {c.fn}_backbone(float *pre, float *heads)\n{{\n" + "\n".join(lines) + "\n}\n"
    )
    return text, c.pad(widest) + 8 * widest + 4 * max(widest, c.head_rows)


def _round_heads_stage(c: Int8Cell) -> str:
    """Unfused: each head output rounded to int8 at its own scale."""
    points, k = c.qc.linear_points, c.k
    inv = c.w.array(f"c{k}_heads_inv", points[1][0], f"cell {k}: 1 / the heads' output scales (unfused)")
    sc = c.w.array(f"c{k}_heads_scale", points[1][1], f"cell {k}: the heads' output scales (unfused)")
    return (
        f"/* cell {k}: each head output rounded to int8 at its scale (no operator fusing) */\n"
        f"static void {c.fn}_round_heads(float *s)\n{{\n    int j;\n"
        f"    for (j = 0; j < {c.head_rows}; ++j) s[j] = {c.name}_clamp(rintf(s[j] * {inv}[j]), -127.0f, "
        f"127.0f) * {sc}[j];\n}}\n"
    )


def _step_block(c: Int8Cell) -> str:
    """The cell's block in NAME_step: quantize y (and the cell below's), the first product, the
    backbone and heads, the unfused rounding, the gate update."""
    qc, k, name = c.qc, c.k, c.name
    below = c.folded.cells[k - 1].h if k else 0
    target = "heads" if qc.heads is not None else "pre"
    return (
        f"    {{ /* cell {k} */\n        float pre[{c.first_width}];\n"
        + (f"        float heads[{c.head_rows}];\n" if qc.heads is not None else "")
        + f"        {c.byte_vector('yq', qc.h)};\n"
        + (f"        {c.byte_vector('below', below)};\n" if k else "")
        + f"        {name}_quantize_y(state->y{k}, {qc.h}, yq);\n"
        + (
            f"        {first_call(name, k, c.token_input, c.table)};\n"
            if k == 0
            else f"        {name}_quantize_y(state->y{k - 1}, {below}, below);\n"
        )
        + f"        {c.fn}_first(yq{', below' if k else ''}, pre);\n"
        + (f"        {c.fn}_backbone(pre, heads);\n" if qc.heads is not None else "")
        + (f"        {c.fn}_round_heads({target});\n" if qc.linear_points else "")
        + f"        {c.fn}_update({target}, dt, state->y{k});\n    }}"
    )
