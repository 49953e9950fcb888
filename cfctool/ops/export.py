"""`cfctool export`: a checkpoint as an ONNX graph, verified against PyTorch on real inputs.

'default'-mode CfC models (cfc, cfc-deep, cfc-ncp without mixed memory) and the Euler
sequence ODEs (ode-rnn and its reductions) export their folded inference step
(`cfctool.models.inference`, `cfctool.models.ode_inference`) as the body of an ONNX Scan:
batch and sequence length are dynamic and export takes seconds. Other models (no_gate, pure, mixed
memory, LTC) export the training loop unrolled at a fixed length, batch dynamic; that
takes minutes for hundreds of steps. (ONNX's Loop operator ran 0.28x eager here: avoided.)
Checkpoints that run on the int8 engine export its step: the products are ONNX
`MatMulInteger` (int8 x int8 -> int32) inside the Scan body, with the engine's casts and
rescales around them.
`onnx`, `onnxscript` and `onnxruntime` come with the optional extra `cfctool[onnx]`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cfctool.checkpoint import Checkpoint, atomic_write, check_writable
from cfctool.data import raw_io
from cfctool.data.base import Split
from cfctool.data.raw_io import RawIO
from cfctool.engines import choose, fastest, integer_settings
from cfctool.engines.c_source import checked_name, generate, model_name
from cfctool.engines.native import CEngine, compiler
from cfctool.errors import CfcError, ConfigError
from cfctool.families.build import model_from_checkpoint
from cfctool.models import ncps_layout, ode_inference
from cfctool.models.quantized import float_layers

# Allowed difference from PyTorch, per unit of output scale: 1e-4 absolute for outputs of
# order 1, growing with the largest |output| (float32 rounding grows with magnitude: a
# Person Activity model with logits near 15 differs by 2.5e-4 after 50 steps).
TOLERANCE = 1e-4


def allowed_difference(reference) -> float:
    return TOLERANCE * max(1.0, float(abs(reference).max()))


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise CfcError(
            f"ONNX support needs the optional packages ({exc.name} is missing): pip install 'cfctool[onnx]'"
        ) from None


class _Graph(torch.nn.Module):
    """A model (the training loop, or a `_ScanGraph`) with every input explicit, as the ONNX
    graph's signature; `io`: your own data's raw values in and units out (`data.raw_io`)."""

    def __init__(self, model: torch.nn.Module, io: RawIO | None = None):
        super().__init__()
        self.model, self.io = model, io

    def forward(self, x, dt=None, mask=None):
        if self.io is None:
            return self.model(x, dt, mask)
        return self.io.output(self.model(self.io.standardise(x), dt, mask))


class _ScanGraph(torch.nn.Module):
    """A folded engine's step as the body of an ONNX Scan: any sequence length, a small graph.

    Inputs are those the task has: x always, dt only for irregularly sampled tasks (for the
    others the gate is folded for dt = 1), mask only for variable-length tasks. `engine`
    is a `FoldedCfC` (float or integer) or a `FoldedODE` whose folded step is exported.
    """

    def __init__(self, engine: torch.nn.Module, has_dt: bool, has_mask: bool):
        super().__init__()
        self.folded = engine.folded(None if has_dt else 1.0)
        self.has_dt, self.has_mask = has_dt, has_mask

    def forward(self, x, dt=None, mask=None):
        from torch._higher_order_ops.scan import scan

        f = self.folded
        u, dts, masks = f.time_major(x, dt, mask)
        xs = [u] + ([dts] if dts is not None else []) + ([masks] if masks is not None else [])

        def body(ys, xs_t):
            xs_t = list(xs_t)
            u_t = xs_t.pop(0)
            dt_t = xs_t.pop(0) if dts is not None else None
            m_t = xs_t.pop(0) if masks is not None else None
            new = f.step(list(ys), u_t, dt_t, m_t)
            return new, new[-1].clone()

        last, outs = scan(body, f.initial(u), xs)
        return f.readout(outs.transpose(0, 1) if f.per_step else last[-1])


def folded_engine(model: torch.nn.Module) -> torch.nn.Module | None:
    """The model's folded engine (its step is what a Scan graph exports), if it has one. Asked
    of the model, not of the checkpoint's engine choice: encoded weights decode to the same
    model, so they still export as a Scan."""
    engine = fastest(model)
    return engine.module if engine.entry is not None and engine.entry.folded else None


def graph_inputs(split: Split, names: list[str] | tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """The named graph inputs for a batch (default: those the task has: x, then dt and mask
    when present). A graph that takes dt or mask where the task has none gets 1 and all-valid."""
    shape = split.x.shape[:2]
    if names is None:
        names = ["x"] + (["dt"] if split.dt is not None else []) + (["mask"] if split.mask is not None else [])
    values = {
        "x": lambda: split.x,
        "dt": lambda: (split.dt if split.dt is not None else torch.ones(shape)).float(),
        "mask": lambda: (split.mask if split.mask is not None else torch.ones(shape, dtype=torch.bool)).bool(),
    }
    return {name: values[name]() for name in names}


@contextlib.contextmanager
def _exporter_logs_silenced():
    """The dynamo exporter logs warnings that are not the user's business (e.g. 'torchvision is
    not installed. Skipping torchvision::nms'): raise its loggers' level while it runs."""
    import logging

    loggers = [
        logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "torch.onnx._internal.exporter._registration")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _int_mm(a, b):
    """aten._int_mm (int8 x int8 -> int32) as ONNX MatMulInteger."""
    from onnxscript import opset18 as op

    return op.MatMulInteger(a, b)


def _export_program(graph: torch.nn.Module, inputs: dict[str, torch.Tensor], dynamic: dict[int, str], arch: str):
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull, _exporter_logs_silenced():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(devnull):
            try:
                return torch.onnx.export(
                    graph,
                    (),
                    kwargs=inputs,
                    dynamo=True,
                    input_names=list(inputs),
                    output_names=["logits"],
                    dynamic_shapes={k: dynamic for k in inputs},
                    custom_translation_table={torch.ops.aten._int_mm.default: _int_mm},
                    verbose=False,
                )
            except Exception as exc:  # the exporter raises many kinds
                raise CfcError(f"ONNX export of '{arch}' failed: {exc}") from None


# A graph of the int8 engine rounds at the same points as PyTorch's, but float sums in
# another order can put a value on the other side of a rounding boundary (a tie within
# float precision): the row then drifts by a quantum. It is accepted when most rows equal
# PyTorch's integer engine within TOLERANCE and predictions rarely change.
QUANTIZED_EXACT_ROWS = 0.9
QUANTIZED_CHANGED_PREDICTIONS = 0.01


def export_onnx(ckpt: Checkpoint, path: str | Path, example: Split) -> dict[str, Any]:
    """Write `path` (atomically) and return what was verified; raise above the tolerance.

    Models with a folded engine ('default'-mode CfC, Euler sequence ODEs) export its step as
    an ONNX Scan (any batch and sequence length, seconds to export); other models export the training loop
    unrolled at the example's length (minutes for hundreds of steps). Either graph is
    checked against PyTorch (the training loop; for int8 checkpoints the integer engine's
    step it exports), and a Scan graph also on a shorter length, since its time dimension
    is dynamic.
    """
    require_onnx()
    import numpy as np
    import onnxruntime as ort

    model = model_from_checkpoint(ckpt)
    engine = choose(ckpt, model)
    io = raw_io.of(ckpt.task, ckpt.task_tensors())
    integer = engine.entry is not None and engine.entry.integer
    if integer and float_layers(ckpt):
        raise ConfigError(
            f"the ONNX integer graph is all-integer; this checkpoint keeps {', '.join(float_layers(ckpt))} "
            "in float32 (quantize --keep-float): export the fp32 original, or quantize without it"
        )
    reference = model
    folded = None if integer else folded_engine(model)
    scan = integer or folded is not None
    if io is not None:  # the graph reads raw features (see data.raw_io)
        example = dataclasses.replace(example, x=io.raw(example.x))
    if scan:
        inputs = graph_inputs(example)
        graph = _ScanGraph(engine.module if integer else folded, "dt" in inputs, "mask" in inputs)
        if io is not None:  # the raw-value edges around the scan, as around the loop below
            graph = _Graph(graph, io)
        dynamic = {0: "batch", 1: "time"}
        if integer:  # the integer step it exports, run by PyTorch: a graph that reads dt keeps the gate
            reference = graph  # heads apart, where the engine folds and requantizes them for a constant dt
    else:
        inputs = graph_inputs(example, ("x", "dt", "mask"))
        graph, dynamic = _Graph(model, io), {0: "batch"}
    if io is not None and not integer:
        reference = _Graph(reference, io)
    program = _export_program(graph, inputs, dynamic, ckpt.arch["name"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        program.save(str(tmp_path))
        payload = tmp_path.read_bytes()
    session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
    checks = [inputs]
    if scan and example.x.shape[1] > 1:
        checks.append({k: v[:, : max(1, v.shape[1] // 2)] for k, v in inputs.items()})
    diff, allowed, mismatched, largest, rows, exact_rows = 0.0, 0.0, 0, 0.0, 0, 0
    for check in checks:
        got = session.run(None, {k: v.numpy() for k, v in check.items()})[0]
        with torch.no_grad():
            want = reference(check["x"], check.get("dt"), check.get("mask")).numpy()
        limit = allowed_difference(want)
        row_diff = np.abs(got - want).reshape(len(want), -1).max(1)
        diff, allowed = max(diff, float(row_diff.max())), max(allowed, limit)
        rows, exact_rows = rows + len(want), exact_rows + int((row_diff <= limit).sum())
        largest = max(largest, float(np.abs(want).max()))
        mismatched += int((got.argmax(-1) != want.argmax(-1)).sum())
    if integer:
        if exact_rows < QUANTIZED_EXACT_ROWS * rows or mismatched > max(1, QUANTIZED_CHANGED_PREDICTIONS * rows):
            raise CfcError(
                f"the exported integer graph differs from PyTorch's integer engine: {rows - exact_rows} of "
                f"{rows} rows differ by more than {allowed:.3g} (at most {1 - QUANTIZED_EXACT_ROWS:.0%} may, "
                f"from rounding ties) and {mismatched} predictions changed; not written. Please report this "
                "with the checkpoint"
            )
    elif not diff <= allowed:
        raise CfcError(
            f"the exported graph differs from PyTorch by {diff:.3g} (> {allowed:.3g} = {TOLERANCE} x "
            f"max(1, largest |output|)); not written. Please report this with the checkpoint"
        )
    out = Path(path)
    check_writable(out, sidecar=False)
    atomic_write(out, payload)
    return {
        "path": str(out),
        "outputs": [str(out)],
        "graph": ("scan-int8" if integer else "scan") if scan else "unrolled",
        "inputs": list(inputs),
        "verified_against": (engine.name + (", dt per step" if "dt" in inputs else "")) if integer else "loop",
        "max_abs_diff": diff,
        "allowed_diff": allowed,
        "rows_within_allowed": exact_rows,
        "rows": rows,
        "max_abs_output": largest,
        "argmax_mismatches": mismatched,
        "seq_len": None if scan else int(inputs["x"].shape[1]),
        "verified_seq_lens": [int(c["x"].shape[1]) for c in checks],
        "bytes": len(payload),
        "verified_on": int(inputs["x"].shape[0]),
        **({"raw_io": io.describe()} if io is not None else {}),
    }


# C: relative difference allowed between the compiled code and the folded engine (float32
# sums in another order; the folded engine is the reference)
C_TOLERANCE = 1e-5


def export_c(
    ckpt: Checkpoint,
    directory: str | Path,
    example: Split | None,
    name: str | None = None,
    token_table: str = "auto",
    row_align: int | None = None,
    sparse: str = "auto",
) -> dict[str, Any]:
    """Write DIRECTORY/NAME.h and DIRECTORY/NAME.c (each atomically): the model as C99. When a C
    compiler is present the code is compiled and checked on `example` against the engine it
    mirrors: float logits within C_TOLERANCE relative of the folded engine (for an ODE block,
    or as close as that engine is to the training loop), integer steps with the predictions of
    the folded-int8 engine; nothing is written when it differs. `token_table` (token models):
    "auto", "folded" or "embedding" (see `c_source.TOKEN_TABLES`); `row_align`: the integer rows'
    padding (default `c_source.ROW_ALIGN`, 16 bytes for vector units; 4 suits a Cortex-M4);
    `sparse`: how each weight product runs (`c_products.SPARSE_CHOICES`)."""

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--format c writes NAME.h and NAME.c into a directory; {directory} is a file")
    if not directory.parent.is_dir():
        raise ConfigError(f"the directory {directory.parent} does not exist; create it first")
    model = model_from_checkpoint(ckpt)
    dt_input = (
        example is not None and example.dt is not None and not bool((example.dt == example.dt.flatten()[0]).all())
    )
    integer = integer_settings(ckpt, model)
    io = raw_io.of(ckpt.task, ckpt.task_tensors())
    src = generate(
        ckpt,
        model,
        checked_name(name) if name else model_name(ckpt),
        dt_input=dt_input,
        integer=integer,
        token_table=token_table,
        raw_io=io,
        sparse=sparse,
        **({"row_align": row_align} if row_align is not None else {}),
    )
    verified: dict[str, Any] = {"verified": False}
    if example is not None:
        try:
            compiler()
        except CfcError:
            verified = {"verified": False, "why": "no C compiler found to verify it"}
        else:
            engine = CEngine(src)
            dt = example.dt if dt_input else None
            against = choose(ckpt, model) if integer else fastest(model)
            reference = against.module
            with torch.no_grad():  # batch 1 for a dynamic scheme: its scale is one step's, per sequence
                want = (
                    torch.cat([reference(*_row(example, dt, i)) for i in range(len(example.x))])
                    if integer and integer["dynamic"]
                    else reference(example.x, dt, example.mask)
                )
            units = io.output if io is not None else (lambda y: y)  # the C writes the data's units ...
            want = units(want)
            got = engine(io.raw(example.x) if io is not None else example.x, dt, example.mask)  # ... from raw features
            diff = _relative(got, want)
            changed = int((got.argmax(-1) != want.argmax(-1)).sum())
            allowed = C_TOLERANCE
            if not integer and ode_inference.supports(model):  # 784 Euler steps: as close as the folded
                with torch.no_grad():  # engine itself is to the training loop, or closer
                    allowed = max(C_TOLERANCE, 2 * _relative(units(model.eval()(example.x, dt, example.mask)), want))
            # integer steps: a rounding tie decided the other way moves a state by a quantum, so
            # what must hold is the predictions (as for the ONNX integer graph)
            fails = changed > max(1, QUANTIZED_CHANGED_PREDICTIONS * got.shape[0]) if integer else not diff <= allowed
            if fails:
                raise CfcError(
                    f"the generated C differs from the {'folded-int8' if integer else 'folded'} engine "
                    f"({diff:.3g} relative, {changed} changed predictions); not written. Please report "
                    "this with the checkpoint"
                )
            verified = {
                "verified": True,
                "max_rel_diff": diff,
                "allowed_rel_diff": allowed,
                "verified_on": int(example.x.shape[0]),
                "argmax_mismatches": changed,
                "compiler": " ".join(engine.command),
                "verified_against": against.name,
            }
    directory.mkdir(exist_ok=True)
    header, source = directory / f"{src.name}.h", directory / f"{src.name}.c"
    atomic_write(header, src.header.encode())
    atomic_write(source, src.source.encode())
    return {
        "header": str(header),
        "source": str(source),
        "outputs": [str(header), str(source)],
        "name": src.name,
        "dt_input": dt_input,
        **src.sizes(),
        "token_table": src.token_table,
        "products": [p.record() for p in src.products],
        "integer": integer is not None,
        **({"raw_io": io.describe()} if io is not None else {}),
        **verified,
    }


def export_ncps(ckpt: Checkpoint, path: str | Path, example: Split | None) -> dict[str, Any]:
    """Write `path` (safetensors, atomically): the model in ncps's layout, keys `rnn.*` (an
    ncps CfC or LTC), `readout.*` (an nn.Linear) and, for token models, `embedding.*`; with the
    constructor lines that rebuild it. Encoded weights are written decoded (ncps is float32).
    Verified on `example` against our training loop when ncps is installed."""
    from safetensors.torch import save

    ncps_layout.representable(ckpt.arch)
    path = Path(path)
    check_writable(path, sidecar=False)
    model = model_from_checkpoint(ckpt)
    arch, features = ckpt.arch, model.rnn.input_size
    core = {k.removeprefix("rnn."): v for k, v in model.state_dict().items() if k.startswith("rnn.")}
    tensors = {"rnn." + k: v for k, v in ncps_layout.core_to_ncps(arch, core).items()}
    tensors["readout.weight"], tensors["readout.bias"] = model.head.weight, model.head.bias
    if model.embedding is not None:
        tensors["embedding.weight"] = model.embedding.weight
    tensors = {k: v.detach().float().contiguous() for k, v in sorted(tensors.items())}
    modules = (
        [f'"embedding": torch.nn.Embedding({model.embedding.num_embeddings}, {model.embedding.embedding_dim})']
        if model.embedding is not None
        else []
    )
    modules += [
        f'"rnn": {ncps_layout.constructor(arch, features)}',
        f'"readout": torch.nn.Linear({model.head.in_features}, {model.head.out_features})',
    ]
    imports = (
        "from ncps.torch import "
        + ("LTC" if arch["name"] == "ltc" else "CfC")
        + ("\nfrom ncps.wirings import AutoNCP, NCP" if arch["name"] == "cfc-ncp" else "")
    )
    code = (
        f"import torch, safetensors.torch\n{imports}\n"
        f"model = torch.nn.ModuleDict({{{', '.join(modules)}}})\n"
        f"model.load_state_dict(safetensors.torch.load_file({str(path.name)!r}))\n"
        "# outputs: model['rnn'](x)[0] per step (pass dt per step as (batch, 1) to model['rnn'].rnn_cell: ncps's "
        "batched timespans are mis-broadcast), logits = model['readout'](...)"
    )
    verified: dict[str, Any] = {"verified": False, "why": "ncps is not installed (pip install -e '.[ncps]')"}
    try:
        import ncps  # noqa: F401
    except ImportError:
        pass
    else:
        verified = (
            _verify_ncps(model, arch, tensors, example)
            if example is not None
            else {"verified": False, "why": "no example inputs"}
        )
    atomic_write(path, save(tensors))
    return {"path": str(path), "outputs": [str(path)], "code": code, "decoded": sorted(ckpt.encodings), **verified}


def _verify_ncps(model, arch, tensors, example: Split) -> dict[str, Any]:
    """ncps itself on the written tensors against our training loop (valid steps only: ncps has no mask)."""
    rnn = ncps_layout.build(arch, model.rnn.input_size).eval()
    rnn.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("rnn.")}, strict=True)
    x, dt = example.x[:16], example.dt[:16] if example.dt is not None else None
    if example.mask is not None:  # a prefix of steps every row has
        x, dt = x[:, : int(example.mask[:16].sum(1).min())], None if dt is None else dt[:, : x.shape[1]]
    dt = torch.ones(x.shape[:2]) if dt is None else dt
    with torch.no_grad():
        inputs = model.embedding(x) if model.embedding is not None else x
        h = torch.zeros(x.shape[0], rnn.state_size)
        c = torch.zeros_like(h)
        outs = []
        for t in range(x.shape[1]):
            if getattr(rnn, "use_mixed", False):
                h, c = rnn.lstm(inputs[:, t], (h, c))
            out, h = rnn.rnn_cell(inputs[:, t], h, dt[:, t : t + 1])
            outs.append(out)
        out = torch.stack(outs, 1)
        got = torch.nn.functional.linear(
            out if model.per_step else out[:, -1], tensors["readout.weight"], tensors["readout.bias"]
        )
        want = model(x, dt)
        # float32 rounding grows over the steps of a model with gain > 1 (e.g. pruned, not fine-tuned): the
        # two float32 computations may differ by as much as ours differs from itself in float64
        exact = copy.deepcopy(model).double()(x if model.embedding is not None else x.double(), dt.double())
    diff = _relative(got, want)
    allowed = max(C_TOLERANCE, 2 * _relative(want.double(), exact))
    if not diff <= allowed:
        raise CfcError(
            f"ncps computes other outputs from the exported weights ({diff:.3g} relative, allowed "
            f"{allowed:.3g}); not written. Please report this with the checkpoint"
        )
    return {"verified": True, "max_rel_diff": diff, "allowed_rel_diff": allowed, "verified_on": int(x.shape[0])}


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """The largest difference relative to the largest |want|."""
    return float((got - want).abs().max()) / (float(want.abs().max()) or 1.0)


def _row(split: Split, dt, i: int):
    return (
        split.x[i : i + 1],
        None if dt is None else dt[i : i + 1],
        None if split.mask is None else split.mask[i : i + 1],
    )


@dataclass(frozen=True)
class ExportFormat:
    """One output format of `cfctool export`: how it writes, what -o is, what it needs."""

    name: str
    write: Callable[..., dict[str, Any]]  # (ckpt, output, example) -> what was written and verified
    suffix: str | None  # the output file's suffix; None: -o is a directory
    require: Callable[[], None] = lambda: None  # raises with the install line when a dependency is missing
    help: str = ""
    summary: Callable[[dict[str, Any]], str] = lambda info: ""  # what was written and checked, for stderr
    check: Callable[[Checkpoint], None] = lambda ckpt: None  # raises, before any data is read, for what it cannot hold


def _onnx_summary(info: dict[str, Any]) -> str:
    return (
        f"max abs diff vs PyTorch ({info['verified_against']}) {info['max_abs_diff']:.3g} (allowed "
        f"{info['allowed_diff']:.3g}; {info['rows_within_allowed']} of {info['rows']} rows within it), "
        f"{info['argmax_mismatches']} changed predictions, on {info['verified_on']} sequences "
        f"of {'/'.join(map(str, info['verified_seq_lens']))} steps ({info['graph']} graph, inputs "
        f"{', '.join(info['inputs'])}{'; x raw, the standardisation in the graph' if info.get('raw_io') else ''})"
    )


def _c_summary(info: dict[str, Any]) -> str:
    check = (
        f"max relative difference from the {info['verified_against']} engine {info['max_rel_diff']:.2g} on "
        f"{info['verified_on']} sequences, {info['argmax_mismatches']} changed predictions "
        f"({info['compiler']})"
        if info["verified"]
        else f"not verified: {info['why']}"
    )
    return (
        f"{info['name']}: flash {info['flash_bytes']:,} bytes (weights), state {info['state_bytes']:,} "
        f"bytes, scratch {info['scratch_bytes']:,} bytes (stack); dt {'per step' if info['dt_input'] else 'folded (1)'}"
        + (f"; token table {info['token_table']}" if info["token_table"] else "")
        + (
            f"; {sum(p['form'] == 'sparse' for p in info['products'])} of {len(info['products'])} products sparse"
            if info.get("products")
            else ""
        )
        + ("; raw features in (the standardisation folded into the first product)" if info.get("raw_io") else "")
        + f"; {check}"
    )


def _ncps_summary(info: dict[str, Any]) -> str:
    check = (
        f"ncps's outputs on the written weights within {info['max_rel_diff']:.2g} relative of ours (allowed "
        f"{info['allowed_rel_diff']:.2g}: 1e-5, or twice our float32's own rounding over the steps) on "
        f"{info['verified_on']} sequences"
        if info["verified"]
        else f"not verified: {info['why']}"
    )
    decoded = f"; written decoded to float32: {', '.join(info['decoded'])}" if info["decoded"] else ""
    return f"{check}{decoded}\nload it in ncps with:\n{info['code']}"


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "onnx",
            export_onnx,
            ".onnx",
            require_onnx,
            "an ONNX graph (a Scan over the folded step; int8 as MatMulInteger), verified with ONNX Runtime",
            _onnx_summary,
        ),
        ExportFormat(
            "c",
            export_c,
            None,
            help="C99 for a microcontroller or any CPU: DIR/NAME.h and DIR/NAME.c, no heap, "
            "only <math.h> and <stdint.h>; compiled and verified when a C compiler "
            "is present",
            summary=_c_summary,
        ),
        ExportFormat(
            "ncps",
            export_ncps,
            ".safetensors",
            help="the weights in ncps's layout (its CfC, wired CfC or LTC, "
            "a readout Linear) with the lines that load them",
            summary=_ncps_summary,
            check=lambda ckpt: ncps_layout.representable(ckpt.arch),
        ),
    )
}
