"""The C engine's shared stages: how a token enters (a folded table row, the embedding's row, or
its non-zeros picking input columns), the activation, the gate update, and the first call of a
cell's block in NAME_step."""

from __future__ import annotations

import torch

from cfctool.checkpoint import Checkpoint
from cfctool.engines.c_products import Product, choose_form, row_starts
from cfctool.engines.c_writer import Writer, padded

# the backbone activations as C expressions of `v`; torch's definitions (nn.SiLU, nn.GELU's exact erf form)
ACTIVATIONS = {
    "ReLU": "v > 0.0f ? v : 0.0f",
    "SiLU": "v / (1.0f + expf(v < -88.0f ? 88.0f : -v))",  # expf kept finite (see c_source's sigmoids)
    "Tanh": "tanhf(v)",
    "GELU": "0.5f * v * (1.0f + erff(v * 0.70710678f))",
    "LeCunTanh": "1.7159f * tanhf(0.666f * v)",
}


def table_input(w: Writer, name: str, table, width: int, comment: str) -> str:
    """c0_input of a token model: the token's row of the folded table."""
    ident = w.array("c0_table", table, comment)
    return (
        f"static void {name}_c0_input(int32_t token, float *pre)\n{{\n"
        f"    const float *row = {ident} + (int32_t)token * {width};\n"
        f"    int j;\n    for (j = 0; j < {width}; ++j) pre[j] = row[j];\n}}\n"
    )


def activation(name: str, k: int, act) -> str:
    return f"static float {name}_c{k}_act(float v)\n{{\n    return {ACTIVATIONS[type(act).__name__]};\n}}\n"


def update(name: str, k: int, h: int, gate_folded: bool) -> str:
    gate = "s[2 * H + j]" if gate_folded else "s[2 * H + j] * dt + s[3 * H + j]"
    return (
        f"/* cell {k}: y' = lerp(sigmoid(2c ff1), sigmoid(2c ff2), gate) */\n"
        f"static void {name}_c{k}_update(float *s, float dt, float *y)\n{{\n"
        f"    enum {{ H = {h} }};\n    int j;\n"
        + (
            "    (void)dt; /* the gate is folded for dt = 1 */\n"
            if gate_folded
            else f"    for (j = 0; j < H; ++j) s[2 * H + j] = {gate};\n"
        )
        + f"    {name}_sigmoids(s, 3 * H);\n"
        f"    for (j = 0; j < H; ++j) {{ /* torch.lerp's two forms, each exact at its end */\n"
        f"        const float a = s[j], b = s[H + j], g = s[2 * H + j];\n"
        f"        y[j] = g < 0.5f ? a + g * (b - a) : b - (b - a) * (1.0f - g);\n    }}\n}}\n"
    )


def first_call(name: str, k: int, token_input: bool, table) -> str:
    """What cell k's block in NAME_step calls first: the input product from the token (a table
    row, or the embedding row through c0_token), the float inputs, or the cell below's y."""
    if k:
        return f"{name}_c{k}_input(state->y{k - 1}, pre)"
    return (
        f"{name}_c0_{'token' if token_input and table is None else 'input'}({'token' if token_input else 'input'}, pre)"
    )


def sparse_rows(weight: torch.Tensor, sparse: str) -> bool:
    """Whether an embedding is kept as its non-zeros (offsets, columns, values): at most half
    of it non-zero, where that is smaller than the dense rows."""
    return sparse == "always" or (sparse == "auto" and int(torch.count_nonzero(weight)) * 2 <= weight.numel())


def embedding_input(
    w: Writer, name: str, ckpt: Checkpoint, weight: torch.Tensor, direct=None, post: list[str] | None = None
) -> tuple[str, int]:
    """c0_token for an unfolded token table: the token's embedding row (its stored int8 codes
    times the row's scale where the checkpoint holds it so, else float32) into c0_input; with
    `direct` (cell 0 over a sparse embedding, `sparse_rows`), only the row's non-zeros, each
    adding its column of the input product, and no c0_input (`post`: the integer step's lines
    from u to pre)."""
    from cfctool.models.quantized import int_weight

    dim = weight.shape[1]
    stored = int_weight(ckpt, "embedding.weight")  # the stored codes, used when they decode to the weights
    if stored is not None and not torch.equal(stored[0].float() * stored[1].unsqueeze(1), weight):
        stored = None
    if direct is not None:
        offsets, columns, nonzero = row_starts(weight)
        off = w.int32("embedding_off", offsets, "where each token's non-zeros start (vocab + 1)")
        cols = w.indices("embedding_c", columns, "their columns", dim)
        if stored is not None:
            vals = w.codes("embedding_v", stored[0][nonzero], "the embedding's non-zero int8 codes, row by row")
            scales = w.array("embedding_s", stored[1], "the embedding's row scales")
            value = f"(float){vals}[k] * {scales}[token]"
        else:
            vals = w.array("embedding_v", weight[nonzero], "the embedding's non-zeros, row by row")
            value = f"{vals}[k]"
        return token_columns(w, name, direct, off, cols, value, post), 0
    if stored is not None:
        codes = w.int8("embedding_q", stored[0], "the embedding's stored int8 codes (vocab x dim)")
        scales = w.array("embedding_s", stored[1], "the embedding's row scales")
        row = (
            f"    const int8_t *row = {codes} + (int32_t)token * {padded(dim, w.align)};\n    const float scale = {scales}[token];\n"
            f"    for (j = 0; j < {dim}; ++j) e[j] = (float)row[j] * scale;\n"
        )
    else:
        table = w.array("embedding", weight, "the embedding (vocab x dim)")
        row = (
            f"    const float *row = {table} + (int32_t)token * {dim};\n"
            f"    for (j = 0; j < {dim}; ++j) e[j] = row[j];\n"
        )
    return (
        f"/* cell 0's input from a token: its embedding row through the input product */\n"
        f"static void {name}_c0_token(int32_t token, float *pre)\n{{\n    float e[{dim}];\n    int j;\n"
        + row
        + f"    {name}_c0_input(e, pre);\n}}\n"
    ), 4 * dim


def token_columns(w: Writer, name: str, cell, off: str, cols: str, value: str, post: list[str] | None = None) -> str:
    """c0_token over a sparse embedding: b1 + the input product's column of each of the token's
    non-zeros (the column's own non-zeros where the product is sparse), into pre (float C) or
    into u, which `post` turns into pre (the integer step's gate folding and scaling)."""
    w_in_t, width = cell.w_in_t, cell.b1.numel()
    target = "pre" if post is None else "u"
    b1 = w.array("c0_b1", cell.b1, "cell 0: bias of the first product")
    before = w.flash
    form = choose_form(w_in_t.t(), False, w.sparse)
    if form == "sparse":  # by input: each input's non-zero outputs
        starts, outs, nz = row_starts(w_in_t)
        s_id = w.indices("c0_w_in_starts", starts, "cell 0: where each input's non-zeros start", int(starts[-1]) + 1)
        o_id = w.indices("c0_w_in_outs", outs, "their outputs", width)
        v_id = w.array("c0_w_in_v", w_in_t[nz], "cell 0: the input product's non-zeros, input by input")
        add = f"        for (t = {s_id}[d]; t < {s_id}[d + 1]; ++t) {target}[{o_id}[t]] += v * {v_id}[t];\n"
    else:
        rows = w.array("c0_w_in", w_in_t, "cell 0: input half of the first product (in x out)")
        add = f"        for (t = 0; t < {width}; ++t) {target}[t] += v * {rows}[d * {width} + t];\n"
    w.products.append(
        Product("c0_w_in", width, w_in_t.shape[0], int(torch.count_nonzero(w_in_t)), False, form, w.flash - before)
    )
    return (
        f"/* cell 0's input from a token: the bias, then the input product's column of each non-zero of the\n"
        f" * token's embedding row */\n"
        f"static void {name}_c0_token(int32_t token, float *pre)\n{{\n"
        + ("" if post is None else f"    float u[{width}];\n")
        + "    int32_t j, k, t;\n"
        f"    for (j = 0; j < {width}; ++j) {target}[j] = {b1}[j];\n"
        f"    for (k = {off}[token]; k < {off}[token + 1]; ++k) {{\n        const float v = {value};\n"
        f"        const int32_t d = {cols}[k];\n"
        + add
        + "    }\n"
        + "".join(line + "\n" for line in post or [])
        + "}\n"
    )
