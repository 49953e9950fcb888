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

import re
from dataclasses import dataclass

import torch

from cfctool.checkpoint import Checkpoint
from cfctool.errors import ConfigError
from cfctool.models import inference

# the backbone activations as C expressions of `v`; torch's definitions (nn.SiLU, nn.GELU's exact erf form)
_ACTIVATIONS = {
    "ReLU": "v > 0.0f ? v : 0.0f",
    "SiLU": "v / (1.0f + expf(-v))",
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

    def sizes(self) -> dict[str, int]:
        return {"flash_bytes": self.flash_bytes, "state_bytes": self.state_bytes, "scratch_bytes": self.scratch_bytes}


def c_name(text: str) -> str:
    """A C identifier from a file name: letters, digits and underscores, not starting with a digit."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", text).strip("_") or "model"
    return f"m_{name}" if name[0].isdigit() else name


def _floats(values: torch.Tensor) -> str:
    flat = values.detach().to(torch.float32).reshape(-1).tolist()
    lines = []
    for start in range(0, len(flat), 8):
        lines.append("    " + ", ".join(_literal(v) for v in flat[start:start + 8]) + ",")
    return "\n".join(lines)


def _literal(v: float) -> str:
    text = f"{v:.9g}"
    if "e" not in text and "." not in text and "n" not in text:
        text += ".0"
    return text + "f"


class _Writer:
    """Collects the weight arrays (their bytes are the flash size) and the code."""

    def __init__(self, name: str):
        self.name = name
        self.arrays: list[str] = []
        self.flash = 0

    def array(self, label: str, values: torch.Tensor, comment: str) -> str:
        ident = f"{self.name}_{label}"
        shape = " x ".join(str(s) for s in values.shape)
        self.arrays.append(f"/* {comment} ({shape}) */\nstatic const float {ident}[{values.numel()}] = {{\n"
                           f"{_floats(values)}\n}};\n")
        self.flash += 4 * values.numel()
        return ident


def supports(model) -> bool:
    return inference.supports(model)


def generate(ckpt: Checkpoint, model, name: str, *, dt_input: bool, provenance: str = "") -> CSource:
    """C99 for the model `ckpt` decodes to: `dt_input` False folds the gate for dt = 1 (regular
    sequences), True reads dt at every step. `provenance` goes into the header comment."""
    if not inference.supports(model):
        raise ConfigError(f"no C form for a {ckpt.arch.get('name')} checkpoint of mode "
                          f"'{ckpt.arch.get('mode', 'default')}'"
                          + (" with mixed memory" if ckpt.arch.get("mixed_memory") else "")
                          + "; the C engine runs 'default'-mode cfc, cfc-deep and cfc-ncp models")
    name = c_name(name)
    folded = inference.Folded(model.eval(), None if dt_input else 1.0)
    task = ckpt.task
    token_input = task["input"]["kind"] == "tokens"
    n_inputs = 1 if token_input else int(task["input"]["size"])
    n_outputs = int(folded.head_b.numel())
    per_step = folded.per_step
    w = _Writer(name)
    up = name.upper()

    body: list[str] = []
    state_fields, widths = [], []
    for k, cell in enumerate(folded.cells):
        state_fields.append(f"    float y{k}[{cell.h}]; /* cell {k}: y = (x / a + 1) / 2, x its state */")
        widths.append(cell.h)
    scratch = 0
    # --- weights and one function per stage
    cell_code = []
    for k, cell in enumerate(folded.cells):
        first_width = cell.b1.numel()
        if k == 0 and folded.table is not None:
            table = w.array("c0_table", folded.table, "token -> first product's input half plus bias "
                            "(the embedding folded in)")
            first = (f"static void {name}_c0_input(int32_t token, float *pre)\n{{\n"
                     f"    const float *row = {table} + (int32_t)token * {first_width};\n"
                     f"    int j;\n    for (j = 0; j < {first_width}; ++j) pre[j] = row[j];\n}}\n")
        else:
            w_in = w.array(f"c{k}_w_in", cell.w_in_t, f"cell {k}: input half of the first product, "
                           "transposed (in x out)")
            b1 = w.array(f"c{k}_b1", cell.b1, f"cell {k}: bias of the first product")
            arg = "const float *input" if k == 0 else f"const float *below /* cell {k - 1}'s new y */"
            src = "input" if k == 0 else "below"
            first = (f"static void {name}_c{k}_input({arg}, float *pre)\n{{\n"
                     f"    int j;\n    for (j = 0; j < {first_width}; ++j) pre[j] = {b1}[j];\n"
                     f"    {name}_matvec({src}, {cell.w_in_t.shape[0]}, {w_in}, {first_width}, pre);\n}}\n")
        w_state = w.array(f"c{k}_w_state", cell.w_state_t, f"cell {k}: state half of the first product, in "
                          "y-space, transposed (state x out)")
        stages = [first]
        widest = first_width
        head_rows = 3 * cell.h if cell.gate_folded else 4 * cell.h
        if cell.heads is not None:
            act = _ACTIVATIONS[type(cell.act).__name__]
            stages.append(f"static float {name}_c{k}_act(float v)\n{{\n    return {act};\n}}\n")
            layers = [f"    for (j = 0; j < {first_width}; ++j) a[j] = {name}_c{k}_act(pre[j]);"]
            width = first_width
            buffers = "a", "b"
            cur = 0
            for i, (w_t, b) in enumerate(cell.rest):
                wl = w.array(f"c{k}_layer{i + 1}_w", w_t, f"cell {k}: backbone layer {i + 1}, transposed")
                bl = w.array(f"c{k}_layer{i + 1}_b", b, f"cell {k}: backbone layer {i + 1} bias")
                src, dst = buffers[cur], buffers[1 - cur]
                out = b.numel()
                layers.append(f"    for (j = 0; j < {out}; ++j) {dst}[j] = {bl}[j];\n"
                              f"    {name}_matvec({src}, {width}, {wl}, {out}, {dst});\n"
                              f"    for (j = 0; j < {out}; ++j) {dst}[j] = {name}_c{k}_act({dst}[j]);")
                width, cur = out, 1 - cur
                widest = max(widest, out)
            if cell.basis is not None:
                basis = w.array(f"c{k}_basis", cell.basis, f"cell {k}: the heads' shared rank-"
                                f"{cell.basis.shape[1]} map (SVD reduction), transposed")
                src, dst = buffers[cur], buffers[1 - cur]
                out = cell.basis.shape[1]
                layers.append(f"    for (j = 0; j < {out}; ++j) {dst}[j] = 0.0f;\n"
                              f"    {name}_matvec({src}, {width}, {basis}, {out}, {dst});")
                width, cur = out, 1 - cur
            hw = w.array(f"c{k}_heads_w", cell.heads[0], f"cell {k}: heads [2c ff1; 2c ff2; "
                         + ("gate (dt = 1 folded in)" if cell.gate_folded else "time_a; time_b") + "], transposed")
            hb = w.array(f"c{k}_heads_b", cell.heads[1], f"cell {k}: heads bias")
            src = buffers[cur]
            layers.append(f"    for (j = 0; j < {head_rows}; ++j) heads[j] = {hb}[j];\n"
                          f"    {name}_matvec({src}, {width}, {hw}, {head_rows}, heads);")
            if cell.basis is not None:
                widest = max(widest, cell.basis.shape[1])
            second = f", b[{widest}]" if cell.rest or cell.basis is not None else ""
            stages.append(f"/* cell {k}: backbone activations, then the heads' pre-activations */\n"
                          f"static void {name}_c{k}_backbone(float *pre, float *heads)\n{{\n"
                          f"    float a[{widest}]{second};\n    int j;\n" + "\n".join(layers) + "\n}\n")
            scratch_cell = 4 * (2 * widest + head_rows + first_width)
        else:
            scratch_cell = 4 * first_width
        gate = ("s[2 * H + j]" if cell.gate_folded else "s[2 * H + j] * dt + s[3 * H + j]")
        stages.append(f"/* cell {k}: y' = lerp(sigmoid(2c ff1), sigmoid(2c ff2), gate) */\n"
                      f"static void {name}_c{k}_update(const float *s, float dt, float *y)\n{{\n"
                      f"    enum {{ H = {cell.h} }};\n    int j;\n"
                      + ("    (void)dt; /* the gate is folded for dt = 1 */\n" if cell.gate_folded else "")
                      + f"    for (j = 0; j < H; ++j) {{\n"
                      f"        float s1 = {name}_sigmoid(s[j]), s2 = {name}_sigmoid(s[H + j]);\n"
                      f"        float g = {name}_sigmoid({gate});\n"
                      f"        y[j] = s1 + g * (s2 - s1);\n    }}\n}}\n")
        cell_code.append((k, cell, stages, w_state, first_width, head_rows))
        scratch = max(scratch, scratch_cell)
    head_w = w.array("readout_w", folded.head_w, "readout, in y-space (outputs x state)")
    head_b = w.array("readout_b", folded.head_b, "readout bias")

    last = len(folded.cells) - 1
    step_arg = "int32_t token" if token_input else "const float *input"
    step_lines = []
    for k, cell, _, w_state, first_width, head_rows in cell_code:
        src = ("token" if token_input else "input") if k == 0 else f"state->y{k - 1}"
        step_lines.append(f"    {{ /* cell {k} */\n        float pre[{first_width}];\n"
                          + (f"        float heads[{head_rows}];\n" if cell.heads is not None else "")
                          + f"        {name}_c{k}_input({src}, pre);\n"
                          f"        {name}_matvec(state->y{k}, {cell.h}, {w_state}, {first_width}, pre);\n"
                          + (f"        {name}_c{k}_backbone(pre, heads);\n"
                             f"        {name}_c{k}_update(heads, dt, state->y{k});\n" if cell.heads is not None
                             else f"        {name}_c{k}_update(pre, dt, state->y{k});\n")
                          + "    }")
    body.append(f"void {name}_step({name}_state *state, {step_arg}, float dt)\n{{\n"
                + "\n".join(step_lines) + "\n}\n")
    out_dim = folded.cells[-1].h
    body.append(f"void {name}_output(const {name}_state *state, float *logits)\n{{\n"
                f"    int i, j;\n    for (i = 0; i < {up}_N_OUTPUTS; ++i) {{\n"
                f"        float acc = {head_b}[i];\n"
                f"        for (j = 0; j < {out_dim}; ++j) acc += {head_w}[i * {out_dim} + j] * state->y{last}[j];\n"
                f"        logits[i] = acc;\n    }}\n}}\n")
    body.append(f"void {name}_reset({name}_state *state)\n{{\n    int j;\n"
                + "".join(f"    for (j = 0; j < {h}; ++j) state->y{k}[j] = 0.5f; /* x = 0 */\n"
                          for k, h in enumerate(widths)) + "}\n")
    inputs_t = "const int32_t *inputs" if token_input else "const float *inputs"
    advance = "inputs[t]" if token_input else f"inputs + (int32_t)t * {up}_N_INPUTS"
    body.append(f"void {name}_run({name}_state *state, {inputs_t}, const float *dts, int32_t length, float *logits)\n"
                f"{{\n    int32_t t;\n    for (t = 0; t < length; ++t) {{\n"
                f"        {name}_step(state, {advance}, dts ? dts[t] : 1.0f);\n"
                + (f"        {name}_output(state, logits + (int32_t)t * {up}_N_OUTPUTS);\n" if per_step else "")
                + "    }\n"
                + ("" if per_step else f"    {name}_output(state, logits);\n") + "}\n")

    state_bytes = 4 * sum(widths)
    header = _header(name, up, ckpt, provenance, token_input, n_inputs, n_outputs, per_step, dt_input, state_fields,
                     w.flash, state_bytes, scratch, folded)
    helpers = (f"static float {name}_sigmoid(float v)\n{{\n    return 1.0f / (1.0f + expf(-v));\n}}\n\n"
               f"/* out[j] += sum_i x[i] * w[i * m + j]: w is (n x m), row-major */\n"
               f"static void {name}_matvec(const float *x, int n, const float *w, int m, float *out)\n{{\n"
               f"    int i, j;\n    for (i = 0; i < n; ++i) {{\n        const float xi = x[i];\n"
               f"        const float *row = w + (int32_t)i * m;\n"
               f"        for (j = 0; j < m; ++j) out[j] += xi * row[j];\n    }}\n}}\n")
    stages_text = "\n".join("\n".join(st) for _, _, st, *_ in cell_code)
    source = (f"/* {name}.c: generated by cfctool from the checkpoint described in {name}.h. */\n"
              f"#include <math.h>\n#include <stdint.h>\n#include \"{name}.h\"\n\n"
              + "\n".join(w.arrays) + "\n" + helpers + "\n" + stages_text + "\n" + "\n".join(body))
    return CSource(name, header, source, w.flash, state_bytes, scratch, token_input, n_inputs, n_outputs, per_step,
                   dt_input)


def _header(name, up, ckpt, provenance, token_input, n_inputs, n_outputs, per_step, dt_input, state_fields,
            flash, state_bytes, scratch, folded) -> str:
    arch = ckpt.arch
    history = " -> ".join(h.get("command", "?") for h in ckpt.record.get("history") or []) or "not recorded"
    codecs = sorted({spec["codec"] for spec in ckpt.encodings.values()})
    encoded = (f"{', '.join(codecs)}-encoded tensors in the checkpoint, emitted here as dense float32 "
               "(decoded exactly where the codec is exact)" if codecs else "none (float32)")
    size_line = f"{arch.get('hidden')} hidden" + (f", backbone {arch.get('backbone_widths')}"
                                                   if arch.get("backbone_widths") else "")
    step_input = ("a token id in [0, " + f"{up}_VOCAB)" if token_input else f"{up}_N_INPUTS floats")
    lines = [
        f"/* {name}.h: a {arch.get('name')} ({size_line}) as dependency-free C99, generated by cfctool.",
        f" * checkpoint: {provenance or 'not recorded'}",
        f" * task: {ckpt.task.get('dataset')}, {ckpt.task['output']['kind']}"
        + (", an output per step" if per_step else ", one output per sequence"),
        f" * made by: {history}",
        f" * encodings: {encoded}",
        " *",
        f" * Usage: {name}_state s; {name}_reset(&s); then {name}_step(&s, input, dt) per step, where input is",
        f" * {step_input}" + (" and dt the step's elapsed time;" if dt_input else
                              " and dt is ignored (the gate is folded for the regular dt = 1);"),
        f" * {name}_output(&s, logits) reads the {up}_N_OUTPUTS logits"
        + (" after every step." if per_step else " after the last step."),
        f" * {name}_run(&s, inputs, dts or NULL, length, logits) does a whole sequence"
        + (" (length x outputs logits)." if per_step else "."),
        " * No heap, no mutable globals; needs <math.h> (link with -lm) and <stdint.h>.",
        " */",
    ]
    macros = [f"#define {up}_N_INPUTS {n_inputs}", f"#define {up}_N_OUTPUTS {n_outputs}",
              f"#define {up}_PER_STEP {int(per_step)}", f"#define {up}_TOKEN_INPUT {int(token_input)}",
              f"#define {up}_DT_INPUT {int(dt_input)}"]
    if token_input:
        macros.append(f"#define {up}_VOCAB {folded.table.shape[0]}")
    macros += [f"#define {up}_FLASH_BYTES {flash} /* the weights */",
               f"#define {up}_STATE_BYTES {state_bytes} /* {name}_state */",
               f"#define {up}_SCRATCH_BYTES {scratch} /* the largest stage's stack arrays */"]
    step_arg = "int32_t token" if token_input else "const float *input"
    inputs_t = "const int32_t *inputs" if token_input else "const float *inputs"
    return ("\n".join(lines) + f"\n#ifndef {up}_H\n#define {up}_H\n\n#include <stdint.h>\n\n" + "\n".join(macros)
            + f"\n\ntypedef struct {{\n" + "\n".join(state_fields) + f"\n}} {name}_state;\n\n"
            f"void {name}_reset({name}_state *state);\n"
            f"void {name}_step({name}_state *state, {step_arg}, float dt);\n"
            f"void {name}_output(const {name}_state *state, float *logits);\n"
            f"void {name}_run({name}_state *state, {inputs_t}, const float *dts, int32_t length, float *logits);\n"
            f"\n#endif /* {up}_H */\n")
