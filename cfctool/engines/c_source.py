"""A folded CfC as dependency-free C99: the edge engine's source.

The generated step computes what the folded engine's step computes (`models.inference`),
one stage per function, on one sequence at a time (batch 1), with no heap, no mutable
globals and nothing beyond <math.h> and <stdint.h>. For a model NAME:

- `NAME.h`: sizes as macros (`NAME_FLASH_BYTES`, `NAME_STATE_BYTES`, `NAME_SCRATCH_BYTES`),
  the state struct, `NAME_reset`, `NAME_step`, `NAME_output`, `NAME_run`;
- `NAME.c`: the folded weights as named `static const` arrays and the stages.

The same checkpoint always gives the same bytes (weights printed with 9 significant
digits, which float32 reads back exactly).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from cfctool.checkpoint import Checkpoint, check_finite
from cfctool.engines.c_products import (SPARSE_CHOICES, TILE, Product, SparseLayout, choose_form, index_type,
                                         sparse_function, tiled, vnni_blocks)
from cfctool.data.raw_io import RawIO
from cfctool.errors import CheckpointError, ConfigError
from cfctool.escape import C_NAME_LIMIT, c_comment, c_identifier, is_c_identifier, terminal
from cfctool.models import inference, ode_inference

# the backbone activations as C expressions of `v`; torch's definitions (nn.SiLU, nn.GELU's exact erf form)
# how token ids enter: "folded" = one float row per token of the first product's input half
# (fastest: a lookup), "embedding" = the embedding rows (int8 where stored so, only the
# non-zeros of a pruned one) projected at every step (smallest: for flash-limited parts),
# "auto" = embedding for an embedding at least half zeros (its folded table would be dense)
TOKEN_TABLES = ("auto", "folded", "embedding")
# integer rows (and the byte vectors they multiply) are zero-padded to a multiple of this: a
# dot product of whole vector registers, with no scalar tail and no reads past a row
ROW_ALIGN = 16
_ACTIVATIONS = {
    "ReLU": "v > 0.0f ? v : 0.0f",
    "SiLU": "v / (1.0f + expf(v < -88.0f ? 88.0f : -v))",  # expf kept finite (see _helpers' sigmoids)
    "Tanh": "tanhf(v)",
    "GELU": "0.5f * v * (1.0f + erff(v * 0.70710678f))",
    "LeCunTanh": "1.7159f * tanhf(0.666f * v)",
}


@dataclass(frozen=True)
class CSource:
    """A generated model: the two files and the sizes they declare."""

    name: str
    header: str
    source: str
    flash_bytes: int
    state_bytes: int
    scratch_bytes: int
    token_input: bool
    n_inputs: int  # features per step (1 token id for token tasks)
    n_outputs: int
    per_step: bool
    dt_input: bool  # whether NAME_step reads dt (else the gate is folded for dt = 1)
    products: tuple[Product, ...] = ()  # each weight product and the form it runs in
    token_table: str | None = None  # how token ids enter (folded, embedding), None for float inputs

    def sizes(self) -> dict[str, int]:
        return {"flash_bytes": self.flash_bytes, "state_bytes": self.state_bytes, "scratch_bytes": self.scratch_bytes}


def c_name(text: str) -> str:
    """A C identifier from a file name (see `escape.c_identifier`: the pattern, the length bound)."""
    return c_identifier(text)


def checked_name(text: str) -> str:
    """A name the user gave (`export --name`): used as it is when it is a C identifier cfctool
    emits, refused otherwise with what would be accepted."""
    if not is_c_identifier(text):
        raise ConfigError(f"--name {terminal(text, 60)!r} is not a C identifier of at most {C_NAME_LIMIT} "
                          f"characters (letters, digits, underscores; not starting with a digit or an "
                          f"underscore); for example --name {c_identifier(text)}")
    return text


def model_name(ckpt: Checkpoint) -> str:
    """The C name of a checkpoint's model: its file name, else its architecture (read from stdin)."""
    source = getattr(ckpt, "source", None)
    return c_name(Path(source).stem if source and source != "-" else ckpt.arch["name"])


def _floats(values: torch.Tensor) -> str:
    flat = values.detach().to(torch.float32).reshape(-1).tolist()
    lines = []
    for start in range(0, len(flat), 8):
        lines.append("    " + ", ".join(_literal(v) for v in flat[start:start + 8]) + ",")
    return "\n".join(lines)


def _integers(values: torch.Tensor, per_line: int) -> str:
    flat = values.detach().to(torch.int64).reshape(-1).tolist()
    return "\n".join("    " + ", ".join(str(v) for v in flat[i:i + per_line]) + ","
                     for i in range(0, len(flat), per_line))


def _literal(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):  # weights are checked before generation; a scale from the record may not be
        raise CheckpointError(f"a value to emit in C is not finite ({v}): the checkpoint is damaged; "
                              "use an intact copy")
    text = f"{v:.9g}"
    if "e" not in text and "." not in text and "n" not in text:
        text += ".0"
    return text + "f"


class _Writer:
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

    def _emit(self, label: str, values: torch.Tensor, comment: str, ctype: str, body: str, size: int,
              shape: tuple[int, ...] | None = None) -> str:
        """One named `static const` array: its declaration, and its bytes counted as flash."""
        ident = f"{self.name}_{label}"
        dims = " x ".join(str(s) for s in (shape or values.shape))
        self.arrays.append(f"/* {comment} ({dims}) */\nstatic const {ctype} {ident}[{values.numel()}] = {{\n"
                           f"{body}\n}};\n")
        self.flash += size * values.numel()
        return ident

    def array(self, label: str, values: torch.Tensor, comment: str) -> str:
        return self._emit(label, values, comment, "float", _floats(values), 4)

    def int32(self, label: str, values: torch.Tensor, comment: str) -> str:
        return self._emit(label, values, comment, "int32_t", _integers(values, 12), 4)

    def int8(self, label: str, values: torch.Tensor, comment: str) -> str:
        """An (out x in) integer matrix, each row zero-padded to a multiple of `align` bytes."""
        pad = _padded(values.shape[1], self.align) - values.shape[1]
        if pad:
            values = torch.nn.functional.pad(values, (0, pad))
            comment += f", rows zero-padded to {values.shape[1]}"
        return self._emit(label, values, comment, "int8_t", _integers(values, 16), 1)

    def matvec(self, label: str, w_t: torch.Tensor, comment: str, x: str, out: str) -> str:
        """`out += W x` for an (in x out) float matrix, dense or sparse (`c_products`): the C
        statement; the weights and any function of its own are kept."""
        n, m = w_t.shape
        before = self.flash
        form = choose_form(w_t.t(), False, self.sparse)
        if form == "dense":
            ident = self._emit(label, w_t, comment + f", in blocks of {TILE} outputs", "float",
                               _floats(tiled(w_t)), 4, shape=(n, m))
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
            call = f"{self.name}_dot_u8({x}, {_padded(n, self.align)}, {ident}, {m}, {acc});"
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
        padded = torch.nn.functional.pad(q, (0, _padded(q.shape[1], self.align) - q.shape[1]))
        blocks = vnni_blocks(padded)
        vnni = (f"/* {comment}, in blocks of 16 outputs x 4 inputs ({blocks.numel()} bytes) */\n"
                f"static const int8_t {ident}[{blocks.numel()}] = {{\n{_integers(blocks, 16)}\n}};\n")
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
            if integer:
                self._emit(f"{label}_v", layout.values, words, "int8_t", _integers(layout.values, 16), 1)
            else:
                self._emit(f"{label}_v", layout.values, words, "float", _floats(layout.values), 4)
            ctype, size = index_type(weight.shape[1])
            self._emit(f"{label}_c", layout.columns, "their columns", ctype, _integers(layout.columns, 16), size)
            rtype, size = index_type(weight.shape[0])
            self._emit(f"{label}_r", layout.rows, "the output of each summed row", rtype, _integers(layout.rows, 16),
                       size)
        fname = f"{ident}_product"
        self.functions.append(f"/* {c_comment(comment, 200)}: sparse */\n" + sparse_function(fname, layout, ident,
                                                                                              integer))
        return fname


def _padded(n: int, align: int) -> int:
    return -(-n // align) * align


def supports(model) -> bool:
    return inference.supports(model) or ode_inference.supports(model)


def _ode(ckpt: Checkpoint, model, name: str, raw_io: RawIO | None, sparse: str) -> CSource:
    """An Euler sequence ODE block (`ode-rnn`, its `svd`/`qdeim`/`pod-deim` reductions) as the
    folded step of `models.ode_inference`: p = M z + b (or through a rank-K factor, or in the
    latent coordinates of an SVD block), then z + dt (Z u - N 1) + 2 dt N sigmoid(2p)."""
    f = ode_inference.FoldedODE(model)
    if model.embedding is not None:
        raise ConfigError("no C form for an ODE block over token inputs")
    w = _Writer(name, sparse=sparse)
    up = name.upper()
    n_state = int(f.state_size)
    n_inputs = int(ckpt.task["input"]["size"])
    per_step = f.per_step
    width = f.bias.numel()  # the nonlinearity's width (m points, or every unit)
    rank = f.first.shape[1] if f.second is not None and not f.latent else 0
    lines = [f"    float r[{rank}];" if rank else "", "    int j;"]
    if f.latent:
        lines.append(f"    for (j = 0; j < {width}; ++j) p[j] = 0.0f;\n    "
                     + w.matvec("p_w", f.second, "the latent state's rank part to the units (2 folded in), transposed",
                                "z", "p"))
    elif not rank:
        lines.append(f"    for (j = 0; j < {width}; ++j) p[j] = 0.0f;\n    "
                     + w.matvec("p_w", f.first, "M^T (2 folded in)", "z", "p"))
    else:
        lines.append(f"    for (j = 0; j < {rank}; ++j) r[j] = 0.0f;\n    "
                     + w.matvec("r_w", f.first, f"the rank-{rank} factor R^T (zero-padded to a multiple of 8)", "z", "r")
                     + f"\n    for (j = 0; j < {width}; ++j) p[j] = 0.0f;\n    "
                     + w.matvec("p_w", f.second, "L^T (2 folded in)", "r", "p"))
    bias = w.array("b", f.bias, "2 b")
    lines.append(f"    for (j = 0; j < {width}; ++j) p[j] = {bias}[j] + p[j];\n"
                 f"    {name}_sigmoids(p, {width});")
    weights = f.input_w
    if raw_io is not None:  # raw features in: the standardisation folded into [u, 1]'s rows
        folded_w, folded_b = raw_io.fold_first(weights[:-1], weights[-1])
        weights = torch.cat([folded_w, folded_b.unsqueeze(0)])
    upd = [f"    float c[{n_state}];\n    int j;",
           f"    for (j = 0; j < {n_state}; ++j) c[j] = 0.0f;",
           "    " + w.matvec("input_w", weights, "[u, 1] -> dt (Z u - N 1)" + (" in latent coordinates" if f.latent
                                                                           else ""), "u", "c"),
           f"    for (j = 0; j < {n_state}; ++j) z[j] = z[j] + c[j];"]
    if f.n_t is None:
        upd.append(f"    for (j = 0; j < {n_state}; ++j) z[j] = z[j] + {_literal(2.0 * f.dt)} * s[j];")
    else:
        upd.append(f"    for (j = 0; j < {n_state}; ++j) c[j] = 0.0f;\n    "
                   + w.matvec("n_w", f.n_t, "2 dt N^T" + (" P^T (latent)" if f.latent else ""), "s", "c") + "\n"
                   f"    for (j = 0; j < {n_state}; ++j) z[j] = z[j] + c[j];")
    if f.latent:
        hb = w.array("readout_b", f.head_bias, "the head's bias (its product is in the latent state)")
        out = (f"    int i;\n    for (i = 0; i < {up}_N_OUTPUTS; ++i) logits[i] = state->z[{f.head_columns.start} + i] "
               f"+ {hb}[i];")
    else:
        hw = w.array("readout_w", model.head.weight, "readout (outputs x state)")
        hb = w.array("readout_b", model.head.bias, "readout bias")
        out = (f"    int i, j;\n    for (i = 0; i < {up}_N_OUTPUTS; ++i) {{\n        float acc = 0.0f;\n"
               f"        for (j = 0; j < {n_state}; ++j) acc += {hw}[i * {n_state} + j] * state->z[j];\n"
               f"        logits[i] = acc + {hb}[i];\n    }}")
    out += "\n" + _in_units(w, up, raw_io).rstrip("\n")
    n_outputs = int(model.head.weight.shape[0])
    stages = (f"/* s = sigmoid(2p), p = M z + b: tanh(p) = 2 s - 1 */\n"
              f"static void {name}_nonlinearity(const float *z, float *p)\n{{\n"
              + "\n".join(line for line in lines if line) + "\n}\n\n"
              f"/* z' = z + dt (Z u - N 1) + 2 dt N s: one Euler step */\n"
              f"static void {name}_update(float *z, const float *u, const float *s)\n{{\n" + "\n".join(upd) + "\n}\n")
    body = (f"void {name}_step({name}_state *state, const float *input, float dt)\n{{\n"
            f"    float u[{n_inputs + 1}], s[{width}];\n    int j;\n    (void)dt; /* the solver's step is the model's own */\n"
            f"    for (j = 0; j < {n_inputs}; ++j) u[j] = input[j];\n    u[{n_inputs}] = 1.0f;\n"
            f"    {name}_nonlinearity(state->z, s);\n    {name}_update(state->z, u, s);\n}}\n\n"
            f"void {name}_output(const {name}_state *state, float *logits)\n{{\n{out}\n}}\n\n"
            f"void {name}_reset({name}_state *state)\n{{\n    int j;\n"
            f"    for (j = 0; j < {n_state}; ++j) state->z[j] = 0.0f; /* x(0) = 0 */\n}}\n\n"
            + _run_function(name, False, per_step))
    source = _source(name, w, stages + "\n" + body)
    state_bytes = 4 * n_state
    scratch = 4 * (n_inputs + 1 + 2 * width + n_state + rank) + _product_scratch(name, source)
    arch = ckpt.arch
    kind = arch.get("name") + (f", {arch.get('method')} to {arch.get('dim')}" if arch.get("method") else "")
    state_fields = [f"    float z[{n_state}]; /* the ODE state" + (" in latent coordinates [R z, H z]" if f.latent
                                                                     else "") + " */"]
    header = _header(name, up, ckpt, False, n_inputs, n_outputs, per_step, False, state_fields,
                     w.flash, state_bytes, scratch, None, ode=f"{kind}, {n_state} states, Euler with dt {f.dt:g}",
                     raw_io=raw_io, products=w.products)
    return CSource(name, header, source, w.flash, state_bytes, scratch, False, n_inputs, n_outputs, per_step, False,
                   tuple(w.products))


def _source(name: str, w: "_Writer", code: str) -> str:
    """NAME.c: the arrays, the products' own functions, the helpers `code` calls, then `code`."""
    up = name.upper()
    vnni = (f"/* AVX-512 VNNI (x86): the integer products as byte dot products of 16 outputs at a time */\n"
            f"#if defined(__AVX512VNNI__) && defined(__AVX512F__)\n#include <immintrin.h>\n#include <string.h>\n"
            f"#define {up}_VNNI 1\n#else\n#define {up}_VNNI 0\n#endif\n\n") if w.vnni else ""
    return (f"/* {name}.c: generated by cfctool from the checkpoint described in {name}.h. */\n"
            f"#include <math.h>\n#include <stdint.h>\n#include \"{name}.h\"\n\n" + vnni + "\n".join(w.arrays) + "\n"
            + "".join(f + "\n" for f in w.functions) + _helpers(name, code, w.vnni) + "\n" + code)


def _product_scratch(name: str, source: str) -> int:
    """The dense float product's block of sums, on the stack while it runs."""
    return 4 * TILE if f"{name}_matvec(" in source else 0


def _in_units(w: "_Writer", up: str, raw_io: RawIO | None) -> str:
    """NAME_output's last lines for a regression or forecast on raw data: the outputs in the
    data's units (the recorded target mean and std); nothing otherwise."""
    if raw_io is None or raw_io.out_scale is None:
        return ""
    scale = w.array("out_scale", raw_io.out_scale, "the recorded target std: outputs in the data's units")
    shift = w.array("out_shift", raw_io.out_shift, "the recorded target mean")
    return (f"    for (i = 0; i < {up}_N_OUTPUTS; ++i) logits[i] = logits[i] * {scale}[i] + {shift}[i];\n")


def _run_function(name: str, token_input: bool, per_step: bool) -> str:
    """NAME_run: a whole sequence through NAME_step, the logits after every step or the last."""
    up = name.upper()
    inputs_t = "const int32_t *inputs" if token_input else "const float *inputs"
    advance = "inputs[t]" if token_input else f"inputs + (int32_t)t * {up}_N_INPUTS"
    return (f"void {name}_run({name}_state *state, {inputs_t}, const float *dts, int32_t length, float *logits)\n"
            f"{{\n    int32_t t;\n    for (t = 0; t < length; ++t) {{\n"
            f"        {name}_step(state, {advance}, dts ? dts[t] : 1.0f);\n"
            + (f"        {name}_output(state, logits + (int32_t)t * {up}_N_OUTPUTS);\n" if per_step else "")
            + "    }\n" + ("" if per_step else f"    {name}_output(state, logits);\n") + "}\n")


def _table_input(w: "_Writer", name: str, table, width: int, comment: str) -> str:
    """c0_input of a token model: the token's row of the folded table."""
    ident = w.array("c0_table", table, comment)
    return (f"static void {name}_c0_input(int32_t token, float *pre)\n{{\n"
            f"    const float *row = {ident} + (int32_t)token * {width};\n"
            f"    int j;\n    for (j = 0; j < {width}; ++j) pre[j] = row[j];\n}}\n")


def _helpers(name: str, code: str, vnni: bool = False) -> str:
    """The shared functions `code` calls (only those: an unused static function is a warning);
    `vnni`: the integer dot product also in its AVX-512 VNNI form, chosen by the compiler."""
    helpers = {
        # the argument clamped to +-88: expf then stays finite, which -ffast-math assumes (an
        # infinity there made NaN of a large time gate); sigmoid(88) is 1 in float32 anyway
        "sigmoids": (f"/* v[i] = 1 / (1 + exp(-v[i])) */\n"
                     f"static void {name}_sigmoids(float *v, int n)\n{{\n"
                     f"    int i;\n    for (i = 0; i < n; ++i) {{\n"
                     f"        const float a = v[i] < -88.0f ? -88.0f : (v[i] > 88.0f ? 88.0f : v[i]);\n"
                     f"        v[i] = 1.0f / (1.0f + expf(-a));\n    }}\n}}\n"),
        "matvec": (f"/* out[j] += sum_i x[i] W[i][j] for W (n x m) stored in blocks of {TILE} outputs, each block's n\n"
                   f" * rows contiguous: a block's sums stay in registers while its rows stream past once */\n"
                   f"static void {name}_matvec(const float *x, int n, const float *w, int m, float *out)\n{{\n"
                   f"    enum {{ TILE = {TILE} }};\n    int i, j, b;\n"
                   f"    for (b = 0; b + TILE <= m; b += TILE) {{\n        float acc[TILE];\n"
                   f"        const float *block = w + (int32_t)b * n;\n"
                   f"        for (j = 0; j < TILE; ++j) acc[j] = out[b + j];\n"
                   f"        for (i = 0; i < n; ++i) {{\n            const float xi = x[i];\n"
                   f"            const float *row = block + (int32_t)i * TILE;\n"
                   f"            for (j = 0; j < TILE; ++j) acc[j] += xi * row[j];\n        }}\n"
                   f"        for (j = 0; j < TILE; ++j) out[b + j] = acc[j];\n    }}\n"
                   f"    if (b < m) {{ /* the last, narrower block */\n        const int r = m - b;\n"
                   f"        const float *block = w + (int32_t)b * n;\n"
                   f"        for (i = 0; i < n; ++i) {{\n            const float xi = x[i];\n"
                   f"            const float *row = block + (int32_t)i * r;\n"
                   f"            for (j = 0; j < r; ++j) out[b + j] += xi * row[j];\n        }}\n    }}\n}}\n"),
        # one dot product per output over a row of the stored (out x in) integers, n a multiple of
        # ROW_ALIGN: compilers turn it into whole-register multiply-adds on bytes (AVX-512 VNNI's
        # unsigned x signed, NEON's sdot after widening; SMLAD pairs on a Cortex-M4)
        "dot_u8": (f"/* acc[j] = sum_i x[i] * q[j * n + i]: uint8 x int8 -> int32, q is (m x n), row-major */\n"
                   f"static void {name}_dot_u8(const uint8_t *x, int n, const int8_t *q, int m, int32_t *acc)\n"
                   f"{{\n    int i, j;\n    for (j = 0; j < m; ++j) {{\n        const int8_t *row = q + "
                   f"(int32_t)j * n;\n        int32_t s = 0;\n"
                   f"        for (i = 0; i < n; ++i) s += (int32_t)x[i] * (int32_t)row[i];\n"
                   f"        acc[j] = s;\n    }}\n}}\n"),
        "quantize_y": (f"/* y in [0, 1] -> round(127 y), half up */\n"
                       f"static void {name}_quantize_y(const float *y, int n, uint8_t *q)\n{{\n"
                       f"    int i;\n    for (i = 0; i < n; ++i) q[i] = (uint8_t)(0.5f + 127.0f * y[i]);\n}}\n"),
        "clamp": (f"static float {name}_clamp(float v, float lo, float hi)\n{{\n"
                  f"    return v < lo ? lo : (v > hi ? hi : v);\n}}\n"),
    }
    if vnni:
        up = name.upper()
        helpers["dot_u8"] = (
            f"#if {up}_VNNI\n/* acc[j] = sum_i x[i] * q: q in blocks of 16 outputs, each n / 4 groups of 16 x 4 bytes;\n"
            f" * one vpdpbusd (uint8 x int8, exact int32 sums) per group, no sum across lanes */\n"
            f"static void {name}_dot_u8(const uint8_t *x, int n, const int8_t *q, int m, int32_t *acc)\n{{\n"
            f"    int i, b;\n    int32_t four;\n"
            f"    for (b = 0; b + 64 <= m; b += 64) {{ /* four blocks: four independent chains of sums */\n"
            f"        const int8_t *q0 = q + (int32_t)b * n, *q1 = q0 + 16 * n, *q2 = q1 + 16 * n, *q3 = q2 + 16 * n;\n"
            f"        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;\n"
            f"        for (i = 0; i < n; i += 4) {{\n            __m512i xs;\n            memcpy(&four, x + i, 4);\n"
            f"            xs = _mm512_set1_epi32(four);\n"
            f"            a0 = _mm512_dpbusd_epi32(a0, xs, _mm512_loadu_si512(q0 + 16 * i));\n"
            f"            a1 = _mm512_dpbusd_epi32(a1, xs, _mm512_loadu_si512(q1 + 16 * i));\n"
            f"            a2 = _mm512_dpbusd_epi32(a2, xs, _mm512_loadu_si512(q2 + 16 * i));\n"
            f"            a3 = _mm512_dpbusd_epi32(a3, xs, _mm512_loadu_si512(q3 + 16 * i));\n        }}\n"
            f"        _mm512_storeu_si512(acc + b, a0);\n        _mm512_storeu_si512(acc + b + 16, a1);\n"
            f"        _mm512_storeu_si512(acc + b + 32, a2);\n        _mm512_storeu_si512(acc + b + 48, a3);\n    }}\n"
            f"    for (; b < m; b += 16) {{\n        __m512i a = _mm512_setzero_si512();\n"
            f"        const int8_t *block = q + (int32_t)b * n;\n        for (i = 0; i < n; i += 4) {{\n"
            f"            memcpy(&four, x + i, 4);\n"
            f"            a = _mm512_dpbusd_epi32(a, _mm512_set1_epi32(four), _mm512_loadu_si512(block + 16 * i));\n"
            f"        }}\n        if (m - b >= 16) _mm512_storeu_si512(acc + b, a);\n"
            f"        else _mm512_mask_storeu_epi32(acc + b, (__mmask16)((1u << (m - b)) - 1u), a);\n    }}\n}}\n"
            f"#else\n{helpers['dot_u8']}#endif\n")
    return "\n".join(text for key, text in helpers.items() if f"{name}_{key}(" in code)


def generate(ckpt: Checkpoint, model, name: str, *, dt_input: bool,
             integer: dict | None = None, row_align: int = ROW_ALIGN, token_table: str = "auto",
             raw_io: RawIO | None = None, sparse: str = "auto") -> CSource:
    """C99 for the model `ckpt` decodes to: `dt_input` False folds the gate for dt = 1 (regular
    sequences), True reads dt at every step. The header comment names the checkpoint by its sha256.
    `integer` ({"act_scales", "dynamic", "fuse"}, from the checkpoint's quantization record)
    emits the folded-int8 engine's step: the stored integers, int32 sums, its rescales.
    `raw_io` (your own data's recorded standardisation, `data.raw_io.of`): the C reads raw
    features, the standardisation folded into the first product, and writes outputs in the
    data's units; without it the C reads what the model reads (the engines feed it splits).
    `sparse` (auto, never, always): how each weight product runs (`c_products`)."""
    check_finite(ckpt)  # (C has no spelling for NaN or infinity in a constant)
    if ode_inference.supports(model):
        return _ode(ckpt, model, c_name(name), raw_io, sparse)
    if not inference.supports(model):
        raise ConfigError(f"no C form for a {ckpt.arch.get('name')} checkpoint"
                          + (f" of mode '{ckpt.arch.get('mode')}'" if ckpt.arch.get("mode") not in (None, "default")
                             else "")
                          + (" with mixed memory" if ckpt.arch.get("mixed_memory") else "")
                          + "; the C engine runs 'default'-mode cfc, cfc-deep and cfc-ncp models and Euler ODE-RNNs "
                            "with their reductions")
    name = c_name(name)
    model = model.eval()
    dt = None if dt_input else 1.0
    if integer is not None:
        from cfctool.models.quantized import QuantFolded, float_layers

        if float_layers(ckpt):
            raise ConfigError(f"no C form for a quantized model with products kept in float32 ("
                              f"{', '.join(float_layers(ckpt))}): the C engine's integer step is all-integer; "
                              "export the fp32 original, or quantize without --keep-float")

        folded = QuantFolded(model, dt, ckpt, integer.get("act_scales") or {}, bool(integer.get("dynamic")),
                             simulate=True, fuse=integer.get("fuse", True))
    else:
        folded = inference.Folded(model, dt)
    task = ckpt.task
    token_input = task["input"]["kind"] == "tokens"
    if raw_io is not None and not token_input:  # raw features in: the standardisation in the first product
        first = folded.cells[0]
        first.w_in_t, first.b1 = raw_io.fold_first(first.w_in_t, first.b1)
    n_inputs = 1 if token_input else int(task["input"]["size"])
    n_outputs = int(folded.head_b.numel())
    per_step = folded.per_step
    if sparse not in SPARSE_CHOICES:
        raise ConfigError(f"unknown sparse setting '{sparse}': choose one of {', '.join(SPARSE_CHOICES)}")
    w = _Writer(name, row_align if integer is not None else 1, sparse)
    up = name.upper()
    state_fields = [f"    float y{k}[{c.h}]; /* cell {k}: y = (x / a + 1) / 2, x its state */"
                    for k, c in enumerate(folded.cells)]
    widths = [c.h for c in folded.cells]
    emit = _int8_cell if integer is not None else _float_cell
    if token_table not in TOKEN_TABLES:
        raise ConfigError(f"unknown token table '{token_table}': choose one of {', '.join(TOKEN_TABLES)}")
    if token_table == "auto":  # a pruned embedding folds into a dense table: keep its rows, sparse
        token_table = "embedding" if token_input and _sparse_rows(model.embedding.weight, sparse) else "folded"
    unfold = (token_table == "embedding" and folded.table is not None
              and not model.rnn.cells[0].input_projected)  # a projected input's table is the embedding itself
    table = None if unfold else folded.table
    # float C of a sparse embedding: the token's few non-zeros pick columns of the input product
    direct = unfold and integer is None and _sparse_rows(model.embedding.weight, sparse)
    cells = [emit(w, name, k, folded, token_input, table, direct) for k in range(len(folded.cells))]
    if unfold:
        token_stage, token_scratch = _embedding_input(w, name, ckpt, model.embedding.weight.detach(), sparse,
                                                      folded.cells[0] if direct else None)
        cells[0].stages.append(token_stage)
        cells[0].scratch += token_scratch
    head_w = w.array("readout_w", folded.head_w, "readout, in y-space (outputs x state)")
    head_b = w.array("readout_b", folded.head_b, "readout bias")

    body: list[str] = []
    step_arg = "int32_t token" if token_input else "const float *input"
    body.append(f"void {name}_step({name}_state *state, {step_arg}, float dt)\n{{\n"
                + "\n".join(c.step for c in cells) + "\n}\n")
    last = len(folded.cells) - 1
    out_dim = folded.cells[-1].h
    body.append(f"void {name}_output(const {name}_state *state, float *logits)\n{{\n"
                f"    int i, j;\n    for (i = 0; i < {up}_N_OUTPUTS; ++i) {{\n"
                f"        float acc = {head_b}[i];\n"
                f"        for (j = 0; j < {out_dim}; ++j) acc += {head_w}[i * {out_dim} + j] * state->y{last}[j];\n"
                f"        logits[i] = acc;\n    }}\n{_in_units(w, up, raw_io)}}}\n")
    body.append(f"void {name}_reset({name}_state *state)\n{{\n    int j;\n"
                + "".join(f"    for (j = 0; j < {h}; ++j) state->y{k}[j] = 0.5f; /* x = 0 */\n"
                          for k, h in enumerate(widths)) + "}\n")
    body.append(_run_function(name, token_input, per_step))

    state_bytes = 4 * sum(widths)
    code = "\n".join("\n".join(c.stages) for c in cells) + "\n" + "\n".join(body)
    source = _source(name, w, code)
    scratch = max(c.scratch for c in cells) + _product_scratch(name, source)
    header = _header(name, up, ckpt, token_input, n_inputs, n_outputs, per_step, dt_input, state_fields,
                     w.flash, state_bytes, scratch, integer, vocab=model.embedding.num_embeddings
                     if token_input else None, unfolded=unfold, row_align=w.align,
                     raw_io=None if token_input else raw_io, products=w.products)
    return CSource(name, header, source, w.flash, state_bytes, scratch, token_input, n_inputs, n_outputs, per_step,
                   dt_input, tuple(w.products), token_table=("embedding" if unfold else "folded") if token_input
                   else None)


@dataclass
class _Cell:
    stages: list[str]  # the cell's functions
    step: str  # its block in NAME_step
    scratch: int  # bytes of its stack arrays


def _activation(name: str, k: int, act) -> str:
    return f"static float {name}_c{k}_act(float v)\n{{\n    return {_ACTIVATIONS[type(act).__name__]};\n}}\n"


def _update(name: str, k: int, h: int, gate_folded: bool) -> str:
    gate = "s[2 * H + j]" if gate_folded else "s[2 * H + j] * dt + s[3 * H + j]"
    return (f"/* cell {k}: y' = lerp(sigmoid(2c ff1), sigmoid(2c ff2), gate) */\n"
            f"static void {name}_c{k}_update(float *s, float dt, float *y)\n{{\n"
            f"    enum {{ H = {h} }};\n    int j;\n"
            + ("    (void)dt; /* the gate is folded for dt = 1 */\n" if gate_folded else
               f"    for (j = 0; j < H; ++j) s[2 * H + j] = {gate};\n")
            + f"    {name}_sigmoids(s, 3 * H);\n"
            f"    for (j = 0; j < H; ++j) {{ /* torch.lerp's two forms, each exact at its end */\n"
            f"        const float a = s[j], b = s[H + j], g = s[2 * H + j];\n"
            f"        y[j] = g < 0.5f ? a + g * (b - a) : b - (b - a) * (1.0f - g);\n    }}\n}}\n")


def _first_call(name: str, k: int, token_input: bool, table) -> str:
    """What cell k's block in NAME_step calls first: the input product from the token (a table
    row, or the embedding row through c0_token), the float inputs, or the cell below's y."""
    if k:
        return f"{name}_c{k}_input(state->y{k - 1}, pre)"
    return f"{name}_c0_{'token' if token_input and table is None else 'input'}({'token' if token_input else 'input'}, pre)"


def _sparse_rows(weight: torch.Tensor, sparse: str) -> bool:
    """Whether an embedding is kept as its non-zeros (offsets, columns, values): at most half
    of it non-zero, where that is smaller than the dense rows."""
    return sparse == "always" or (sparse == "auto" and int(torch.count_nonzero(weight)) * 2 <= weight.numel())


def _embedding_input(w: "_Writer", name: str, ckpt: Checkpoint, weight: torch.Tensor, sparse: str,
                     direct=None) -> tuple[str, int]:
    """c0_token for an unfolded token table: the token's embedding row (its stored int8 codes
    times the row's scale where the checkpoint holds it so, else float32; only its non-zeros
    where it is sparse) into c0_input; with `direct` (the float cell 0 of a sparse embedding),
    each non-zero adds its column of the input product, and there is no c0_input."""
    from cfctool.models.quantized import int_weight

    dim = weight.shape[1]
    stored = int_weight(ckpt, "embedding.weight")
    codes_stored = stored is not None and torch.equal(stored[0].float() * stored[1].unsqueeze(1), weight)
    if _sparse_rows(weight, sparse):
        nonzero = weight != 0
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), nonzero.sum(1).cumsum(0)])
        columns = torch.nonzero(nonzero)[:, 1]
        ctype, size = index_type(dim)
        off = w.int32("embedding_off", offsets, "where each token's non-zeros start (vocab + 1)")
        cols = w._emit("embedding_c", columns, "their columns", ctype, _integers(columns, 16), size)
        if codes_stored:
            vals = w._emit("embedding_v", stored[0][nonzero], "the embedding's non-zero int8 codes, row by row",
                           "int8_t", _integers(stored[0][nonzero], 16), 1)
            scales = w.array("embedding_s", stored[1], "the embedding's row scales")
            value = f"(float){vals}[k] * {scales}[token]"
        else:
            vals = w.array("embedding_v", weight[nonzero], "the embedding's non-zeros, row by row")
            value = f"{vals}[k]"
        if direct is not None:
            return _token_columns(w, name, direct, off, cols, value), 0
        row = (f"    for (j = 0; j < {dim}; ++j) e[j] = 0.0f;\n"
               f"    for (k = {off}[token]; k < {off}[token + 1]; ++k) e[{cols}[k]] = {value};\n")
        return (f"/* cell 0's input from a token: its embedding row (the non-zeros) through the input product */\n"
                f"static void {name}_c0_token(int32_t token, float *pre)\n{{\n    float e[{dim}];\n    int32_t j, k;\n"
                + row + f"    {name}_c0_input(e, pre);\n}}\n"), 4 * dim
    if codes_stored:
        codes = w.int8("embedding_q", stored[0], "the embedding's stored int8 codes (vocab x dim)")
        scales = w.array("embedding_s", stored[1], "the embedding's row scales")
        row = (f"    const int8_t *row = {codes} + (int32_t)token * {_padded(dim, w.align)};\n    const float scale = {scales}[token];\n"
               f"    for (j = 0; j < {dim}; ++j) e[j] = (float)row[j] * scale;\n")
    else:
        table = w.array("embedding", weight, "the embedding (vocab x dim)")
        row = (f"    const float *row = {table} + (int32_t)token * {dim};\n"
               f"    for (j = 0; j < {dim}; ++j) e[j] = row[j];\n")
    return (f"/* cell 0's input from a token: its embedding row through the input product */\n"
            f"static void {name}_c0_token(int32_t token, float *pre)\n{{\n    float e[{dim}];\n    int j;\n"
            + row + f"    {name}_c0_input(e, pre);\n}}\n"), 4 * dim


def _token_columns(w: "_Writer", name: str, cell, off: str, cols: str, value: str) -> str:
    """c0_token of float C over a sparse embedding: pre = b1 + the input product's column of each
    of the token's non-zeros (the column's own non-zeros where the product is sparse)."""
    w_in_t, width = cell.w_in_t, cell.b1.numel()
    b1 = w.array("c0_b1", cell.b1, "cell 0: bias of the first product")
    before = w.flash
    form = choose_form(w_in_t.t(), False, w.sparse)
    if form == "sparse":  # by input: each input's non-zero outputs
        nz = w_in_t != 0
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), nz.sum(1).cumsum(0)])
        outs = torch.nonzero(nz)[:, 1]
        otype, osize = index_type(width)
        stype, ssize = index_type(int(starts[-1]) + 1)
        s_id = w._emit("c0_w_in_starts", starts, "cell 0: where each input's non-zeros start", stype,
                       _integers(starts, 16), ssize)
        o_id = w._emit("c0_w_in_outs", outs, "their outputs", otype, _integers(outs, 16), osize)
        v_id = w.array("c0_w_in_v", w_in_t[nz], "cell 0: the input product's non-zeros, input by input")
        add = (f"        for (t = {s_id}[d]; t < {s_id}[d + 1]; ++t) pre[{o_id}[t]] += v * {v_id}[t];\n")
    else:
        rows = w.array("c0_w_in", w_in_t, "cell 0: input half of the first product (in x out)")
        add = f"        for (t = 0; t < {width}; ++t) pre[t] += v * {rows}[d * {width} + t];\n"
    w.products.append(Product("c0_w_in", width, w_in_t.shape[0], int(torch.count_nonzero(w_in_t)), False, form,
                              w.flash - before))
    return (f"/* cell 0's input from a token: the bias, then the input product's column of each non-zero of the\n"
            f" * token's embedding row */\n"
            f"static void {name}_c0_token(int32_t token, float *pre)\n{{\n    int32_t j, k, t;\n"
            f"    for (j = 0; j < {width}; ++j) pre[j] = {b1}[j];\n"
            f"    for (k = {off}[token]; k < {off}[token + 1]; ++k) {{\n        const float v = {value};\n"
            f"        const int32_t d = {cols}[k];\n" + add + "    }\n}\n")


def _float_cell(w: "_Writer", name: str, k: int, folded, token_input: bool, table, direct: bool = False) -> _Cell:
    cell = folded.cells[k]
    first_width = cell.b1.numel()
    if k == 0 and direct:  # c0_token does the whole input product (_token_columns)
        first = ""
    elif k == 0 and table is not None:
        first = _table_input(w, name, table, first_width, "token -> first product's input half plus bias "
                             "(the embedding folded in)")
    else:
        b1 = w.array(f"c{k}_b1", cell.b1, f"cell {k}: bias of the first product")
        arg = "const float *input" if k == 0 else f"const float *below /* cell {k - 1}'s new y */"
        src = "input" if k == 0 else "below"
        first = (f"static void {name}_c{k}_input({arg}, float *pre)\n{{\n"
                 f"    int j;\n    for (j = 0; j < {first_width}; ++j) pre[j] = {b1}[j];\n    "
                 + w.matvec(f"c{k}_w_in", cell.w_in_t, f"cell {k}: input half of the first product, transposed "
                            "(in x out)", src, "pre") + "\n}\n")
    state_product = w.matvec(f"c{k}_w_state", cell.w_state_t, f"cell {k}: state half of the first product, in "
                             "y-space, transposed (state x out)", f"state->y{k}", "pre")
    stages = [first] if first else []
    head_rows = 3 * cell.h if cell.gate_folded else 4 * cell.h
    scratch = 4 * first_width
    if cell.heads is not None:
        stages.append(_activation(name, k, cell.act))
        layers = [f"    for (j = 0; j < {first_width}; ++j) a[j] = {name}_c{k}_act(pre[j]);"]
        width, widest, cur, buffers = first_width, first_width, 0, ("a", "b")
        for i, (w_t, b) in enumerate(cell.rest):
            bl = w.array(f"c{k}_layer{i + 1}_b", b, f"cell {k}: backbone layer {i + 1} bias")
            src, dst, out = buffers[cur], buffers[1 - cur], b.numel()
            layers.append(f"    for (j = 0; j < {out}; ++j) {dst}[j] = {bl}[j];\n    "
                          + w.matvec(f"c{k}_layer{i + 1}_w", w_t, f"cell {k}: backbone layer {i + 1}, transposed",
                                     src, dst) + "\n"
                          f"    for (j = 0; j < {out}; ++j) {dst}[j] = {name}_c{k}_act({dst}[j]);")
            width, cur, widest = out, 1 - cur, max(widest, out)
        if cell.basis is not None:
            src, dst, out = buffers[cur], buffers[1 - cur], cell.basis.shape[1]
            layers.append(f"    for (j = 0; j < {out}; ++j) {dst}[j] = 0.0f;\n    "
                          + w.matvec(f"c{k}_basis", cell.basis, f"cell {k}: the heads' shared rank-"
                                     f"{cell.basis.shape[1]} map (SVD reduction), transposed", src, dst))
            width, cur, widest = out, 1 - cur, max(widest, out)
        hb = w.array(f"c{k}_heads_b", cell.heads[1], f"cell {k}: heads bias")
        layers.append(f"    for (j = 0; j < {head_rows}; ++j) heads[j] = {hb}[j];\n    "
                      + w.matvec(f"c{k}_heads_w", cell.heads[0], f"cell {k}: heads [2c ff1; 2c ff2; "
                                 + ("gate (dt = 1 folded in)" if cell.gate_folded else "time_a; time_b")
                                 + "], transposed", buffers[cur], "heads"))
        second = f", b[{widest}]" if cell.rest or cell.basis is not None else ""
        stages.append(f"/* cell {k}: backbone activations, then the heads' pre-activations */\n"
                      f"static void {name}_c{k}_backbone(float *pre, float *heads)\n{{\n"
                      f"    float a[{widest}]{second};\n    int j;\n" + "\n".join(layers) + "\n}\n")
        scratch = 4 * (2 * widest + head_rows + first_width)
    stages.append(_update(name, k, cell.h, cell.gate_folded))
    step = (f"    {{ /* cell {k} */\n        float pre[{first_width}];\n"
            + (f"        float heads[{head_rows}];\n" if cell.heads is not None else "")
            + f"        {_first_call(name, k, token_input, table)};\n"
            f"        {state_product}\n"
            + (f"        {name}_c{k}_backbone(pre, heads);\n        {name}_c{k}_update(heads, dt, state->y{k});\n"
               if cell.heads is not None else f"        {name}_c{k}_update(pre, dt, state->y{k});\n")
            + "    }")
    return _Cell(stages, step, scratch)


def _int8_cell(w: "_Writer", name: str, k: int, folded, token_input: bool, table, direct: bool = False) -> _Cell:
    """The folded-int8 engine's step of one cell (`models.quantized._QCell.step`), the same
    operations in the same order: int32 sums of the stored integers, `bias + acc * scale`,
    clamps and truncations to int8, round half to even (rintf) where it rounds."""
    qc, cell = folded.qcells[k], folded.cells[k]
    h, first_width = qc.h, qc.state_q.shape[1]

    def pad(n: int) -> int:  # the byte vectors as long as the padded rows
        return _padded(n, w.align)
    stages: list[str] = []
    base_text = ""
    if k == 0 and table is not None:
        stages.append(_table_input(w, name, table, first_width, "token -> the first product's input part "
                                   "and bias (the embedding folded in"
                                   + (", divided by the first activation scale, + 0.5" if qc.fast else "") + ")"))
    elif k == 0:  # float inputs: u = x W_in + b1 (4 heads), the gate folded, then / s_z + 0.5 (fast)
        wc = cell.w_in_t.shape[1]
        b1 = w.array("c0_b1", cell.b1, "cell 0: bias of the first product")
        lines = [f"    float u[{wc}];\n    int j;",
                 f"    for (j = 0; j < {wc}; ++j) u[j] = 0.0f;",
                 "    " + w.matvec("c0_w_in", cell.w_in_t, "cell 0: input half of the first product, transposed "
                              "(in x out)", "input", "u"),
                 f"    for (j = 0; j < {wc}; ++j) u[j] = u[j] + {b1}[j];"]
        if qc.folds_input:
            lines.append(f"    for (j = 0; j < {2 * h}; ++j) pre[j] = u[j];\n"
                         f"    for (j = 0; j < {h}; ++j) pre[{2 * h} + j] = {_literal(folded.dt_value)} * u[{2 * h} + j] "
                         f"+ u[{3 * h} + j];")
        else:
            lines.append(f"    for (j = 0; j < {first_width}; ++j) pre[j] = u[j];")
        if qc.fast:
            lines.append(f"    for (j = 0; j < {first_width}; ++j) pre[j] = pre[j] / {_literal(qc.in_scale)} + 0.5f;")
        stages.append(f"static void {name}_c0_input(const float *input, float *pre)\n{{\n" + "\n".join(lines) + "\n}\n")
    else:
        base_text = w.array(f"c{k}_b1", qc.b1, f"cell {k}: bias of the first product")
    state_dot = w.dot_u8(f"c{k}_state_q", qc.state_q.t(), f"cell {k}: state half of the first product (stored "
                         "integers, out x state)", "yq", "acc")
    state_s = w.array(f"c{k}_state_s", qc.state_s, f"cell {k}: its column scales (y on the 1/127 grid)")
    if k > 0:
        in_dot = w.dot_u8(f"c{k}_in_q", qc.in_q.t(), f"cell {k}: input half (the cell below's y; out x in)",
                          "below", "acc")
        in_s = w.array(f"c{k}_in_s", qc.in_s, f"cell {k}: its column scales")
    # the first product: pre = base + acc * s (+ acc2 * s2)
    first = [f"    int32_t acc[{first_width}];\n    int j;"]
    if k == 0:
        first.append(f"    {state_dot}\n"
                     f"    for (j = 0; j < {first_width}; ++j) pre[j] = pre[j] + (float)acc[j] * {state_s}[j];")
    else:
        first.append(f"    {state_dot}\n"
                     f"    for (j = 0; j < {first_width}; ++j) pre[j] = {base_text}[j] + (float)acc[j] * {state_s}[j];\n"
                     f"    {in_dot}\n"
                     f"    for (j = 0; j < {first_width}; ++j) pre[j] = pre[j] + (float)acc[j] * {in_s}[j];")
    args = "const uint8_t *yq" + (", const uint8_t *below" if k else "")
    stages.append(f"/* cell {k}: the first product on the integer state{' and the cell below' if k else ''} */\n"
                  f"static void {name}_c{k}_first({args}, float *pre)\n{{\n" + "\n".join(first) + "\n}\n")
    head_rows = 3 * h if qc.gate_folded else 4 * h
    scratch = 4 * first_width * 2 + head_rows * 4 + pad(h) + (pad(folded.cells[k - 1].h) if k else 0)
    points = qc.linear_points
    if qc.heads is not None:
        lo = "0.0f" if qc.relu else "-127.0f"
        if not qc.fast:
            stages.append(_activation(name, k, cell.act))
        widths = [first_width] + [b.numel() for _, _, b, _ in qc.layers]
        widest = max(widths)
        # codes as unsigned bytes for the byte dot products: after a ReLU they are 0..127; signed
        # codes (-127..127) are stored + 128, and 128 x each row's sum taken off the sums
        zt = "uint8_t"
        signed = not qc.relu

        def dot_call(label: str, q, comment: str, n_out: int) -> str:
            call = "    " + w.dot_u8(label, q, comment, "zq", "acc")
            if not signed:
                return call
            sums = w.int32(label + "_rowsum", q.to(torch.int32).sum(1),
                           "each row's sum of integers (the + 128 offset of the signed codes)")
            return call + f"\n    for (j = 0; j < {n_out}; ++j) acc[j] -= 128 * {sums}[j];"

        def code(expr: str) -> str:  # a clamped integer value as the stored byte
            return f"(uint8_t)(128.0f + {expr})" if signed else f"({zt}){expr}"
        lines = [f"    {zt} zq[{pad(widest)}]" + (" = {0}" if pad(widest) > widest else "") + f";\n    int32_t acc[{max(widest, head_rows)}];"
                 + ("" if qc.fast or not qc.layers else f"\n    float z[{widest}];")
                 + ("" if qc.static else f"\n    float z[{widest}];\n    float sz;" if not qc.layers else "\n    float sz;")
                 + "\n    int j;"]

        def round_trip(var: str, n: int, point) -> str:
            inv, sc = point
            return (f"    for (j = 0; j < {n}; ++j) {var}[j] = {name}_clamp(rintf({var}[j] * {_literal(inv)}), -127.0f, "
                    f"127.0f) * {_literal(sc)};")

        def quantize(var: str, n: int, inv: float) -> str:
            return (f"    for (j = 0; j < {n}; ++j) zq[j] = "
                    + code(f"{name}_clamp(rintf({name}_c{k}_act({var}[j]) * {_literal(inv)}), {lo}, 127.0f)") + ";")

        def dynamic(var: str, n: int) -> str:  # quantize_dynamic: one scale for the step, from max |z|
            return (f"    sz = 0.0f;\n    for (j = 0; j < {n}; ++j) {{ z[j] = {name}_c{k}_act({var}[j]); "
                    + ("if (z[j] > sz) sz = z[j]; }" if qc.relu else "if (fabsf(z[j]) > sz) sz = fabsf(z[j]); }")
                    + "\n    sz = (sz < 1e-12f ? 1e-12f : sz) / 127.0f;\n"
                    + (f"    for (j = 0; j < {n}; ++j) zq[j] = ({zt}){name}_clamp(z[j] / sz + 0.5f, 0.0f, 127.0f);"
                       if qc.relu else
                       f"    for (j = 0; j < {n}; ++j) zq[j] = "
                       + code(f"{name}_clamp(rintf(z[j] / sz), -127.0f, 127.0f)") + ";"))

        if qc.fast:
            lines.append(f"    for (j = 0; j < {first_width}; ++j) zq[j] = ({zt}){name}_clamp(pre[j], 0.0f, 127.0f);")
        elif qc.static:
            if points:
                lines.append(round_trip("pre", first_width, points[0][0]))
            lines.append(quantize("pre", first_width, qc.inv_scales[0]))
        else:
            lines.append(dynamic("pre", first_width))
        width = first_width
        for i, (q_t, s, b, _) in enumerate(qc.layers):
            out = b.numel()
            ls = w.array(f"c{k}_layer{i + 1}_s", s, f"cell {k}: backbone layer {i + 1} column scales"
                         + (" x s_in / s_out" if qc.fast else " x s_in" if qc.static else ""))
            lb = w.array(f"c{k}_layer{i + 1}_b", b, f"cell {k}: backbone layer {i + 1} bias"
                         + (" / s_out + 0.5" if qc.fast else ""))
            lines.append(dot_call(f"c{k}_layer{i + 1}_q", q_t.t(), f"cell {k}: backbone layer {i + 1} (stored "
                                  "integers, out x in)", out))
            if qc.fast:
                lines.append(f"    for (j = 0; j < {out}; ++j) zq[j] = ({zt}){name}_clamp({lb}[j] + (float)acc[j] * "
                             f"{ls}[j], 0.0f, 127.0f);")
            elif qc.static:
                lines.append(f"    for (j = 0; j < {out}; ++j) z[j] = {lb}[j] + (float)acc[j] * {ls}[j];")
                if points:
                    lines.append(round_trip("z", out, points[0][i + 1]))
                lines.append(quantize("z", out, qc.inv_scales[i + 1]))
            else:
                lines.append(f"    for (j = 0; j < {out}; ++j) z[j] = {lb}[j] + (float)acc[j] * ({ls}[j] * sz);")
                lines.append(dynamic("z", out))
            width = out
        q_t, s_h, b_h = qc.heads
        hs = w.array(f"c{k}_heads_s", s_h, f"cell {k}: heads column scales" + (" x the last activation scale"
                                                                             if qc.static else ""))
        hb = w.array(f"c{k}_heads_b", b_h, f"cell {k}: heads bias")
        scale = f"({hs}[j] * sz)" if not qc.static else f"{hs}[j]"
        lines.append(dot_call(f"c{k}_heads_q", q_t.t(), f"cell {k}: heads (stored integers, out x in; 2c on "
                              "ff1/ff2 in the scales" + ("; the gate requantized per row for dt = 1"
                                                          if qc.gate_folded else "") + ")", head_rows) + "\n"
                     f"    for (j = 0; j < {head_rows}; ++j) heads[j] = {hb}[j] + (float)acc[j] * {scale};")
        stages.append(f"/* cell {k}: the integer backbone, then the heads' pre-activations */\n"
                      f"static void {name}_c{k}_backbone(float *pre, float *heads)\n{{\n"
                      + "\n".join(lines) + "\n}\n")
        scratch += pad(widest) + 8 * widest + 4 * max(widest, head_rows)
    if points:
        inv = w.array(f"c{k}_heads_inv", points[1][0], f"cell {k}: 1 / the heads' output scales (unfused)")
        sc = w.array(f"c{k}_heads_scale", points[1][1], f"cell {k}: the heads' output scales (unfused)")
        target = "heads" if qc.heads is not None else "pre"
        stages.append(f"/* cell {k}: each head output rounded to int8 at its scale (no operator fusing) */\n"
                      f"static void {name}_c{k}_round_heads(float *s)\n{{\n    int j;\n"
                      f"    for (j = 0; j < {head_rows}; ++j) s[j] = {name}_clamp(rintf(s[j] * {inv}[j]), -127.0f, "
                      f"127.0f) * {sc}[j];\n}}\n")
    stages.append(_update(name, k, h, qc.gate_folded))
    target = "heads" if qc.heads is not None else "pre"
    step = (f"    {{ /* cell {k} */\n        float pre[{first_width}];\n"
            + (f"        float heads[{head_rows}];\n" if qc.heads is not None else "")
            + f"        uint8_t yq[{pad(h)}]" + (" = {0}" if pad(h) > h else "") + ";\n"
            + (f"        uint8_t below[{pad(folded.cells[k - 1].h)}]" + (" = {0}" if pad(folded.cells[k - 1].h)
                                                                        > folded.cells[k - 1].h else "") + ";\n"
               if k else "")
            + f"        {name}_quantize_y(state->y{k}, {h}, yq);\n"
            + (f"        {_first_call(name, k, token_input, table)};\n" if k == 0 else
               f"        {name}_quantize_y(state->y{k - 1}, {folded.cells[k - 1].h}, below);\n")
            + f"        {name}_c{k}_first(yq{', below' if k else ''}, pre);\n"
            + (f"        {name}_c{k}_backbone(pre, heads);\n" if qc.heads is not None else "")
            + (f"        {name}_c{k}_round_heads({target});\n" if points else "")
            + f"        {name}_c{k}_update({target}, dt, state->y{k});\n    }}")
    return _Cell(stages, step, scratch)


def _product_lines(products: list[Product]) -> list[str]:
    """The header's account of how each product runs (dense or sparse, fp32 or int8)."""
    if not products:
        return []
    sparse = [p for p in products if p.form == "sparse"]
    lines = [f" * products: {len(products) - len(sparse)} dense, {len(sparse)} sparse (only the non-zeros, "
             "rows grouped by their count; --sparse auto takes it where it measured faster):"]
    return lines + [f" *   {c_comment(p.describe(), 120)}" for p in products]


def _header(name, up, ckpt, token_input, n_inputs, n_outputs, per_step, dt_input, state_fields,
            flash, state_bytes, scratch, integer, ode: str | None = None, vocab: int | None = None,
            unfolded: bool = False, row_align: int = 1, raw_io: RawIO | None = None,
            products: list[Product] | None = None) -> str:
    # Nothing of the record reaches this comment but through c_comment (and the record's
    # structure was checked at load): provenance is the checkpoint's sha256 and fixed words.
    arch = ckpt.arch
    steps = [c_comment(h.get("command", "?"), 20) for h in ckpt.record.get("history") or []]
    history = (" -> ".join(steps[:12]) + (f" -> ... ({len(steps)} steps)" if len(steps) > 12 else "")
               if steps else "not recorded")
    codecs = sorted({c_comment(spec["codec"], 20) for spec in ckpt.encodings.values()})
    if integer is not None:
        scheme = "dynamic" if integer.get("dynamic") else "static"
        encoded = (f"{', '.join(codecs)} in the checkpoint; the {scheme} int8 engine's step: the stored integers "
                   "(int4 widened to int8), int32 sums, one rescale per product"
                   + ("" if integer.get("fuse", True) else ", every Linear output rounded to int8 (unfused)")
                   + f"; integer rows zero-padded to multiples of {int(row_align)} bytes"
                   + "; the readout in float32")
    else:
        encoded = (f"{', '.join(codecs)}-encoded tensors in the checkpoint, emitted here as dense float32 "
                   "(decoded exactly where the codec is exact)" if codecs else "none (float32)")
    size_line = c_comment(ode, 160) if ode else (
        f"{c_comment(arch.get('hidden'), 12)} hidden" + (f", backbone {c_comment(arch.get('backbone_widths'), 60)}"
                                                          if arch.get("backbone_widths") else ""))
    step_input = ("a token id in [0, " + f"{up}_VOCAB)" if token_input else f"{up}_N_INPUTS floats")
    sha = getattr(ckpt, "sha256", None)
    checkpoint = (f"sha256 {sha}" if isinstance(sha, str) and re.fullmatch("[0-9a-f]{64}", sha)
                  else "built in memory, not read from a file")
    lines = [
        f"/* {name}.h: a {c_comment(arch.get('name'), 20)} ({size_line}) as dependency-free C99, generated by cfctool.",
        f" * checkpoint: {checkpoint}",
        f" * task: {c_comment(ckpt.task.get('dataset'), 30)}, {c_comment(ckpt.task['output']['kind'], 20)}"
        + (", an output per step" if per_step else ", one output per sequence"),
        f" * made by: {history}",
        f" * encodings: {encoded}",
        *_product_lines(products or []),
        *([" * inputs: " + c_comment(raw_io.describe(), 400)] if raw_io is not None else []),
        *([" * tokens: " + ("the embedding's rows, projected at every step (--token-table embedding: small, slower)"
                             if unfolded else "one float32 row per token, the embedding folded into the first product "
                             "(--token-table folded: a lookup, large)")] if token_input else []),
        " *",
        f" * Usage: {name}_state s; {name}_reset(&s); then {name}_step(&s, input, dt) per step, where input is",
        f" * {step_input}" + (" and dt the step's elapsed time;" if dt_input else
                              " and dt is ignored (the solver's step is the model's own);" if ode else
                              " and dt is ignored (the gate is folded for the regular dt = 1);"),
        f" * {name}_output(&s, logits) reads the {up}_N_OUTPUTS logits"
        + (" after every step." if per_step else " after the last step."),
        f" * {name}_run(&s, inputs, dts or NULL, length, logits) does a whole sequence"
        + (" (length x outputs logits)" if per_step else "")
        + f", continuing from the state it is given: {name}_reset first for a new sequence.",
        " * No heap, no mutable globals; needs <math.h> (link with -lm) and <stdint.h>.",
        " */",
    ]
    macros = [f"#define {up}_N_INPUTS {n_inputs}", f"#define {up}_N_OUTPUTS {n_outputs}",
              f"#define {up}_PER_STEP {int(per_step)}", f"#define {up}_TOKEN_INPUT {int(token_input)}",
              f"#define {up}_DT_INPUT {int(dt_input)}"]
    if token_input:
        macros.append(f"#define {up}_VOCAB {vocab}")
    macros += [f"#define {up}_FLASH_BYTES {flash} /* the weights */",
               f"#define {up}_STATE_BYTES {state_bytes} /* {name}_state */",
               f"#define {up}_SCRATCH_BYTES {scratch} /* the largest stage's stack arrays */"]
    step_arg = "int32_t token" if token_input else "const float *input"
    inputs_t = "const int32_t *inputs" if token_input else "const float *inputs"
    return ("\n".join(lines) + f"\n#ifndef {up}_H\n#define {up}_H\n\n#include <stdint.h>\n\n" + "\n".join(macros)
            + "\n\ntypedef struct {\n" + "\n".join(state_fields) + f"\n}} {name}_state;\n\n"
            f"void {name}_reset({name}_state *state);\n"
            f"void {name}_step({name}_state *state, {step_arg}, float dt);\n"
            f"void {name}_output(const {name}_state *state, float *logits);\n"
            f"void {name}_run({name}_state *state, {inputs_t}, const float *dts, int32_t length, float *logits);\n"
            f"\n#endif /* {up}_H */\n")
