"""The generated C (the edge engine): it computes what the folded engine computes, compiles
without warnings under C99 -pedantic, and the same checkpoint gives the same bytes."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch

from cfctool import checkpoint
from cfctool.engines.c_source import ROW_ALIGN, c_name, generate
from cfctool.families.build import model_from_checkpoint
from cfctool.models.inference import FoldedCfC

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on this machine")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CFCTOOL_CACHE", str(tmp_path / "cache"))


def _inputs(ckpt, n=24, steps=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    task = ckpt.task
    if task["input"]["kind"] == "tokens":
        return torch.randint(0, task["input"]["vocab_size"], (n, steps), generator=g)
    return torch.randn(n, steps, task["input"]["size"], generator=g)


@pytest.mark.parametrize("arch", ["cfc", "cfc-deep", "cfc-ncp"])
@pytest.mark.parametrize("dt_input", [False, True])
def test_c_equals_the_folded_engine(trained_xor, arch, dt_input):
    from cfctool.engines.native import CEngine

    ckpt = checkpoint.load(trained_xor[arch])
    model = model_from_checkpoint(ckpt)
    engine = CEngine(generate(ckpt, model, arch, dt_input=dt_input))
    x = _inputs(ckpt)
    g = torch.Generator().manual_seed(1)
    dt = torch.rand(x.shape[:2], generator=g) * 2 + 0.1 if dt_input else None
    # end padding (a prefix mask, which the folded engine packs) and one mask with holes
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    mask[: 8, 9:] = False
    mask[8, 3] = False
    want = FoldedCfC(model)(x, dt, mask)
    got = engine(x, dt, mask)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    assert engine.last_steps == int(mask.sum()) and engine.last_seconds > 0


def test_per_step_outputs(tmp_path):
    """A per-step task (every step's logits), irregular dt."""
    from cfctool.configs import resolve
    from cfctool.engines.native import CEngine
    from cfctool.ops.train import train

    ckpt = train(resolve("xor", "cfc", overrides={"encoding": "event", "train_size": 64, "test_size": 16,
                                                  "epochs": 1, "hidden": 8, "backbone_units": 8, "threads": 1}))
    model = model_from_checkpoint(ckpt)
    model.per_step = True  # the same cell read at every step
    engine = CEngine(generate(ckpt, model, "per_step", dt_input=True))
    x = _inputs(ckpt, n=5, steps=7)
    dt = torch.rand(x.shape[:2], generator=torch.Generator().manual_seed(2)) + 0.5
    want = FoldedCfC(model)(x, dt, None)
    got = engine(x, dt, None)
    assert got.shape == want.shape == (5, 7, 2)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["float", "int8", "int8-silu", "ode", "ncp", "int8-ncp"])
def test_generated_code_is_clean_c99_and_reproducible(trained_xor, ode_rnns, silu_xor, tmp_path, kind):
    from cfctool.configs import QuantizeConfig
    from cfctool.engines import integer_settings
    from cfctool.ops.quantize import quantize

    def make():
        if kind == "ode":
            ckpt = checkpoint.load(ode_rnns["svd"])
        else:
            ckpt = checkpoint.load(silu_xor if kind == "int8-silu" else
                                   trained_xor["cfc-ncp" if kind.endswith("ncp") else "cfc-deep"])
            if kind.startswith("int8"):
                ckpt = quantize(ckpt, QuantizeConfig(scheme="dynamic" if kind == "int8" else "static"))
        model = model_from_checkpoint(ckpt)
        return generate(ckpt, model, "deep", dt_input=kind != "ode", integer=integer_settings(ckpt, model))

    src, again = make(), make()
    assert (src.header, src.source) == (again.header, again.source)
    (tmp_path / "deep.h").write_text(src.header)
    (tmp_path / "deep.c").write_text(src.source)
    for target in ([], ["-mavx512f", "-mavx512vnni"]):  # the portable integer products, and the VNNI ones
        run = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O2", *target, "-c",
                              "deep.c"], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    # what the VNNI branches add is only their includes, arrays and dot product (x86 with AVX-512 VNNI)
    vnni = re.compile(r"^#if defined\(__AVX512VNNI__\).*?^#endif\n|^#if DEEP_VNNI\n.*?^#else\n", re.M | re.S)
    assert bool(vnni.search(src.source)) == kind.startswith("int8")
    portable = vnni.sub("", src.source)
    text = src.header + portable
    assert "#include <stdlib.h>" not in text and "malloc" not in text
    assert sorted(set(re.findall(r"#include <(\w+)\.h>", text))) == ["math", "stdint"]
    # file-scope data is constant: no variable declared at column 0 without `static const`
    assert not re.findall(r"^(?!static const)(?:static )?(?:float|int|int32_t|double)\s+\w+\s*(?:\[[^]]*\])?\s*[=;]",
                          src.source, re.M)
    floats = [int(n) for n in re.findall(r"^static const float \w+\[(\d+)\]", portable, re.M)]
    int8s = [int(n) for n in re.findall(r"^static const int8_t \w+\[(\d+)\]", portable, re.M)]
    int32s = [int(n) for n in re.findall(r"^static const int32_t \w+\[(\d+)\]", portable, re.M)]
    assert kind.startswith("int8") == bool(int8s) and (kind == "int8-silu") == bool(int32s)
    assert f"#define DEEP_FLASH_BYTES {src.flash_bytes} " in src.header
    assert src.flash_bytes == 4 * sum(floats) + sum(int8s) + 4 * sum(int32s)
    # the byte dot products run over whole padded rows (no scalar tail)
    lengths = [int(n) for n in re.findall(r"deep_dot_u8\(\w+, (\d+),", src.source)]
    assert bool(lengths) == kind.startswith("int8") and all(n % ROW_ALIGN == 0 for n in lengths)


def test_a_model_without_a_c_form_is_one_clear_error(trained_xor):
    from cfctool.errors import ConfigError

    ckpt = checkpoint.load(trained_xor["ltc"])
    with pytest.raises(ConfigError, match="no C form for a ltc checkpoint"):
        generate(ckpt, model_from_checkpoint(ckpt), "ltc", dt_input=False)


def test_c_names():
    assert c_name("imdb-cfc.v2") == "imdb_cfc_v2" and c_name("2x") == "m_2x" and c_name("--") == "model"


def test_eval_and_bench_run_the_c_engine_by_name(trained_xor, cli):
    r = cli("eval", trained_xor["cfc-ncp"], "--engine", "c", "--json", "-q")
    assert r.code == 0, r.err
    import json

    c = json.loads(r.out)
    folded = json.loads(cli("eval", trained_xor["cfc-ncp"], "--json", "-q").out)
    assert c["engine"] == "c" and folded["engine"] == "folded"
    assert c["accuracy"] == folded["accuracy"] and abs(c["loss"] - folded["loss"]) < 1e-5
    r = cli("eval", trained_xor["cfc"], "--engine", "nope")
    assert r.code == 2 and "unknown engine 'nope'" in r.err and "c," in r.err
    r = cli("eval", trained_xor["ltc"], "--engine", "c")
    assert r.code == 2 and "the c engine does not run this ltc checkpoint" in r.err


def test_no_compiler_is_a_clear_error(trained_xor, monkeypatch):
    from cfctool.engines.native import CEngine
    from cfctool.errors import CfcError

    monkeypatch.setenv("CC", "no-such-compiler-here")
    ckpt = checkpoint.load(trained_xor["cfc"])
    with pytest.raises(CfcError, match="no C compiler found"):
        CEngine(generate(ckpt, model_from_checkpoint(ckpt), "cfc", dt_input=False))


def test_export_format_c_writes_a_verified_reproducible_pair(trained_xor, cli, tmp_path):
    out = tmp_path / "edge"
    r = cli("export", trained_xor["cfc"], "--format", "c", "-o", out, "--name", "xor_cfc")
    assert r.code == 0, r.err
    assert r.out.split() == [str(out / "xor_cfc.h"), str(out / "xor_cfc.c")]
    assert "flash" in r.err and "max relative difference from the folded engine" in r.err
    header = (out / "xor_cfc.h").read_text()
    first = (out / "xor_cfc.c").read_bytes()
    assert "sha256 " + checkpoint.file_sha256(trained_xor["cfc"]) in header
    assert "#define XOR_CFC_FLASH_BYTES" in header and "void xor_cfc_run(" in header
    assert cli("export", trained_xor["cfc"], "--format", "c", "-o", out, "--name", "xor_cfc").code == 0
    assert (out / "xor_cfc.c").read_bytes() == first  # the same checkpoint, the same bytes


def test_export_format_c_refuses_bad_outputs(trained_xor, cli, tmp_path):
    (tmp_path / "file").write_text("x")
    r = cli("export", trained_xor["cfc"], "--format", "c", "-o", tmp_path / "file")
    assert r.code == 2 and "writes into a directory" in r.err
    r = cli("export", trained_xor["cfc"], "--format", "c", "-o", tmp_path / "no" / "such")
    assert r.code == 2 and "does not exist" in r.err
    r = cli("export", trained_xor["cfc"], "--format", "zip", "-o", tmp_path / "x")
    assert r.code == 2 and "'format' must be one of onnx, c" in r.err
    r = cli("export", trained_xor["ltc"], "--format", "c", "-o", tmp_path / "ltc")
    assert r.code == 2 and "no C form" in r.err and not (tmp_path / "ltc").exists()
    r = cli("export", trained_xor["cfc"], "--format", "c", "--token-table", "tiny", "-o", tmp_path / "t")
    assert r.code == 2 and "'token_table' must be one of auto, folded, embedding (got 'tiny')" in r.err
    r = cli("export", trained_xor["cfc"], "--token-table", "embedding", "-o", tmp_path / "t.onnx")
    assert r.code == 2 and "--token-table applies to --format c" in r.err
    r = cli("export", trained_xor["cfc"], "--sparse", "often", "-o", tmp_path / "s", "--format", "c")
    assert r.code == 2 and "'sparse' must be one of auto, never, always (got 'often')" in r.err
    assert not (tmp_path / "s").exists()
    r = cli("export", trained_xor["cfc"], "--row-align", "4", "-o", tmp_path / "t.onnx")
    assert r.code == 2 and "--row-align applies to --format c" in r.err
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.onnx").exists()


@pytest.fixture(scope="module")
def silu_xor(tmp_path_factory):
    """A CfC with a SiLU backbone (the IMDB recipe's): the int8 engine's general static path."""
    from cfctool.configs import resolve
    from cfctool.ops.train import train

    path = tmp_path_factory.mktemp("silu") / "silu.st"
    checkpoint.save(train(resolve("xor", "cfc", overrides={"backbone_activation": "silu", "backbone_layers": 2,
                                                             "train_size": 256, "test_size": 64, "epochs": 1,
                                                             "hidden": 16, "backbone_units": 16, "threads": 1})),
                    path)
    return path


@pytest.mark.parametrize("arch", ["cfc", "cfc-deep", "cfc-ncp", "silu"])
@pytest.mark.parametrize("scheme,fuse,bits", [("static", True, 8), ("dynamic", True, 8), ("static", False, 8),
                                               ("static", True, 4)])
def test_int8_c_equals_the_folded_int8_engine(trained_xor, silu_xor, arch, scheme, fuse, bits):
    """The same integers, sums and rescales: predictions identical, logits within float rounding
    (a dynamic scale is one sequence's, so the engine runs one sequence at a time there too)."""
    from cfctool.configs import QuantizeConfig
    from cfctool.engines import choose, integer_settings
    from cfctool.engines.native import CEngine
    from cfctool.ops.quantize import quantize

    base = checkpoint.load(silu_xor if arch == "silu" else trained_xor[arch])
    ckpt = quantize(base, QuantizeConfig(scheme=scheme, fuse=fuse, bits=bits, calib=32))
    model = model_from_checkpoint(ckpt)
    engine = choose(ckpt, model)
    assert engine.name == "folded-int8"
    for dt_input in (False, True):
        c = CEngine(generate(ckpt, model, "q", dt_input=dt_input, integer=integer_settings(ckpt, model)))
        x = _inputs(ckpt, n=40, steps=10, seed=3)
        dt = torch.rand(x.shape[:2], generator=torch.Generator().manual_seed(4)) + 0.5 if dt_input else None
        if scheme == "dynamic":
            want = torch.cat([engine.module(x[i:i + 1], None if dt is None else dt[i:i + 1]) for i in range(len(x))])
        else:
            want = engine.module(x, dt)
        got = c(x, dt)
        assert torch.equal(got.argmax(-1), want.argmax(-1))
        assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item())


@pytest.fixture(scope="module")
def ode_rnns(tmp_path_factory):
    """A small Euler ODE-RNN on XOR and its reductions: SVD (latent coordinates), Q-DEIM."""
    from cfctool.configs import ReduceConfig, resolve
    from cfctool.ops.reduce import reduce
    from cfctool.ops.train import train

    folder = tmp_path_factory.mktemp("ode")
    base = train(resolve("xor", "ode-rnn", overrides={"hidden": 24, "train_size": 256, "test_size": 64, "epochs": 1,
                                                       "threads": 1}))
    paths = {"ode-rnn": folder / "ode.st"}
    checkpoint.save(base, paths["ode-rnn"])
    for method, dim in (("svd", 6), ("qdeim", 12)):
        paths[method] = folder / f"{method}.st"
        checkpoint.save(reduce(base, ReduceConfig(method=method, dim=dim, snapshots=64)), paths[method])
    return paths


@pytest.mark.parametrize("kind", ["ode-rnn", "svd", "qdeim"])
def test_c_equals_the_folded_ode_engine(ode_rnns, kind, cli, tmp_path):
    from cfctool.engines import choose
    from cfctool.engines.native import CEngine

    ckpt = checkpoint.load(ode_rnns[kind])
    model = model_from_checkpoint(ckpt)
    folded = choose(ckpt, model)
    assert folded.name == "folded"
    c = CEngine(generate(ckpt, model, kind, dt_input=False))
    x = _inputs(ckpt, n=16, steps=20, seed=5)
    want, got = folded.module(x), c(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())
    r = cli("export", ode_rnns[kind], "--format", "c", "-o", tmp_path / "out", "--name", "ode")
    assert r.code == 0, r.err
    assert "ode.h" in r.out and "Euler with dt" in (tmp_path / "out" / "ode.h").read_text()


def test_bench_reports_the_c_timed_step(trained_xor):
    from cfctool.ops.bench import bench

    ckpt = checkpoint.load(trained_xor["cfc"])
    report = bench(ckpt, engine="c", batches=2, batch_size=16, repeats=2, warmup=0, threads=1)
    c = report["results"][0]["c"]
    per_step = report["results"][0]["us_per_step"]
    assert report["results"][0]["engine"] == "c" and per_step["batch"] == 1
    assert 0 < per_step["min"] <= per_step["median"] <= per_step["max"] and per_step["timed"].startswith("in C")
    assert c["steps_per_pass"] > 0 and c["flash_bytes"] > 0 and c["compiler"].split()[0] in ("cc", "gcc", "clang")


def _token_model(arch_name: str):
    """A small random token model (an IMDB-shaped task with a 50-word vocabulary)."""
    from cfctool.checkpoint import Checkpoint, new_record
    from cfctool.families.build import build_model

    task = {"dataset": "imdb", "input": {"kind": "tokens", "vocab_size": 50, "pad_id": 0, "oov_id": 1},
            "output": {"kind": "classification", "size": 2, "per_step": False},
            "preprocessing": {"seq_len": 12, "vocab_words": 48}}
    common = dict(mode="default", mixed_memory=False, embedding_dim=12, head_activation="lecun_tanh")
    arch = (dict(name="cfc", hidden=10, backbone_widths=[32], backbone_activation="relu", backbone_dropout=0.0,
                 **common) if arch_name == "cfc" else
            dict(name="cfc-ncp", hidden=12, ncp_layers=[6, 4, 2], motor=2, sparsity=0.5, wiring_seed=3, **common))
    torch.manual_seed(0)
    model = build_model(arch, task)
    return Checkpoint(tensors=dict(model.state_dict()), record=new_record(arch, task))


@pytest.mark.parametrize("arch", ["cfc", "cfc-ncp"])
@pytest.mark.parametrize("integer", [False, True])
def test_token_table_embedding_equals_the_folded_table(arch, integer, monkeypatch):
    """--token-table embedding (the embedding rows, int8 where stored so, projected per step)
    computes what the folded table computes, in a fraction of the flash."""
    from cfctool.configs import QuantizeConfig
    from cfctool.engines import choose, integer_settings
    from cfctool.engines.native import CEngine
    from cfctool.ops.quantize import quantize

    from cfctool.data.base import Split
    from cfctool.ops import quantize as quantize_op

    ckpt = _token_model(arch)
    if integer:  # calibrated on random token sequences (the task has no data here)
        calib = Split(_inputs(ckpt, n=32, steps=12, seed=9), torch.zeros(32, dtype=torch.long))
        monkeypatch.setattr(quantize_op, "_calibration_data", lambda *a: calib)
        ckpt = quantize(ckpt, QuantizeConfig(scheme="static", calib=32))
    model = model_from_checkpoint(ckpt)
    settings = integer_settings(ckpt, model)
    assert (settings is not None) == integer
    tables = {t: generate(ckpt, model, "tok", dt_input=False, integer=settings, token_table=t)
              for t in ("folded", "embedding")}
    assert "tok_c0_table" in tables["folded"].source and "tok_c0_table" not in tables["embedding"].source
    assert ("tok_embedding_q" in tables["embedding"].source) == integer  # the stored codes, not decoded floats
    assert tables["embedding"].flash_bytes < tables["folded"].flash_bytes
    assert "--token-table embedding" in tables["embedding"].header
    x = _inputs(ckpt, n=16, steps=12, seed=5)
    reference = choose(ckpt, model)
    assert reference.name == ("folded-int8" if integer else "folded")
    reference = reference.module
    want = (torch.cat([reference(x[i:i + 1]) for i in range(len(x))]) if integer else reference(x))
    for table, src in tables.items():
        got = CEngine(src)(x)
        assert torch.equal(got.argmax(-1), want.argmax(-1)), table
        assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item()), table


@pytest.mark.parametrize("integer", [False, True])
def test_a_pruned_embedding_enters_as_its_non_zeros(integer, monkeypatch):
    """An embedding at least half zeros folds into a dense table: auto keeps its rows, only the
    non-zeros (int8 codes where quantized), and computes what the folded table computes."""
    from cfctool.configs import PruneConfig, QuantizeConfig
    from cfctool.data.base import Split
    from cfctool.engines import choose, integer_settings
    from cfctool.engines.native import CEngine
    from cfctool.ops import quantize as quantize_op
    from cfctool.ops.prune import prune

    ckpt = prune(_token_model("cfc"), PruneConfig(ratio=0.8, scope="embedding"))
    if integer:
        calib = Split(_inputs(ckpt, n=32, steps=12, seed=9), torch.zeros(32, dtype=torch.long))
        monkeypatch.setattr(quantize_op, "_calibration_data", lambda *a: calib)
        ckpt = quantize_op.quantize(ckpt, QuantizeConfig(scheme="static", calib=32))
    model = model_from_checkpoint(ckpt)
    settings = integer_settings(ckpt, model)
    auto = generate(ckpt, model, "tok", dt_input=False, integer=settings)
    folded = generate(ckpt, model, "tok", dt_input=False, integer=settings, token_table="folded")
    assert auto.token_table == "embedding" and folded.token_table == "folded"
    assert "tok_embedding_off" in auto.source and auto.flash_bytes < folded.flash_bytes
    forced = generate(ckpt, model, "tok", dt_input=False, integer=settings, sparse="always")
    x = _inputs(ckpt, n=16, steps=12, seed=5)
    want = CEngine(folded)(x)
    for src in (auto, forced):  # float: the token's non-zeros pick input columns, dense or sparse ones
        got = CEngine(src)(x)
        assert torch.equal(got.argmax(-1), want.argmax(-1))
        assert (got - want).abs().max() <= 1e-4 * max(1.0, want.abs().max().item())
    # the token's non-zeros pick input columns (the integer step then folds its gate and scales)
    assert "tok_c0_input" not in auto.source and "tok_c0_w_in_starts" in forced.source
    dense = _token_model("cfc")
    assert generate(dense, model_from_checkpoint(dense), "tok", dt_input=False).token_table == "folded"


def test_unknown_token_table_is_a_clear_error():
    from cfctool.errors import ConfigError

    ckpt = _token_model("cfc")
    with pytest.raises(ConfigError, match="unknown token table 'tiny': choose one of auto, folded, embedding"):
        generate(ckpt, model_from_checkpoint(ckpt), "tok", dt_input=False, token_table="tiny")


def test_row_align_pads_integer_rows_to_what_the_target_wants(trained_xor):
    """16 bytes (whole vector registers) by default; 4 for a Cortex-M4: less flash, same results."""
    from cfctool.configs import QuantizeConfig
    from cfctool.engines import integer_settings
    from cfctool.engines.native import CEngine
    from cfctool.ops.quantize import quantize

    ckpt = quantize(checkpoint.load(trained_xor["cfc-ncp"]), QuantizeConfig(calib=32))
    model = model_from_checkpoint(ckpt)
    wide, narrow = (generate(ckpt, model, "q", dt_input=False, integer=integer_settings(ckpt, model), row_align=a)
                    for a in (16, 4))
    for src, align in ((wide, 16), (narrow, 4)):
        lengths = [int(n) for n in re.findall(r"q_dot_u8\(\w+, (\d+),", src.source)]
        assert lengths and all(n % align == 0 for n in lengths) and f"multiples of {align} bytes" in src.header
    assert narrow.flash_bytes < wide.flash_bytes
    x = _inputs(ckpt, n=12, steps=8, seed=4)
    assert torch.equal(CEngine(wide)(x), CEngine(narrow)(x))


def test_saturated_gates_and_activations_stay_finite(silu_xor):
    """Large inputs and a large dt push the sigmoids and SiLU far into saturation, where an
    infinite expf under -ffast-math made NaN (a Walker2d model with dt of 4 frames did)."""
    from cfctool.engines.native import CEngine

    ckpt = checkpoint.load(silu_xor)
    model = model_from_checkpoint(ckpt)
    engine = CEngine(generate(ckpt, model, "sat", dt_input=True))
    x = _inputs(ckpt) * 200.0
    dt = torch.full(x.shape[:2], 500.0)
    want = FoldedCfC(model)(x, dt, None)
    got = engine(x, dt, None)
    assert torch.isfinite(got).all() and torch.isfinite(want).all()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_sparse_layout_round_trips_and_groups_rows_by_count():
    """The sparse product's arrays hold exactly the non-zeros: rebuilt, they are the matrix
    (empty rows included); the groups' lengths add up; indices take the narrowest type."""
    from cfctool.engines.c_products import SparseLayout, index_type

    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 300, generator=g) * (torch.rand(40, 300, generator=g) < 0.1)
    w[3] = 0.0  # a row with no non-zero
    layout = SparseLayout.of(w)
    rebuilt = torch.zeros_like(w)
    k, q = 0, 0
    for count, rows in layout.groups:
        for _ in range(rows):
            rebuilt[int(layout.rows[q]), layout.columns[k:k + count]] = layout.values[k:k + count]
            k, q = k + count, q + 1
    assert torch.equal(rebuilt, w) and k == int(torch.count_nonzero(w)) and q == int((w != 0).any(1).sum())
    assert [c for c, _ in layout.groups] == sorted({int(c) for c in (w != 0).sum(1) if c})
    assert index_type(256) == ("uint8_t", 1) and index_type(300) == ("uint16_t", 2)
    assert SparseLayout.of(torch.zeros(4, 5)).groups == ()


def test_each_product_is_dense_or_sparse_by_its_own_density():
    from cfctool.engines.c_products import SPARSE_BELOW, choose_form

    w = torch.zeros(10, 100)
    w[:, :5] = 1.0  # 5% dense
    assert choose_form(w, integer=False) == ("sparse" if 0.05 < SPARSE_BELOW["float"] else "dense")
    assert choose_form(w, integer=True) == ("sparse" if 0.05 < SPARSE_BELOW["int8"] else "dense")
    assert choose_form(torch.ones(10, 100), integer=False) == "dense"
    assert choose_form(torch.ones(10, 100), integer=False, sparse="always") == "sparse"
    assert choose_form(w, integer=False, sparse="never") == "dense"


@pytest.fixture(scope="module")
def pruned_xor(trained_xor, tmp_path_factory):
    """Each architecture with 80% of its weights removed (global, unstructured)."""
    from cfctool.configs import PruneConfig
    from cfctool.ops.prune import prune

    folder = tmp_path_factory.mktemp("pruned")
    paths = {}
    for arch in ("cfc", "cfc-deep", "cfc-ncp"):
        paths[arch] = folder / f"{arch}.st"
        checkpoint.save(prune(checkpoint.load(trained_xor[arch]), PruneConfig(ratio=0.8)), paths[arch])
    return paths


@pytest.mark.parametrize("arch", ["cfc", "cfc-deep", "cfc-ncp"])
@pytest.mark.parametrize("integer", [False, True])
def test_sparse_c_equals_the_folded_engine(pruned_xor, arch, integer):
    """Every product sparse (NCP wiring masks included): float within the folded engine's 1e-5
    rule, int8 with the same integer sums (identical predictions); the header says so."""
    from cfctool.configs import QuantizeConfig
    from cfctool.engines import choose, integer_settings
    from cfctool.engines.native import CEngine
    from cfctool.ops.quantize import quantize

    ckpt = checkpoint.load(pruned_xor[arch])
    if integer:
        ckpt = quantize(ckpt, QuantizeConfig(calib=32))
    model = model_from_checkpoint(ckpt)
    reference = choose(ckpt, model).module
    settings = integer_settings(ckpt, model) if integer else None
    src = generate(ckpt, model, "s", dt_input=True, integer=settings, sparse="always")
    dense = generate(ckpt, model, "s", dt_input=True, integer=settings, sparse="never")
    assert src.products and all(p.form == "sparse" for p in src.products)
    assert any(p.integer for p in src.products) == integer  # (float inputs enter int8 C by a float product)
    assert all(p.form == "dense" for p in dense.products)
    assert f"products: 0 dense, {len(src.products)} sparse" in src.header
    assert src.flash_bytes < dense.flash_bytes
    x = _inputs(ckpt, n=32, steps=10, seed=7)
    dt = torch.rand(x.shape[:2], generator=torch.Generator().manual_seed(8)) + 0.5
    want, got = reference(x, dt), CEngine(src)(x, dt)
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    tol = (1e-4 if integer else 1e-5) * max(1.0, want.abs().max().item())
    assert (got - want).abs().max() <= tol


def _has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "avx512_vnni" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_vnni(), reason="this CPU has no AVX-512 VNNI (the portable path is what runs here)")
@pytest.mark.parametrize("arch", ["cfc", "cfc-ncp"])
def test_vnni_integer_products_equal_the_portable_ones(trained_xor, arch):
    """The AVX-512 VNNI blocks hold the same integers as the padded rows: compiled with and
    without VNNI, the int8 C gives the same logits (the int32 sums are exact either way)."""
    from cfctool.configs import QuantizeConfig
    from cfctool.engines import integer_settings
    from cfctool.engines.native import FLAGS, CEngine
    from cfctool.ops.quantize import quantize

    ckpt = quantize(checkpoint.load(trained_xor[arch]), QuantizeConfig(calib=32))
    model = model_from_checkpoint(ckpt)
    src = generate(ckpt, model, "v", dt_input=True, integer=integer_settings(ckpt, model))
    assert "#if V_VNNI" in src.source
    x = _inputs(ckpt, n=24, steps=10, seed=11)
    dt = torch.rand(x.shape[:2], generator=torch.Generator().manual_seed(12)) + 0.5
    vnni = CEngine(src)(x, dt)
    portable = CEngine(src, FLAGS + ("-mno-avx512vnni",))(x, dt)
    assert torch.equal(vnni.argmax(-1), portable.argmax(-1))
    assert torch.allclose(vnni, portable, rtol=1e-6, atol=1e-6)


def _compiled_product(tmp_path, w, call: str, args: str, flags=()):
    """The writer's arrays and functions, with `call` wrapped as `run(args)`, as a loaded library."""
    import ctypes

    from cfctool.engines.c_source import assemble

    (tmp_path / "t.h").write_text("")
    code = f"void run({args});\nvoid run({args})\n{{\n    {call}\n}}\n"
    (tmp_path / "t.c").write_text(assemble("t", w, code))
    lib = tmp_path / "t.so"
    run = subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Werror", "-march=native", *flags, "-shared", "-fPIC",
                          "-o", str(lib), str(tmp_path / "t.c")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return ctypes.CDLL(str(lib)).run


def _pointer(t: torch.Tensor, ctype):
    import ctypes

    return t.numpy().ctypes.data_as(ctypes.POINTER(ctype))


@pytest.mark.parametrize("shape", [(5, 70), (130, 3), (64, 64)])
@pytest.mark.parametrize("sparse", ["never", "always"])
def test_the_float_product_emitters_compute_w_x(tmp_path, shape, sparse):
    """A product stage alone (blocked dense or grouped sparse, odd sizes, empty rows): out += W x."""
    import ctypes

    from cfctool.engines.c_writer import Writer

    g = torch.Generator().manual_seed(sum(shape))
    weight = torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.3)
    weight[1] = 0.0
    x, out = torch.randn(shape[1], generator=g), torch.randn(shape[0], generator=g)
    w = Writer("t", sparse=sparse)
    call = w.matvec("p", weight.t().contiguous(), "a test product", "x", "out")
    assert w.products[0].form == ("sparse" if sparse == "always" else "dense")
    run = _compiled_product(tmp_path, w, call, "const float *x, float *out")
    got = out.clone()
    run(_pointer(x, ctypes.c_float), _pointer(got, ctypes.c_float))
    assert torch.allclose(got, out + weight @ x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,align", [((70, 20), 16), ((5, 33), 4), ((64, 64), 1), ((130, 8), 16)])
@pytest.mark.parametrize("sparse", ["never", "always"])
def test_the_integer_product_emitters_compute_exact_sums(tmp_path, shape, align, sparse):
    """The integer product stage (padded rows, VNNI blocks where the compiler targets them, or
    grouped non-zeros): acc = Q x exactly, for uint8 codes x and int8 weights."""
    import ctypes

    from cfctool.engines.c_writer import Writer, padded

    g = torch.Generator().manual_seed(shape[0] + align)
    q = torch.randint(-127, 128, shape, generator=g, dtype=torch.int8) * (torch.rand(shape, generator=g) < 0.5)
    x = torch.zeros(padded(shape[1], align), dtype=torch.uint8)
    x[:shape[1]] = torch.randint(0, 256, (shape[1],), generator=g, dtype=torch.uint8)
    want = (q.to(torch.int64) @ x[:shape[1]].to(torch.int64)).to(torch.int32)
    w = Writer("t", align, sparse)
    call = w.dot_u8("q", q, "a test product", "x", "acc")
    targets = [()] + ([("-mno-avx512vnni",)] if _has_vnni() and w.vnni else [])
    for flags in targets:
        run = _compiled_product(tmp_path, w, call, "const uint8_t *x, int32_t *acc", flags)
        acc = torch.full((shape[0] + 16,), -1, dtype=torch.int32)  # past the outputs: must stay untouched
        run(_pointer(x, ctypes.c_uint8), _pointer(acc, ctypes.c_int32))
        assert torch.equal(acc[:shape[0]], want) and (acc[shape[0]:] == -1).all(), flags
