"""A checkpoint is data, never code: crafted files against every path that writes, compiles or
loads what a file says (the C engine and its cache, the exporters, the report, the terminal),
and the hostile inputs of the last audit (sizes a file claims, YAML bombs, devices and FIFOs,
a writer killed at any instant). Each case failed on the code before it was fixed."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import resign, with_record

from cfctool import checkpoint
from cfctool.errors import CfcError, CheckpointError, ConfigError

HAS_CC = shutil.which("cc") is not None
needs_cc = pytest.mark.skipif(not HAS_CC, reason="no C compiler (cc) on this machine")

# a comment that ends early and code that runs when the library is loaded: the three ways
# out of a C block comment (plain, a backslash line splice, a trigraph for the backslash)
_PAYLOAD = ' int system(const char *); __attribute__((constructor)) static void p(void) { system("touch PWNED"); } '
BREAKOUTS = [f"train */{_PAYLOAD}/*", f"train *\\\n/{_PAYLOAD}/*", f"train *??/\n/{_PAYLOAD}/*"]
NASTY = ["*/", "\\", "??/", "?", "#", "\x00", "\x1b[2J\x1b]0;owned\x07", "\r\n#define x", "|", "<script>", "[a](b)",
         "\u202e", "é€😀", "%s%n", "`rm -rf`", "*" * 5 + "/" * 5]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CFCTOOL_CACHE", str(tmp_path / "cache"))


def _string_paths(node, prefix=()):
    """Every place in a record that holds text (dict values and list items)."""
    if isinstance(node, str):
        yield prefix
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _string_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _string_paths(v, (*prefix, i))


def _set(record, path, value):
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _tokens(directory: Path, name: str) -> str:
    """The C token stream of NAME.c (with NAME.h), from the C preprocessor: comments gone,
    lines joined, trigraphs and splices applied, whitespace normalised."""
    run = subprocess.run(["cc", "-E", "-P", "-std=c99", "-trigraphs", f"{name}.c"], cwd=directory,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return " ".join(run.stdout.split())


def _c_of(ckpt, directory: Path, name: str = "m") -> str:
    from cfctool.engines.c_source import generate
    from cfctool.families.build import model_from_checkpoint

    src = generate(ckpt, model_from_checkpoint(ckpt), name, dt_input=False)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.h").write_text(src.header)
    (directory / f"{name}.c").write_text(src.source)
    return _tokens(directory, name)


# ----------------------------------------------------------------------------- 1. no code from a record


@needs_cc
@pytest.mark.parametrize("payload", BREAKOUTS, ids=["comment-end", "line-splice", "trigraph"])
def test_a_crafted_history_command_cannot_reach_the_compiler(payload, trained_xor, tmp_path, monkeypatch, cli):
    """The repro of the audit: the record's history command in the C header. The generated
    tokens equal a clean record's, and `eval --engine c` runs no code of the file's."""
    clean = checkpoint.load(trained_xor["cfc"])
    evil_bytes = with_record(trained_xor["cfc"].read_bytes(), lambda r: r["history"][0].update(command=payload))
    evil = checkpoint.load_bytes(evil_bytes)
    assert _c_of(evil, tmp_path / "evil") == _c_of(clean, tmp_path / "clean")
    (tmp_path / "evil.st").write_bytes(evil_bytes)
    monkeypatch.chdir(tmp_path)
    r = cli("eval", tmp_path / "evil.st", "--engine", "c")
    assert r.code == 0, r.err
    assert not (tmp_path / "PWNED").exists()


@needs_cc
def test_fuzzed_record_strings_never_change_the_generated_c(trained_xor, tmp_path):
    """Random Unicode, control characters, `\\`, `?`, `*/`, `#` and NUL in every string of the
    record (each case one field): the file loads and gives the clean record's C tokens, one
    intact Markdown table row and terminal-safe cells, or it is refused as a damaged
    checkpoint - never anything else."""
    data = trained_xor["cfc"].read_bytes()
    clean = _c_of(checkpoint.load_bytes(data), tmp_path / "clean")
    record = json.loads(json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])["__metadata__"]["cfctool.record"])
    paths = [p for p in _string_paths(record) if p[0] not in ("tensors", "data_sha256")]
    from cfctool.escape import terminal
    from cfctool.ops import report as rep

    rng = random.Random(0)
    loaded = 0
    for i, path in enumerate(paths * 2):
        text = "".join(rng.choice(NASTY + [chr(rng.randrange(1, 0x2FFF))]) for _ in range(rng.randrange(1, 12)))
        crafted = with_record(data, lambda r: _set(r, path, text))
        try:
            ckpt = checkpoint.load_bytes(crafted)
        except CheckpointError:
            continue  # e.g. arch.name or task.dataset: a record cfctool refuses to interpret
        loaded += 1
        assert _c_of(ckpt, tmp_path / f"case{i}") == clean, (path, text)
        (tmp_path / f"case{i}.st").write_bytes(crafted)  # the Markdown report and the terminal table
        row = rep.row_for(tmp_path / f"case{i}.st")
        table = [line for line in rep.markdown([row]).splitlines() if line.startswith("|")]
        assert len(table) == 3 and len({len(line.replace("\\|", "").split("|")) for line in table}) == 1, text
        assert all(cell == terminal(cell) for cell in rep.cells(row)), text
    assert loaded >= len(paths)  # the history, versions, argv and metrics strings all load


def test_markdown_report_and_terminal_carry_no_markup_or_escapes(trained_xor, tmp_path, cli):
    """The same strings through `report` (Markdown and the terminal table) and `info`."""
    evil = "x | y\n| injected | row |\x1b]0;owned\x07 <img src=x> [a](javascript:b)"
    path = tmp_path / "evil.st"
    path.write_bytes(with_record(trained_xor["cfc"].read_bytes(),
                                 lambda r: (r["history"][0].update(command=evil, argv=["cfctool", evil]),
                                            r["history"][0]["config"].update(arch={"name": evil}))))
    r = cli("report", path, "-o", tmp_path / "r.md")
    assert r.code == 0, r.err
    table = [line for line in (tmp_path / "r.md").read_text().splitlines() if line.startswith("|")]
    unescaped = [len(line.replace("\\|", "").split("|")) for line in table]
    assert len(set(unescaped)) == 1 and len(table) == 3  # header, rule, one row: nothing broke out
    text = (tmp_path / "r.md").read_text()
    assert "\x1b" not in text and not re.search(r"(?<!\\)(<img|\]\(javascript)", text), text
    for args in (("info", path), ("report", path)):
        r = cli(*args)
        assert r.code == 0 and "\x1b" not in r.out and "\x07" not in r.out, r.err


@pytest.mark.slow
def test_onnx_export_carries_no_record_text(trained_xor, tmp_path, cli):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    marker = "RECORD-TEXT-MARKER"
    evil = tmp_path / "evil.st"
    evil.write_bytes(with_record(trained_xor["cfc"].read_bytes(),
                                 lambda r: r["history"][0].update(command=marker, argv=[marker])))
    r = cli("export", evil, "-o", tmp_path / "evil.onnx", "--quiet")
    assert r.code == 0, r.err
    assert marker.encode() not in (tmp_path / "evil.onnx").read_bytes()
    model = onnx.load(str(tmp_path / "evil.onnx"))
    assert marker not in str(model.graph) and all(marker not in p.value for p in model.metadata_props)


def test_c_names_are_identifiers_of_bounded_length(trained_xor, tmp_path, cli):
    from cfctool.engines.c_source import c_name
    from cfctool.escape import is_c_identifier

    for text in ["a*/b", "9lives", "x" * 300, "__init__", "é", "", "model.v2"]:
        assert is_c_identifier(c_name(text)), text
    assert c_name("x" * 300) != c_name("x" * 299)  # long names stay apart
    r = cli("export", trained_xor["cfc"], "--format", "c", "-o", tmp_path / "out", "--name", "a*/b")
    assert r.code == 2 and "is not a C identifier" in r.err and not (tmp_path / "out").exists()
    long_name = tmp_path / ("m" * 200 + ".st")
    shutil.copy(trained_xor["cfc"], long_name)
    if HAS_CC:
        r = cli("eval", long_name, "--engine", "c")
        assert r.code == 0, r.err


# ----------------------------------------------------------------------------- 1b. the header hash


def test_an_edited_record_or_tensor_table_is_detected_like_a_flipped_bit(trained_xor, tmp_path):
    data = trained_xor["cfc"].read_bytes()
    n = struct.unpack("<Q", data[:8])[0]

    def edited(change) -> bytes:
        header = json.loads(data[8:8 + n])
        change(header)
        head = json.dumps(header).encode()
        head += b" " * (-len(head) % 8)
        return struct.pack("<Q", len(head)) + head + data[8 + n:]

    def record(header):
        r = json.loads(header["__metadata__"]["cfctool.record"])
        r["history"][0]["command"] = "edited"
        header["__metadata__"]["cfctool.record"] = json.dumps(r)

    def table(header):
        name = next(k for k in sorted(header) if k != "__metadata__" and len(header[k]["shape"]) == 2)
        header[name]["shape"] = list(reversed(header[name]["shape"]))

    for change in (record, table):
        with pytest.raises(CheckpointError, match="the header .* do not match the sha256 recorded in the file"):
            checkpoint.load_bytes(edited(change))
    ckpt = checkpoint.load(trained_xor["cfc"])
    assert ckpt.header_sha256 is not None and ckpt.sha256 is not None


def test_files_without_a_header_hash_still_load_and_say_so(trained_xor, tmp_path, cli):
    data = trained_xor["cfc"].read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    del header["__metadata__"][checkpoint.META_SHA256]
    (tmp_path / "older.st").write_bytes(resign(header, data[8 + n:]))
    assert checkpoint.load(tmp_path / "older.st").header_sha256 is None
    assert "no header hash" in cli("info", tmp_path / "older.st").out


# ----------------------------------------------------------------------------- 2, 3. the compile cache


def _engine(ckpt_path):
    from cfctool.engines.native import CModel
    from cfctool.families.build import model_from_checkpoint

    ckpt = checkpoint.load(ckpt_path)
    return CModel(ckpt, model_from_checkpoint(ckpt))


@needs_cc
def test_the_cache_is_private_and_refuses_other_users_and_writers(trained_xor, tmp_path, monkeypatch):
    from cfctool.engines import native

    lib = Path(_engine(trained_xor["cfc"])._variants[False].lib_path)
    cache = lib.parent
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    os.chmod(cache, 0o777)
    with pytest.raises(CfcError, match="can be written by other users"):
        native.private_cache()
    os.chmod(cache, 0o700)
    if os.getuid() == 0:  # a real second user: the cache handed to nobody (65534)
        os.chown(cache, 65534, 65534)
        with pytest.raises(CfcError, match=r"belongs to another user \(uid 65534\)"):
            native.private_cache()
        os.chown(cache, 0, 0)
    monkeypatch.setattr(native.os, "getuid", lambda: os.stat(cache).st_uid + 1)  # as another user sees it
    with pytest.raises(CfcError, match="belongs to another user"):
        native.private_cache()


@needs_cc
@pytest.mark.parametrize("damage", ["planted", "truncated", "empty", "garbage", "directory", "no-hash",
                                    "foreign-owner"])
def test_a_damaged_or_planted_library_is_rebuilt_never_loaded(damage, trained_xor, tmp_path, monkeypatch):
    """Whatever sits at a library's name without the hash recorded when it was built (another
    library that runs code on load, a truncated one that would SIGBUS) is rebuilt."""
    first = _engine(trained_xor["cfc"])._variants[False]
    lib = Path(first.lib_path)
    good = lib.read_bytes()
    lib.unlink()
    if damage == "planted":
        evil = tmp_path / "evil.c"
        evil.write_text('#include <stdio.h>\n__attribute__((constructor)) static void p(void) '
                        f'{{ FILE *f = fopen("{tmp_path / "PWNED"}", "w"); if (f) fclose(f); }}\n')
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(evil)], check=True)
    elif damage == "truncated":
        lib.write_bytes(good[: len(good) // 3])
    elif damage == "empty":
        lib.write_bytes(b"")
    elif damage == "garbage":
        lib.write_bytes(os.urandom(4096))
    elif damage == "directory":
        lib.mkdir()
    elif damage == "no-hash":
        lib.write_bytes(good)
        lib.with_suffix(".sha256").unlink()
    else:  # the right bytes, but another user's file (they could change it after the check)
        if os.getuid() != 0:
            pytest.skip("needs root to hand a file to another user")
        lib.write_bytes(good)
        os.chown(lib, 65534, 65534)
    again = _engine(trained_xor["cfc"])._variants[False]
    assert not (tmp_path / "PWNED").exists()
    # rebuilt (dlopen of a name already loaded would hide a planted constructor: compare the file)
    from cfctool.engines.native import _cached
    assert Path(again.lib_path) == lib and _cached(lib) and lib.read_bytes() == good
    assert os.stat(lib).st_uid == os.getuid()
    x = torch.randn(3, 5, 1)
    assert torch.equal(again(x), first(x))


@needs_cc
def test_cache_locations_that_cannot_work_are_error_lines(trained_xor, tmp_path, monkeypatch, cli):
    (tmp_path / "afile").write_text("")
    for where, message in ((tmp_path / "afile", "is not a directory"),
                           (tmp_path / ("d" * 300), "cannot create the C engine's cache")):
        monkeypatch.setenv("CFCTOOL_CACHE", str(where))
        r = cli("eval", trained_xor["cfc"], "--engine", "c")
        assert r.code == 1 and "error: " in r.err and message in r.err, r.err


@needs_cc
def test_the_build_does_not_cross_file_systems(trained_xor, tmp_path, monkeypatch):
    """Compiled inside the cache: a temp dir on another file system (a tmpfs /tmp) is never used."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system (/dev/shm) to put the temp dir on")
    other = Path(os.environ.get("TMPDIR_TEST", shm)) / f"cfctool-test-{os.getpid()}"
    other.mkdir(exist_ok=True)
    try:
        monkeypatch.setenv("TMPDIR", str(other))
        monkeypatch.setattr("tempfile.tempdir", str(other))
        assert _engine(trained_xor["cfc"])._variants[False].lib_path.is_file()
    finally:
        shutil.rmtree(other, ignore_errors=True)


@needs_cc
def test_loading_the_library_keeps_denormals(trained_xor):
    """No flush-to-zero for the Python process (gcc links crtfastmath into -ffast-math libraries)."""
    code = ("import sys; from cfctool import checkpoint; from cfctool.engines.native import CModel; "
            "from cfctool.families.build import model_from_checkpoint; "
            f"c = checkpoint.load({str(trained_xor['cfc'])!r}); CModel(c, model_from_checkpoint(c)); "
            "import torch; x = float(sys.argv[1]); "
            "print(x * 1.0 > 0, torch.tensor([1e-40]).mul(1.0).item() > 0)")
    run = subprocess.run([sys.executable, "-c", code, "5e-324"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "True"]  # denormals survive (flush-to-zero would make both 0)


@needs_cc
def test_weights_that_are_not_finite_are_refused_naming_the_tensor(trained_xor, tmp_path, cli):
    ckpt = checkpoint.load(trained_xor["cfc"])
    tensors = dict(ckpt.tensors)
    name = next(k for k in sorted(tensors) if k.endswith("weight"))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    checkpoint.save(ckpt.derive(tensors), tmp_path / "nan.st")
    for args in (("export", tmp_path / "nan.st", "--format", "c", "-o", tmp_path / "c"),
                 ("eval", tmp_path / "nan.st"), ("eval", tmp_path / "nan.st", "--engine", "c")):
        r = cli(*args)
        assert r.code == 1 and f"tensor '{name}' holds NaN or infinite values" in r.err, (args, r.err)
    assert not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------- 4. import ncps sizes


def _safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


@pytest.mark.parametrize("units", [20_000, 2 ** 20 + 1])
def test_import_refuses_sizes_the_file_does_not_hold(units, tmp_path, cli):
    """A few kilobytes claiming an LTC of 20,000 (or 2^20 + 1) neurons: refused at once, not
    minutes and gigabytes (or a 4.4 TB allocation) later."""
    path = _safetensors(tmp_path / "w.safetensors", {"rnn.rnn_cell.gleak": torch.ones(units),
                                                     "rnn.rnn_cell.sensory_w": torch.ones(1, 8),
                                                     "rnn.rnn_cell.output_w": torch.ones(2),
                                                     "rnn.rnn_cell.output_b": torch.zeros(2)})
    start = time.perf_counter()
    r = cli("import", "ncps", path, "--dataset", "xor", "-o", tmp_path / "o.st")
    assert time.perf_counter() - start < 10
    assert r.code in (1, 2) and "error: " in r.err and "Traceback" not in r.err, r.err
    assert not (tmp_path / "o.st").exists()


@pytest.mark.parametrize("case", ["scalar-gleak", "1d-readout", "odd-backbone"])
def test_malformed_ncps_files_are_error_lines(case, tmp_path, cli):
    ncps = pytest.importorskip("ncps.torch")
    torch.manual_seed(0)
    module = torch.nn.ModuleDict({"rnn": ncps.CfC(1, 8, backbone_layers=2, backbone_units=8),
                                  "fc": torch.nn.Linear(8, 2)})
    state = {k: v.detach() for k, v in module.state_dict().items()}
    if case == "scalar-gleak":
        state = {"rnn.rnn_cell.gleak": torch.tensor(1.0), "rnn.rnn_cell.sensory_w": torch.ones(1, 4)}
    elif case == "1d-readout":
        state["fc.weight"] = torch.ones(8)
    else:
        state["rnn.rnn_cell.backbone.7.weight"] = state.pop("rnn.rnn_cell.backbone.2.weight")
        state["rnn.rnn_cell.backbone.7.bias"] = state.pop("rnn.rnn_cell.backbone.2.bias")
    path = _safetensors(tmp_path / "w.safetensors", state)
    r = cli("import", "ncps", path, "--dataset", "xor", "--readout", "fc", "-o", tmp_path / "o.st")
    assert r.code in (1, 2) and "error: " in r.err and "Traceback" not in r.err, r.err
    assert not (tmp_path / "o.st").exists()


def test_import_flags_and_inputs_are_checked_first(tmp_path, cli):
    ncps = pytest.importorskip("ncps.torch")
    torch.manual_seed(0)
    path = _safetensors(tmp_path / "w.safetensors", dict(ncps.LTC(1, 4).state_dict()))
    r = cli("import", "ncps", path, "--dataset", "xor", "--ode-unfolds", "0", "-o", tmp_path / "o.st")
    assert r.code == 2 and "--ode-unfolds must be from 1" in r.err
    start = time.perf_counter()  # IMDB's data are never read to say that --embedding is missing
    r = cli("import", "ncps", path, "--dataset", "imdb", "--data", tmp_path, "-o", tmp_path / "o.st")
    assert r.code == 2 and "--embedding" in r.err and time.perf_counter() - start < 5, r.err
    (tmp_path / "adir").mkdir()
    for given, message in (("/dev/zero", "is not a regular file"), (tmp_path / "adir", "is a directory"),
                           ("-", "reads a file, not standard input")):
        r = cli("import", "ncps", given, "--dataset", "xor", "-o", tmp_path / "o.st")
        assert r.code in (1, 2) and message in r.err, (given, r.err)


def test_a_wrong_size_ncps_file_is_a_one_line_file_error(tmp_path, cli):
    ncps = pytest.importorskip("ncps.torch")
    torch.manual_seed(0)
    state = dict(torch.nn.ModuleDict({"rnn": ncps.LTC(1, 4), "fc": torch.nn.Linear(4, 2)}).state_dict())
    state["rnn.rnn_cell.w"] = torch.ones(5, 5)  # one neuron more than gleak says
    path = _safetensors(tmp_path / "w.safetensors", state)
    r = cli("import", "ncps", path, "--dataset", "xor", "--readout", "fc", "-o", tmp_path / "o.st")
    assert r.code == 1 and [l for l in r.err.splitlines() if not l.startswith("[")] == [r.err.splitlines()[-1]], r.err


# ----------------------------------------------------------------------------- 5. config files


def test_a_yaml_alias_bomb_is_refused_at_once(trained_xor, tmp_path, cli):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1}]"
              for i in range(1, 9)]
    lines.append("ratio: *a8")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert len((tmp_path / "bomb.yaml").read_bytes()) < 1000
    start = time.perf_counter()
    r = cli("prune", trained_xor["cfc"], "--config", tmp_path / "bomb.yaml", "-o", tmp_path / "o.st")
    assert time.perf_counter() - start < 5
    assert r.code == 2 and "anchors" in r.err and len(r.err) < 2000, r.err[:300]


@pytest.mark.parametrize("text,message", [
    ("ratio: 0.5\nratio: 0.9\n", "duplicate key 'ratio'"),
    ("ratio: [1, 2]\n", "setting 'ratio' must be a finite number"),
    ("ratio: .inf\n", "setting 'ratio' must be a finite number"),
    ("finetune: abc\n", "setting 'finetune' must be an integer"),
    ("lr: .nan\n", "setting 'lr' must be a finite number"),
])
def test_wrong_config_values_are_usage_errors(text, message, trained_xor, tmp_path, cli):
    (tmp_path / "c.yaml").write_text(text)
    r = cli("prune", trained_xor["cfc"], "--config", tmp_path / "c.yaml", "-o", tmp_path / "o.st")
    assert r.code == 2 and message in r.err, r.err


def test_train_config_rejects_infinite_learning_rates(tmp_path, cli):
    (tmp_path / "t.yaml").write_text("lr: .inf\n")
    r = cli("train", "xor", "--config", tmp_path / "t.yaml", "-o", tmp_path / "o.st")
    assert r.code == 2 and "lr" in r.err and "finite" in r.err, r.err


# ----------------------------------------------------------------------------- 6. the rest of the audit


def _writer(path: Path, payloads, sidecars, fault=None):
    """In a forked child: write the pair again and again (alternating payloads), dying where
    `fault` says. The child never touches torch."""
    pid = os.fork()
    if pid == 0:
        try:
            checkpoint._fault = fault
            i = 0
            while True:
                checkpoint.write_pair(path, payloads[i % 2], sidecars[i % 2])
                i += 1
                if fault is not None:
                    break
        finally:
            os._exit(0)
    return pid


def _pair_is_whole(path: Path, payloads) -> bytes:
    data, _ = checkpoint._read_pair(path)
    assert data in payloads
    return data


@pytest.fixture
def two_payloads(trained_xor):
    import hashlib

    payloads = [checkpoint.to_bytes(checkpoint.load(trained_xor[a])) for a in ("cfc", "ltc")]
    sidecars = [checkpoint.sidecar_text(checkpoint.load_bytes(p), hashlib.sha256(p).hexdigest()).encode()
                for p in payloads]
    return payloads, sidecars


@pytest.mark.parametrize("step", ["staged", "pending", "sidecar", "done"])
def test_a_writer_killed_at_every_step_leaves_the_old_pair_or_the_new(step, two_payloads, tmp_path):
    payloads, sidecars = two_payloads
    out = tmp_path / "out.st"
    checkpoint.write_pair(out, payloads[0], sidecars[0])

    def die(name):
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)
    pid = _writer(out, [payloads[1], payloads[1]], [sidecars[1], sidecars[1]], fault=die)
    os.waitpid(pid, 0)
    expected = payloads[0] if step in ("staged", "pending") else payloads[1]
    assert _pair_is_whole(out, payloads) == expected
    checkpoint.write_pair(out, payloads[0], sidecars[0])  # the next writer removes what the dead one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.st", "out.yaml"]


def test_a_hundred_random_kills_leave_no_mismatched_pair(two_payloads, tmp_path):
    payloads, sidecars = two_payloads
    out = tmp_path / "out.st"
    checkpoint.write_pair(out, payloads[0], sidecars[0])
    rng = random.Random(0)
    mismatched = 0
    for _ in range(100):
        pid = _writer(out, payloads, sidecars)
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            _pair_is_whole(out, payloads)
        except (CheckpointError, AssertionError):
            mismatched += 1
    assert mismatched == 0


def test_a_waiting_writer_says_whose_lock_it_is(two_payloads, tmp_path):
    payloads, sidecars = two_payloads
    out = tmp_path / "out.st"
    read_end, write_end = os.pipe()
    holder = os.fork()
    if holder == 0:  # another process holds the output's lock for half a second
        try:
            with checkpoint._exclusive(out):
                os.write(write_end, b"x")
                time.sleep(0.5)
        finally:
            os._exit(0)
    os.read(read_end, 1)
    assert f"pid {holder}" in out.with_name("out.st.lock").read_text()
    heard = []
    checkpoint.write_pair(out, payloads[0], sidecars[0], on_wait=heard.append)
    os.waitpid(holder, 0)
    assert len(heard) == 1 and f"held by pid {holder}" in heard[0]
    assert checkpoint._read_pair(out)[0] == payloads[0]


def test_the_lock_is_never_followed_through_a_symlink(two_payloads, tmp_path):
    payloads, sidecars = two_payloads
    target = tmp_path / "victim"
    target.write_text("keep")
    (tmp_path / "out.st.lock").symlink_to(target)
    with pytest.raises(CheckpointError, match="symlink there is refused"):
        checkpoint.write_pair(tmp_path / "out.st", payloads[0], sidecars[0])
    assert target.read_text() == "keep"


def test_an_input_sharing_the_outputs_sidecar_is_refused(trained_xor, tmp_path, cli):
    shutil.copy(trained_xor["cfc"], tmp_path / "model")
    shutil.copy(checkpoint.sidecar_path(trained_xor["cfc"]), tmp_path / "model.yaml")
    before = (tmp_path / "model.yaml").read_bytes()
    r = cli("prune", tmp_path / "model", "--ratio", "0.5", "-o", tmp_path / "model.st")
    assert r.code == 2 and "would destroy the input" in r.err
    assert (tmp_path / "model.yaml").read_bytes() == before and not (tmp_path / "model.st").exists()


def test_devices_fifos_and_huge_inputs_are_refused_at_once(tmp_path, cli):
    fifo = tmp_path / "fifo.st"
    os.mkfifo(fifo)
    for given in ("/dev/zero", "/dev/urandom", fifo):
        start = time.perf_counter()
        r = cli("info", given)
        assert r.code == 1 and "is not a regular file" in r.err and time.perf_counter() - start < 5, r.err
    (tmp_path / "c.yaml").symlink_to("/dev/zero")
    r = cli("train", "xor", "--config", tmp_path / "c.yaml", "-o", tmp_path / "o.st")
    assert r.code == 2 and "is not a regular file" in r.err


@pytest.mark.parametrize("args,message", [
    (("bench", "{ckpt}", "--repeats", "1000000000"), "--repeats must be from 1 to 1,000"),
    (("bench", "{ckpt}", "--warmup", "1000000000"), "--warmup must be from 0 to 1,000"),
    (("bench", "{ckpt}", "--seq-len", "1000000000"), "--seq-len must be from 1 to 100,000"),
    (("bench", "{ckpt}", "--threads", "100000"), "--threads must be from 1 to 1024"),
    (("eval", "{ckpt}", "--threads", "100000"), "--threads must be from 1 to 1024"),
    (("export", "{ckpt}", "--format", "c", "--row-align", "1000000000", "-o", "{tmp}/c"), "--row-align"),
    (("train", "xor", "--hidden", str(2 ** 20), "-o", "{tmp}/o.st"), "parameters"),
    (("train", "xor", "--threads", "100000", "-o", "{tmp}/o.st"), "threads must be from 1 to 1024"),
])
def test_options_far_out_of_range_are_usage_errors_before_any_work(args, message, trained_xor, tmp_path, cli):
    start = time.perf_counter()
    r = cli(*(a.format(ckpt=trained_xor["cfc"], tmp=tmp_path) for a in args))
    assert r.code == 2 and message in r.err, r.err
    assert time.perf_counter() - start < 10
    assert not list(tmp_path.iterdir())


def test_report_on_a_non_numeric_metric_is_no_traceback(trained_xor, tmp_path, cli):
    path = tmp_path / "m.st"
    path.write_bytes(with_record(trained_xor["cfc"].read_bytes(), lambda r: r["metrics"].update(accuracy="high")))
    (tmp_path / "m.eval.json").write_text(json.dumps({"accuracy": "very"}))
    (tmp_path / "m.bench.json").write_text(json.dumps({"results": [{"split_seconds": {"median": "slow"}}]}))
    r = cli("report", path, "--json")
    assert r.code == 0 and "Traceback" not in r.err, r.err
    row = json.loads(r.out)[0]
    assert row["accuracy"] is None and row["cpu_seconds"] is None  # not numbers: not shown


def test_anything_unforeseen_is_one_internal_error_line(trained_xor, monkeypatch, cli):
    import cfctool.ops.info as info

    monkeypatch.setattr(info, "describe", lambda ckpt: 1 / 0)
    monkeypatch.delenv("CFCTOOL_TRACEBACK", raising=False)
    r = cli("info", trained_xor["cfc"])
    assert r.code == 3 and r.err.startswith("error: internal error (ZeroDivisionError") and r.err.count("\n") == 1
