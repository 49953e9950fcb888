"""A folded CfC as dependency-free C99: the edge engine's source.

The generated step computes what the folded engine's step computes (`models.inference`),
one stage per function, on one sequence at a time (batch 1), with no heap, no mutable
globals and nothing beyond <math.h> and <stdint.h>. For a model NAME:

- `NAME.h`: sizes as macros (`NAME_FLASH_BYTES`, `NAME_STATE_BYTES`, `NAME_SCRATCH_BYTES`),
  the state struct, `NAME_reset`, `NAME_step`, `NAME_output`, `NAME_run`;
- `NAME.c`: the folded weights as named `static const` arrays and the stages.

The same checkpoint always gives the same bytes (weights printed with 9 significant
digits, which float32 reads back exactly).

The generator is a set of typed stages with one short emitter each: `c_writer` (the arrays,
each weight product dense or sparse), `c_products` (the product forms and their choice),
`c_stages` (how a token enters, the activation, the gate update), `c_int8` (the integer
cell's stages); this module assembles them into NAME_step, the readout and the header, and
writes the ODE blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from cfctool.checkpoint import Checkpoint, check_finite
from cfctool.configs.base import literal_choices
from cfctool.configs.commands import ExportConfig
from cfctool.data.raw_io import RawIO
from cfctool.engines.c_int8 import input_post, int8_cell
from cfctool.engines.c_products import SPARSE_CHOICES, TILE, Product
from cfctool.engines.c_stages import activation, embedding_input, first_call, sparse_rows, table_input, update
from cfctool.engines.c_writer import Cell, Writer, literal
from cfctool.errors import ConfigError
from cfctool.escape import C_NAME_LIMIT, c_comment, c_identifier, is_c_identifier, terminal
from cfctool.models import inference, ode_inference

# how token ids enter: "folded" = one float row per token of the first product's input half
# (fastest: a lookup), "embedding" = the embedding rows (int8 where stored so, only the
# non-zeros of a pruned one) projected at every step (smallest: for flash-limited parts),
# "auto" = embedding for an embedding at least half zeros (its folded table would be dense)
TOKEN_TABLES = literal_choices(ExportConfig)["token_table"]  # auto, folded, embedding: export --token-table
# integer rows (and the byte vectors they multiply) are zero-padded to a multiple of this: a
# dot product of whole vector registers, with no scalar tail and no reads past a row
ROW_ALIGN = 16


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
        raise ConfigError(
            f"--name {terminal(text, 60)!r} is not a C identifier of at most {C_NAME_LIMIT} "
            f"characters (letters, digits, underscores; not starting with a digit or an "
            f"underscore); for example --name {c_identifier(text)}"
        )
    return text


def model_name(ckpt: Checkpoint) -> str:
    """The C name of a checkpoint's model: its file name, else its architecture (read from stdin)."""
    source = getattr(ckpt, "source", None)
    return c_name(Path(source).stem if source and source != "-" else ckpt.arch["name"])


def supports(model) -> bool:
    return inference.supports(model) or ode_inference.supports(model)


def _ode(ckpt: Checkpoint, model, name: str, raw_io: RawIO | None, sparse: str) -> CSource:
    """An Euler sequence ODE block (`ode-rnn`, its `svd`/`qdeim`/`pod-deim` reductions) as the
    folded step of `models.ode_inference`: p = M z + b (or through a rank-K factor, or in the
    latent coordinates of an SVD block), then z + dt (Z u - N 1) + 2 dt N sigmoid(2p)."""
    f = ode_inference.FoldedODE(model)
    if model.embedding is not None:
        raise ConfigError("no C form for an ODE block over token inputs")
    w = Writer(name, sparse=sparse)
    n_state, n_inputs, width = int(f.state_size), int(ckpt.task["input"]["size"]), f.bias.numel()
    nonlinearity, rank = _ode_nonlinearity(w, f)
    stages = nonlinearity + "\n" + _ode_update(w, f, raw_io)
    body = (
        f"void {name}_step({name}_state *state, const float *input, float dt)\n{{\n"
        f"    float u[{n_inputs + 1}], s[{width}];\n    int j;\n    (void)dt; /* the solver's step is the model's own */\n"
        f"    for (j = 0; j < {n_inputs}; ++j) u[j] = input[j];\n    u[{n_inputs}] = 1.0f;\n"
        f"    {name}_nonlinearity(state->z, s);\n    {name}_update(state->z, u, s);\n}}\n\n"
        f"void {name}_output(const {name}_state *state, float *logits)\n{{\n{_ode_output(w, f, model, raw_io)}\n}}\n\n"
        f"void {name}_reset({name}_state *state)\n{{\n    int j;\n"
        f"    for (j = 0; j < {n_state}; ++j) state->z[j] = 0.0f; /* x(0) = 0 */\n}}\n\n"
        + _run_function(name, False, f.per_step)
    )
    source = assemble(name, w, stages + "\n" + body)
    state_bytes = 4 * n_state
    scratch = 4 * (n_inputs + 1 + 2 * width + n_state + rank) + _product_scratch(name, source)
    arch = ckpt.arch
    kind = arch["name"] + (f", {arch.get('method')} to {arch.get('dim')}" if arch.get("method") else "")
    state_fields = [
        f"    float z[{n_state}]; /* the ODE state" + (" in latent coordinates [R z, H z]" if f.latent else "") + " */"
    ]
    n_outputs = int(model.head.weight.shape[0])
    header = _header(
        name,
        name.upper(),
        ckpt,
        False,
        n_inputs,
        n_outputs,
        f.per_step,
        False,
        state_fields,
        w.flash,
        state_bytes,
        scratch,
        None,
        ode=f"{kind}, {n_state} states, Euler with dt {f.dt:g}",
        raw_io=raw_io,
        products=w.products,
    )
    return CSource(
        name,
        header,
        source,
        w.flash,
        state_bytes,
        scratch,
        False,
        n_inputs,
        n_outputs,
        f.per_step,
        False,
        tuple(w.products),
    )


def _ode_nonlinearity(w: Writer, f) -> tuple[str, int]:
    """NAME_nonlinearity: s = sigmoid(2p), p = M z + b (through the rank-K factor, or from the
    latent state); and K (0 without a factor)."""
    width = f.bias.numel()  # the nonlinearity's width (m points, or every unit)
    rank = f.first.shape[1] if f.second is not None and not f.latent else 0
    lines = [f"    float r[{rank}];" if rank else "", "    int j;"]
    if f.latent:
        lines.append(
            f"    for (j = 0; j < {width}; ++j) p[j] = 0.0f;\n    "
            + w.matvec("p_w", f.second, "the latent state's rank part to the units (2 folded in), transposed", "z", "p")
        )
    elif not rank:
        lines.append(
            f"    for (j = 0; j < {width}; ++j) p[j] = 0.0f;\n    "
            + w.matvec("p_w", f.first, "M^T (2 folded in)", "z", "p")
        )
    else:
        lines.append(
            f"    for (j = 0; j < {rank}; ++j) r[j] = 0.0f;\n    "
            + w.matvec("r_w", f.first, f"the rank-{rank} factor R^T (zero-padded to a multiple of 8)", "z", "r")
            + f"\n    for (j = 0; j < {width}; ++j) p[j] = 0.0f;\n    "
            + w.matvec("p_w", f.second, "L^T (2 folded in)", "r", "p")
        )
    bias = w.array("b", f.bias, "2 b")
    lines.append(f"    for (j = 0; j < {width}; ++j) p[j] = {bias}[j] + p[j];\n    {w.name}_sigmoids(p, {width});")
    return (
        f"/* s = sigmoid(2p), p = M z + b: tanh(p) = 2 s - 1 */\n"
        f"static void {w.name}_nonlinearity(const float *z, float *p)\n{{\n"
        + "\n".join(line for line in lines if line)
        + "\n}\n"
    ), rank


def _ode_update(w: Writer, f, raw_io: RawIO | None) -> str:
    """NAME_update: one Euler step, z' = z + dt (Z u - N 1) + 2 dt N s (raw features: the
    standardisation folded into [u, 1]'s rows)."""
    n_state = int(f.state_size)
    weights = f.input_w
    if raw_io is not None:
        folded_w, folded_b = raw_io.fold_first(weights[:-1], weights[-1])
        weights = torch.cat([folded_w, folded_b.unsqueeze(0)])
    upd = [
        f"    float c[{n_state}];\n    int j;",
        f"    for (j = 0; j < {n_state}; ++j) c[j] = 0.0f;",
        "    "
        + w.matvec(
            "input_w", weights, "[u, 1] -> dt (Z u - N 1)" + (" in latent coordinates" if f.latent else ""), "u", "c"
        ),
        f"    for (j = 0; j < {n_state}; ++j) z[j] = z[j] + c[j];",
    ]
    if f.n_t is None:
        upd.append(f"    for (j = 0; j < {n_state}; ++j) z[j] = z[j] + {literal(2.0 * f.dt)} * s[j];")
    else:
        upd.append(
            f"    for (j = 0; j < {n_state}; ++j) c[j] = 0.0f;\n    "
            + w.matvec("n_w", f.n_t, "2 dt N^T" + (" P^T (latent)" if f.latent else ""), "s", "c")
            + "\n"
            f"    for (j = 0; j < {n_state}; ++j) z[j] = z[j] + c[j];"
        )
    return (
        f"/* z' = z + dt (Z u - N 1) + 2 dt N s: one Euler step */\n"
        f"static void {w.name}_update(float *z, const float *u, const float *s)\n{{\n" + "\n".join(upd) + "\n}\n"
    )


def _ode_output(w: Writer, f, model, raw_io: RawIO | None) -> str:
    """NAME_output's body: the readout of the state (in latent coordinates: a slice of it)."""
    up, n_state = w.name.upper(), int(f.state_size)
    if f.latent:
        hb = w.array("readout_b", f.head_bias, "the head's bias (its product is in the latent state)")
        out = (
            f"    int i;\n    for (i = 0; i < {up}_N_OUTPUTS; ++i) logits[i] = state->z[{f.head_columns.start} + i] "
            f"+ {hb}[i];"
        )
    else:
        hw = w.array("readout_w", model.head.weight, "readout (outputs x state)")
        hb = w.array("readout_b", model.head.bias, "readout bias")
        out = (
            f"    int i, j;\n    for (i = 0; i < {up}_N_OUTPUTS; ++i) {{\n        float acc = 0.0f;\n"
            f"        for (j = 0; j < {n_state}; ++j) acc += {hw}[i * {n_state} + j] * state->z[j];\n"
            f"        logits[i] = acc + {hb}[i];\n    }}"
        )
    return out + "\n" + _in_units(w, up, raw_io).rstrip("\n")


def assemble(name: str, w: Writer, code: str) -> str:
    """NAME.c: the arrays, the products' own functions, the helpers `code` calls, then `code`."""
    up = name.upper()
    vnni = (
        (
            f"/* AVX-512 VNNI (x86): the integer products as byte dot products of 16 outputs at a time */\n"
            f"#if defined(__AVX512VNNI__) && defined(__AVX512F__)\n#include <immintrin.h>\n#include <string.h>\n"
            f"#define {up}_VNNI 1\n#else\n#define {up}_VNNI 0\n#endif\n\n"
        )
        if w.vnni
        else ""
    )
    return (
        f"/* {name}.c: generated by cfctool from the checkpoint described in {name}.h. */\n"
        f'#include <math.h>\n#include <stdint.h>\n#include "{name}.h"\n\n'
        + vnni
        + "\n".join(w.arrays)
        + "\n"
        + "".join(f + "\n" for f in w.functions)
        + _helpers(name, code, w.vnni)
        + "\n"
        + code
    )


def _product_scratch(name: str, source: str) -> int:
    """The dense float product's block of sums, on the stack while it runs."""
    return 4 * TILE if f"{name}_matvec(" in source else 0


def _in_units(w: Writer, up: str, raw_io: RawIO | None) -> str:
    """NAME_output's last lines for a regression or forecast on raw data: the outputs in the
    data's units (the recorded target mean and std); nothing otherwise."""
    if raw_io is None or raw_io.out_scale is None:
        return ""
    scale = w.array("out_scale", raw_io.out_scale, "the recorded target std: outputs in the data's units")
    shift = w.array("out_shift", raw_io.out_shift, "the recorded target mean")
    return f"    for (i = 0; i < {up}_N_OUTPUTS; ++i) logits[i] = logits[i] * {scale}[i] + {shift}[i];\n"


def _run_function(name: str, token_input: bool, per_step: bool) -> str:
    """NAME_run: a whole sequence through NAME_step, the logits after every step or the last."""
    up = name.upper()
    inputs_t = "const int32_t *inputs" if token_input else "const float *inputs"
    advance = "inputs[t]" if token_input else f"inputs + (int32_t)t * {up}_N_INPUTS"
    return (
        f"void {name}_run({name}_state *state, {inputs_t}, const float *dts, int32_t length, float *logits)\n"
        f"{{\n    int32_t t;\n    for (t = 0; t < length; ++t) {{\n"
        f"        {name}_step(state, {advance}, dts ? dts[t] : 1.0f);\n"
        + (f"        {name}_output(state, logits + (int32_t)t * {up}_N_OUTPUTS);\n" if per_step else "")
        + "    }\n"
        + ("" if per_step else f"    {name}_output(state, logits);\n")
        + "}\n"
    )


def _helpers(name: str, code: str, vnni: bool = False) -> str:
    """The shared functions `code` calls (only those: an unused static function is a warning);
    `vnni`: the integer dot product also in its AVX-512 VNNI form, chosen by the compiler."""
    helpers = {
        # the argument clamped to +-88: expf then stays finite, which -ffast-math assumes (an
        # infinity there made NaN of a large time gate); sigmoid(88) is 1 in float32 anyway
        "sigmoids": (
            f"/* v[i] = 1 / (1 + exp(-v[i])) */\n"
            f"static void {name}_sigmoids(float *v, int n)\n{{\n"
            f"    int i;\n    for (i = 0; i < n; ++i) {{\n"
            f"        const float a = v[i] < -88.0f ? -88.0f : (v[i] > 88.0f ? 88.0f : v[i]);\n"
            f"        v[i] = 1.0f / (1.0f + expf(-a));\n    }}\n}}\n"
        ),
        "matvec": (
            f"/* out[j] += sum_i x[i] W[i][j] for W (n x m) stored in blocks of {TILE} outputs, each block's n\n"
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
            f"            for (j = 0; j < r; ++j) out[b + j] += xi * row[j];\n        }}\n    }}\n}}\n"
        ),
        # one dot product per output over a row of the stored (out x in) integers, n a multiple of
        # ROW_ALIGN: compilers turn it into whole-register multiply-adds on bytes (AVX-512 VNNI's
        # unsigned x signed, NEON's sdot after widening; SMLAD pairs on a Cortex-M4)
        "dot_u8": (
            f"/* acc[j] = sum_i x[i] * q[j * n + i]: uint8 x int8 -> int32, q is (m x n), row-major */\n"
            f"static void {name}_dot_u8(const uint8_t *x, int n, const int8_t *q, int m, int32_t *acc)\n"
            f"{{\n    int i, j;\n    for (j = 0; j < m; ++j) {{\n        const int8_t *row = q + "
            f"(int32_t)j * n;\n        int32_t s = 0;\n"
            f"        for (i = 0; i < n; ++i) s += (int32_t)x[i] * (int32_t)row[i];\n"
            f"        acc[j] = s;\n    }}\n}}\n"
        ),
        "quantize_y": (
            f"/* y in [0, 1] -> round(127 y), half up */\n"
            f"static void {name}_quantize_y(const float *y, int n, uint8_t *q)\n{{\n"
            f"    int i;\n    for (i = 0; i < n; ++i) q[i] = (uint8_t)(0.5f + 127.0f * y[i]);\n}}\n"
        ),
        "clamp": (
            f"static float {name}_clamp(float v, float lo, float hi)\n{{\n"
            f"    return v < lo ? lo : (v > hi ? hi : v);\n}}\n"
        ),
    }
    if vnni:
        helpers["dot_u8"] = _vnni_dot_u8(name, helpers["dot_u8"])
    return "\n".join(text for key, text in helpers.items() if f"{name}_{key}(" in code)


def _vnni_dot_u8(name: str, portable: str) -> str:
    """The integer dot product for AVX-512 VNNI (blocks of 16 outputs x 4 inputs, four blocks at a
    time: four independent chains of sums), `portable` for any other target."""
    up = name.upper()
    return (
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
        f"#else\n{portable}#endif\n"
    )


def generate(
    ckpt: Checkpoint,
    model,
    name: str,
    *,
    dt_input: bool,
    integer: dict | None = None,
    row_align: int = ROW_ALIGN,
    token_table: str = "auto",
    raw_io: RawIO | None = None,
    sparse: str = "auto",
) -> CSource:
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
    _check_c_form(ckpt, model)
    name = c_name(name)
    model = model.eval()
    folded = _folded(ckpt, model, None if dt_input else 1.0, integer)
    token_input = ckpt.task["input"]["kind"] == "tokens"
    if raw_io is not None and not token_input:  # raw features in: the standardisation in the first product
        first = folded.cells[0]
        first.w_in_t, first.b1 = raw_io.fold_first(first.w_in_t, first.b1)
    if sparse not in SPARSE_CHOICES:
        raise ConfigError(f"unknown sparse setting '{sparse}': choose one of {', '.join(SPARSE_CHOICES)}")
    w = Writer(name, row_align if integer is not None else 1, sparse)
    if token_table not in TOKEN_TABLES:
        raise ConfigError(f"unknown token table '{token_table}': choose one of {', '.join(TOKEN_TABLES)}")
    if token_table == "auto":  # a pruned embedding folds into a dense table: keep its rows, sparse
        token_table = "embedding" if token_input and sparse_rows(model.embedding.weight, sparse) else "folded"
    unfold = (
        token_table == "embedding" and folded.table is not None and not model.rnn.cells[0].input_projected
    )  # a projected input's table is the embedding itself
    cells = _cells(w, ckpt, model, folded, token_input, unfold, integer is not None)
    code = (
        "\n".join("\n".join(c.stages) for c in cells)
        + "\n"
        + "\n".join(_cfc_functions(w, folded, cells, token_input, raw_io))
    )
    source = assemble(name, w, code)
    n_inputs, n_outputs, per_step = (
        1 if token_input else int(ckpt.task["input"]["size"]),
        int(folded.head_b.numel()),
        folded.per_step,
    )
    state_bytes = 4 * sum(c.h for c in folded.cells)
    scratch = max(c.scratch for c in cells) + _product_scratch(name, source)
    state_fields = [
        f"    float y{k}[{c.h}]; /* cell {k}: y = (x / a + 1) / 2, x its state */" for k, c in enumerate(folded.cells)
    ]
    header = _header(
        name,
        name.upper(),
        ckpt,
        token_input,
        n_inputs,
        n_outputs,
        per_step,
        dt_input,
        state_fields,
        w.flash,
        state_bytes,
        scratch,
        integer,
        vocab=model.embedding.num_embeddings if token_input else None,
        unfolded=unfold,
        row_align=w.align,
        raw_io=None if token_input else raw_io,
        products=w.products,
    )
    return CSource(
        name,
        header,
        source,
        w.flash,
        state_bytes,
        scratch,
        token_input,
        n_inputs,
        n_outputs,
        per_step,
        dt_input,
        tuple(w.products),
        token_table=("embedding" if unfold else "folded") if token_input else None,
    )


def _check_c_form(ckpt: Checkpoint, model) -> None:
    """Refuse, naming what it is, a CfC the C engine cannot run."""
    if not inference.supports(model):
        raise ConfigError(
            f"no C form for a {ckpt.arch.get('name')} checkpoint"
            + (f" of mode '{ckpt.arch.get('mode')}'" if ckpt.arch.get("mode") not in (None, "default") else "")
            + (" with mixed memory" if ckpt.arch.get("mixed_memory") else "")
            + "; the C engine runs 'default'-mode cfc, cfc-deep and cfc-ncp models and Euler ODE-RNNs "
            "with their reductions"
        )


def _folded(ckpt: Checkpoint, model, dt: float | None, integer: dict | None):
    """The engine whose step the C writes: folded-int8 (simulated, the stored integers) or folded."""
    if integer is None:
        return inference.Folded(model, dt)
    from cfctool.models.quantized import QuantFolded, float_layers

    if float_layers(ckpt):
        raise ConfigError(
            f"no C form for a quantized model with products kept in float32 ("
            f"{', '.join(float_layers(ckpt))}): the C engine's integer step is all-integer; "
            "export the fp32 original, or quantize without --keep-float"
        )
    return QuantFolded(
        model,
        dt,
        ckpt,
        integer.get("act_scales") or {},
        bool(integer.get("dynamic")),
        simulate=True,
        fuse=integer.get("fuse", True),
    )


def _cells(w: Writer, ckpt: Checkpoint, model, folded, token_input: bool, unfold: bool, integer: bool) -> list[Cell]:
    """Each cell's stages and block in NAME_step; with `unfold`, cell 0's token enters through the
    embedding's rows (a sparse embedding's non-zeros pick input columns)."""
    table = None if unfold else folded.table
    direct = unfold and sparse_rows(model.embedding.weight, w.sparse)
    emit = int8_cell if integer else _float_cell
    cells = [emit(w, w.name, k, folded, token_input, table, direct) for k in range(len(folded.cells))]
    if unfold:
        token_stage, token_scratch = embedding_input(
            w,
            w.name,
            ckpt,
            model.embedding.weight.detach(),
            folded.cells[0] if direct else None,
            input_post(folded) if integer and direct else None,
        )
        cells[0].stages.append(token_stage)
        cells[0].scratch += token_scratch
    return cells


def _cfc_functions(w: Writer, folded, cells: list[Cell], token_input: bool, raw_io: RawIO | None) -> list[str]:
    """NAME_step (the cells' blocks), NAME_output (the readout, in y-space), NAME_reset, NAME_run."""
    name, up = w.name, w.name.upper()
    head_w = w.array("readout_w", folded.head_w, "readout, in y-space (outputs x state)")
    head_b = w.array("readout_b", folded.head_b, "readout bias")
    step_arg = "int32_t token" if token_input else "const float *input"
    last, out_dim = len(folded.cells) - 1, folded.cells[-1].h
    return [
        f"void {name}_step({name}_state *state, {step_arg}, float dt)\n{{\n"
        + "\n".join(c.step for c in cells)
        + "\n}\n",
        f"void {name}_output(const {name}_state *state, float *logits)\n{{\n"
        f"    int i, j;\n    for (i = 0; i < {up}_N_OUTPUTS; ++i) {{\n"
        f"        float acc = {head_b}[i];\n"
        f"        for (j = 0; j < {out_dim}; ++j) acc += {head_w}[i * {out_dim} + j] * state->y{last}[j];\n"
        f"        logits[i] = acc;\n    }}\n{_in_units(w, up, raw_io)}}}\n",
        f"void {name}_reset({name}_state *state)\n{{\n    int j;\n"
        + "".join(
            f"    for (j = 0; j < {c.h}; ++j) state->y{k}[j] = 0.5f; /* x = 0 */\n" for k, c in enumerate(folded.cells)
        )
        + "}\n",
        _run_function(name, token_input, folded.per_step),
    ]


def _float_cell(w: Writer, name: str, k: int, folded, token_input: bool, table, direct: bool = False) -> Cell:
    cell = folded.cells[k]
    first_width = cell.b1.numel()
    if k == 0 and direct:  # c0_token does the whole input product (_token_columns)
        first = ""
    elif k == 0 and table is not None:
        first = table_input(
            w, name, table, first_width, "token -> first product's input half plus bias (the embedding folded in)"
        )
    else:
        b1 = w.array(f"c{k}_b1", cell.b1, f"cell {k}: bias of the first product")
        arg = "const float *input" if k == 0 else f"const float *below /* cell {k - 1}'s new y */"
        src = "input" if k == 0 else "below"
        first = (
            f"static void {name}_c{k}_input({arg}, float *pre)\n{{\n"
            f"    int j;\n    for (j = 0; j < {first_width}; ++j) pre[j] = {b1}[j];\n    "
            + w.matvec(
                f"c{k}_w_in",
                cell.w_in_t,
                f"cell {k}: input half of the first product, transposed (in x out)",
                src,
                "pre",
            )
            + "\n}\n"
        )
    state_product = w.matvec(
        f"c{k}_w_state",
        cell.w_state_t,
        f"cell {k}: state half of the first product, in y-space, transposed (state x out)",
        f"state->y{k}",
        "pre",
    )
    stages = [first] if first else []
    head_rows = 3 * cell.h if cell.gate_folded else 4 * cell.h
    scratch = 4 * first_width
    if cell.heads is not None:
        stages.append(activation(name, k, cell.act))
        layers = [f"    for (j = 0; j < {first_width}; ++j) a[j] = {name}_c{k}_act(pre[j]);"]
        widest, cur, buffers = first_width, 0, ("a", "b")
        for i, (w_t, b) in enumerate(cell.rest):
            bl = w.array(f"c{k}_layer{i + 1}_b", b, f"cell {k}: backbone layer {i + 1} bias")
            src, dst, out = buffers[cur], buffers[1 - cur], b.numel()
            layers.append(
                f"    for (j = 0; j < {out}; ++j) {dst}[j] = {bl}[j];\n    "
                + w.matvec(f"c{k}_layer{i + 1}_w", w_t, f"cell {k}: backbone layer {i + 1}, transposed", src, dst)
                + "\n"
                f"    for (j = 0; j < {out}; ++j) {dst}[j] = {name}_c{k}_act({dst}[j]);"
            )
            cur, widest = 1 - cur, max(widest, out)
        if cell.basis is not None:
            src, dst, out = buffers[cur], buffers[1 - cur], cell.basis.shape[1]
            layers.append(
                f"    for (j = 0; j < {out}; ++j) {dst}[j] = 0.0f;\n    "
                + w.matvec(
                    f"c{k}_basis",
                    cell.basis,
                    f"cell {k}: the heads' shared rank-{cell.basis.shape[1]} map (SVD reduction), transposed",
                    src,
                    dst,
                )
            )
            cur, widest = 1 - cur, max(widest, out)
        hb = w.array(f"c{k}_heads_b", cell.heads[1], f"cell {k}: heads bias")
        layers.append(
            f"    for (j = 0; j < {head_rows}; ++j) heads[j] = {hb}[j];\n    "
            + w.matvec(
                f"c{k}_heads_w",
                cell.heads[0],
                f"cell {k}: heads [2c ff1; 2c ff2; "
                + ("gate (dt = 1 folded in)" if cell.gate_folded else "time_a; time_b")
                + "], transposed",
                buffers[cur],
                "heads",
            )
        )
        second = f", b[{widest}]" if cell.rest or cell.basis is not None else ""
        stages.append(
            f"/* cell {k}: backbone activations, then the heads' pre-activations */\n"
            f"static void {name}_c{k}_backbone(float *pre, float *heads)\n{{\n"
            f"    float a[{widest}]{second};\n    int j;\n" + "\n".join(layers) + "\n}\n"
        )
        scratch = 4 * (2 * widest + head_rows + first_width)
    stages.append(update(name, k, cell.h, cell.gate_folded))
    step = (
        f"    {{ /* cell {k} */\n        float pre[{first_width}];\n"
        + (f"        float heads[{head_rows}];\n" if cell.heads is not None else "")
        + f"        {first_call(name, k, token_input, table)};\n"
        f"        {state_product}\n"
        + (
            f"        {name}_c{k}_backbone(pre, heads);\n        {name}_c{k}_update(heads, dt, state->y{k});\n"
            if cell.heads is not None
            else f"        {name}_c{k}_update(pre, dt, state->y{k});\n"
        )
        + "    }"
    )
    return Cell(stages, step, scratch)


def _product_lines(products: list[Product]) -> list[str]:
    """The header's account of how each product runs (dense or sparse, fp32 or int8)."""
    if not products:
        return []
    sparse = [p for p in products if p.form == "sparse"]
    lines = [
        f" * products: {len(products) - len(sparse)} dense, {len(sparse)} sparse (only the non-zeros, "
        "rows grouped by their count; --sparse auto takes it where it measured faster):"
    ]
    return lines + [f" *   {c_comment(p.describe(), 120)}" for p in products]


def _encodings_line(ckpt: Checkpoint, integer: dict | None, row_align: int) -> str:
    """The header's encodings line: the checkpoint's codecs and what the C does with them."""
    codecs = sorted({c_comment(spec["codec"], 20) for spec in ckpt.encodings.values()})
    if integer is None:
        return (
            f"{', '.join(codecs)}-encoded tensors in the checkpoint, emitted here as dense float32 "
            "(decoded exactly where the codec is exact)"
            if codecs
            else "none (float32)"
        )
    scheme = "dynamic" if integer.get("dynamic") else "static"
    return (
        f"{', '.join(codecs)} in the checkpoint; the {scheme} int8 engine's step: the stored integers "
        "(int4 widened to int8), int32 sums, one rescale per product"
        + ("" if integer.get("fuse", True) else ", every Linear output rounded to int8 (unfused)")
        + f"; integer rows zero-padded to multiples of {int(row_align)} bytes"
        + "; the readout in float32"
    )


def _header(
    name,
    up,
    ckpt,
    token_input,
    n_inputs,
    n_outputs,
    per_step,
    dt_input,
    state_fields,
    flash,
    state_bytes,
    scratch,
    integer,
    ode: str | None = None,
    vocab: int | None = None,
    unfolded: bool = False,
    row_align: int = 1,
    raw_io: RawIO | None = None,
    products: list[Product] | None = None,
) -> str:
    # Nothing of the record reaches this comment but through c_comment (and the record's
    # structure was checked at load): provenance is the checkpoint's sha256 and fixed words.
    arch = ckpt.arch
    steps = [c_comment(h.get("command", "?"), 20) for h in ckpt.record.get("history") or []]
    history = (
        " -> ".join(steps[:12]) + (f" -> ... ({len(steps)} steps)" if len(steps) > 12 else "")
        if steps
        else "not recorded"
    )
    encoded = _encodings_line(ckpt, integer, row_align)
    size_line = (
        c_comment(ode, 160)
        if ode
        else (
            f"{c_comment(arch.get('hidden'), 12)} hidden"
            + (f", backbone {c_comment(arch.get('backbone_widths'), 60)}" if arch.get("backbone_widths") else "")
        )
    )
    step_input = "a token id in [0, " + f"{up}_VOCAB)" if token_input else f"{up}_N_INPUTS floats"
    sha = getattr(ckpt, "sha256", None)
    checkpoint = (
        f"sha256 {sha}"
        if isinstance(sha, str) and re.fullmatch("[0-9a-f]{64}", sha)
        else "built in memory, not read from a file"
    )
    lines = [
        f"/* {name}.h: a {c_comment(arch.get('name'), 20)} ({size_line}) as dependency-free C99, generated by cfctool.",
        f" * checkpoint: {checkpoint}",
        f" * task: {c_comment(ckpt.task.get('dataset'), 30)}, {c_comment(ckpt.task['output']['kind'], 20)}"
        + (", an output per step" if per_step else ", one output per sequence"),
        f" * made by: {history}",
        f" * encodings: {encoded}",
        *_product_lines(products or []),
        *([" * inputs: " + c_comment(raw_io.describe(), 400)] if raw_io is not None else []),
        *(
            [
                " * tokens: "
                + (
                    "the embedding's rows, projected at every step (--token-table embedding: small, slower)"
                    if unfolded
                    else "one float32 row per token, the embedding folded into the first product "
                    "(--token-table folded: a lookup, large)"
                )
            ]
            if token_input
            else []
        ),
        " *",
        f" * Usage: {name}_state s; {name}_reset(&s); then {name}_step(&s, input, dt) per step, where input is",
        f" * {step_input}"
        + (
            " and dt the step's elapsed time;"
            if dt_input
            else " and dt is ignored (the solver's step is the model's own);"
            if ode
            else " and dt is ignored (the gate is folded for the regular dt = 1);"
        ),
        f" * {name}_output(&s, logits) reads the {up}_N_OUTPUTS logits"
        + (" after every step." if per_step else " after the last step."),
        f" * {name}_run(&s, inputs, dts or NULL, length, logits) does a whole sequence"
        + (" (length x outputs logits)" if per_step else "")
        + f", continuing from the state it is given: {name}_reset first for a new sequence.",
        " * No heap, no mutable globals; needs <math.h> (link with -lm) and <stdint.h>.",
        " */",
    ]
    macros = [
        f"#define {up}_N_INPUTS {n_inputs}",
        f"#define {up}_N_OUTPUTS {n_outputs}",
        f"#define {up}_PER_STEP {int(per_step)}",
        f"#define {up}_TOKEN_INPUT {int(token_input)}",
        f"#define {up}_DT_INPUT {int(dt_input)}",
    ]
    if token_input:
        macros.append(f"#define {up}_VOCAB {vocab}")
    macros += [
        f"#define {up}_FLASH_BYTES {flash} /* the weights */",
        f"#define {up}_STATE_BYTES {state_bytes} /* {name}_state */",
        f"#define {up}_SCRATCH_BYTES {scratch} /* the largest stage's stack arrays */",
    ]
    step_arg = "int32_t token" if token_input else "const float *input"
    inputs_t = "const int32_t *inputs" if token_input else "const float *inputs"
    return (
        "\n".join(lines)
        + f"\n#ifndef {up}_H\n#define {up}_H\n\n#include <stdint.h>\n\n"
        + "\n".join(macros)
        + "\n\ntypedef struct {\n"
        + "\n".join(state_fields)
        + f"\n}} {name}_state;\n\n"
        f"void {name}_reset({name}_state *state);\n"
        f"void {name}_step({name}_state *state, {step_arg}, float dt);\n"
        f"void {name}_output(const {name}_state *state, float *logits);\n"
        f"void {name}_run({name}_state *state, {inputs_t}, const float *dts, int32_t length, float *logits);\n"
        f"\n#endif /* {up}_H */\n"
    )
