"""The command line as a user meets it: outputs on stdout, `error:` lines and exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cfctool.checkpoint import load, save


def test_help_does_not_import_torch():
    code = ("import sys\nfrom cfctool.cli.app import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and proc.stdout.strip().endswith("ok")


def test_train_eval_info_round(cli, tmp_path):
    out = tmp_path / "x.st"
    r = cli("train", "xor", "--arch", "cfc", "--train-size", "512", "--epochs", "1", "--hidden", "8",
            "--backbone-units", "8", "-o", out)
    assert r.code == 0, r.err
    assert r.out.strip() == str(out)  # only the path on stdout
    assert "epoch 1/1" in r.err  # progress on stderr
    assert out.exists() and out.with_suffix(".yaml").exists()
    assert load(out).record["history"][0]["argv"] == ["cfctool", "train", "xor", "--arch", "cfc", "--train-size", "512",
                                                      "--epochs", "1", "--hidden", "8", "--backbone-units", "8",
                                                      "-o", str(out)]

    r = cli("eval", out, "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["samples"] == 2000 and 0 <= report["accuracy"] <= 1
    assert report["accuracy"] == pytest.approx(load(out).record["metrics"]["accuracy"])
    assert report["file_bytes"] == out.stat().st_size

    r = cli("info", out)
    assert r.code == 0 and "arch         cfc" in r.out and "history" in r.out

    r = cli("info", "-", stdin=out.read_bytes())
    assert r.code == 0 and "<stdin>" in r.out


@pytest.mark.slow
def test_train_to_stdout_pipes_into_info(tmp_path):
    train = subprocess.run([sys.executable, "-m", "cfctool", "train", "xor", "--train-size", "128", "--max-steps", "2",
                            "--hidden", "4", "--backbone-units", "4", "-q", "-o", "-"],
                           capture_output=True, timeout=120, cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    info = subprocess.run([sys.executable, "-m", "cfctool", "info", "-", "--json"], input=train.stdout,
                          capture_output=True, timeout=120)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["arch"]["hidden"] == 4
    assert list(tmp_path.iterdir()) == []  # nothing written beside


@pytest.mark.parametrize("args,message,code", [
    (["eval", "missing.st"], "no such checkpoint file", 1),
    (["info", "missing.st"], "no such checkpoint file", 1),
    (["train", "xor", "--arch", "gru"], "unknown arch 'gru'", 2),
    (["train", "xor", "--lr", "-1"], "lr must be > 0", 2),
    (["train", "xor", "-o", "no/such/dir/x.st"], "does not exist", 1),
    (["train", "xor", "-o", "x.pt"], "must end in .st", 2),
    (["train", "nope"], "unknown data set 'nope': give one of", 2),
    (["train", "xor", "--arch", "cfc-ncp", "--backbone-units", "8"], "does not apply to arch 'cfc-ncp'", 2),
    (["train", "xor", "-o", "/proc/x.st"], "cannot write /proc/x.st", 1),
    (["train", "xor", "--resume", "-o", "x.st"], "no training state", 2),
    (["train", "xor", "--hidden", "1000000000"], "hidden must be at most 1,048,576", 2),  # refused, not allocated
    (["info", "-"], "no data on standard input", 1),
])
def test_errors_are_one_line_with_the_documented_exit_code(cli, tmp_path, monkeypatch, args, message, code):
    """Exit 2: the command line or a config file asks for something invalid; 1: anything else."""
    monkeypatch.chdir(tmp_path)
    r = cli(*args, stdin=b"" if args[-1] == "-" else None)
    assert r.code == code, (r.out, r.err)
    assert r.err.startswith("error: ") and message in r.err
    assert "Traceback" not in r.err
    assert list(tmp_path.iterdir()) == []  # validated before any work: no output at all


def test_corrupted_checkpoint_on_the_command_line(cli, tmp_path, trained_xor):
    bad = tmp_path / "bad.st"
    bad.write_bytes(trained_xor["cfc"].read_bytes()[:500])
    r = cli("eval", bad)
    assert r.code == 1 and r.err.startswith("error: ") and "truncated" in r.err


def test_usage_errors_exit_2(cli):
    assert cli("train", "xor", "--epochs", "many").code == 2
    assert cli("frobnicate").code == 2


def test_config_file_and_unknown_key(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 0.1\n")
    r = cli("train", "xor", "--config", cfg, "-o", tmp_path / "x.st")
    assert r.code == 2 and "unknown setting 'learning_rate'" in r.err
    assert not (tmp_path / "x.st").exists()


# ---------------------------------------------------------------- defects a new user hit


def test_output_checks_happen_before_training(cli, tmp_path):
    (tmp_path / "x.yaml").mkdir()  # the sidecar path is taken by a directory
    r = cli("train", "xor", "-o", tmp_path / "x.st")
    assert r.code == 1 and "sidecar path" in r.err and "epoch" not in r.err  # refused before any training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.yaml"]
    r = cli("export", "whatever.st", "-o", "/proc/m.onnx")
    assert r.code == 1 and "cannot write /proc/m.onnx" in r.err


def test_outputs_get_the_umask_mode_not_0600(cli, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        r = cli("train", "xor", "--train-size", "64", "--max-steps", "1", "--hidden", "4", "--backbone-units", "4",
                "-q", "-o", tmp_path / "m.st")
    finally:
        os.umask(old)
    assert r.code == 0, r.err
    for name in ("m.st", "m.yaml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


@pytest.mark.slow
def test_closed_stdout_exits_like_a_unix_tool(trained_xor):
    proc = subprocess.Popen([sys.executable, "-m", "cfctool", "info", str(trained_xor["cfc"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written (`| head -0`)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141 and err == b""


def test_sidecar_errors_are_one_line_and_name_the_problem(cli, trained_xor, tmp_path):
    import shutil

    st = tmp_path / "m.st"
    shutil.copy(trained_xor["cfc"], st)
    (tmp_path / "m.yaml").write_text("format: 2\narch: {name: cfc}\n")
    r = cli("info", st)
    assert r.code == 1 and "has no 'sha256' field" in r.err and "None" not in r.err
    (tmp_path / "m.yaml").write_text("a: [1, 2\nb: {\n")
    r = cli("info", st)
    assert r.code == 1 and "not valid YAML" in r.err and "line" in r.err
    assert r.err.count("\n") == 1  # one line


def test_info_shows_small_numbers_with_significant_digits(trained_xor, tmp_path, cli):
    ckpt = load(trained_xor["cfc"])
    save(ckpt.derive(metrics={**ckpt.record["metrics"], "loss": 3.76e-05}), tmp_path / "m.st")
    r = cli("info", tmp_path / "m.st")
    assert "loss=3.76e-05" in r.out and "encodings    none" in r.out


def test_print_config_shows_the_resolved_settings_and_writes_nothing(cli, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 0.03\n")
    r = cli("train", "xor", "--arch", "cfc-deep", "--config", cfg, "--hidden", "12", "--print-config")
    assert r.code == 0, r.err
    shown = yaml.safe_load(r.out)
    assert shown["arch"]["hidden"] == 12 and shown["train"]["lr"] == 0.03  # flag and file
    assert shown["arch"]["backbone_layers"] == 5 and shown["data"]["bits"] == 10  # family default and preset
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_every_setting_has_a_flag_with_help(cli):
    from dataclasses import fields

    from cfctool.configs import ArchConfig, DataConfig, TrainConfig

    r = cli("train", "--help")
    text = " ".join(r.out.split())
    for cls in (ArchConfig, DataConfig, TrainConfig):
        for f in fields(cls):
            if f.name in ("name", "dataset", "data_dir"):
                continue
            assert "--" + f.name.replace("_", "-") in text, f.name
            assert f.metadata.get("help"), f"{f.name} has no help"


def test_max_test_samples_caps_and_records_the_test_set(cli, tmp_path):
    r = cli("train", "xor", "--train-size", "64", "--max-steps", "1", "--hidden", "4", "--backbone-units", "4",
            "--max-test-samples", "300", "-o", tmp_path / "m.st")
    assert r.code == 0, r.err
    m = load(tmp_path / "m.st").record["metrics"]
    assert m["samples"] == 300 and m["test_subset"]["of"] == 2000 and m["engine"] == "folded"
    assert "tested on 300 of 2000" in r.err


@pytest.mark.parametrize("args", [
    ["bench", "IN", "--repeats", "1", "-o", "x.st"],  # a report over the model
    ["bench", "IN", "--repeats", "1", "-o", "x.yaml"],  # ... over its sidecar, after which x.st no longer loads
    ["report", "IN", "-o", "x.yaml"],
    ["prune", "IN", "--ratio", "0.5", "-o", "x.st"],
    ["prune", "hard.st", "--ratio", "0.5", "-o", "x.st"],  # the same file under another name
    ["quantize", "IN", "-o", "x.st"],
    ["distill", "IN", "--student", "cfc", "--epochs", "1", "-o", "x.st"],
    ["train", "xor", "--config", "run.yaml", "-o", "run.st"],  # the sidecar would replace the config file
])
def test_outputs_never_destroy_inputs(args, cli, trained_xor, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(trained_xor["cfc"], "x.st")
    shutil.copy(trained_xor["cfc"].with_suffix(".yaml"), "x.yaml")
    os.link("x.st", "hard.st")
    (tmp_path / "run.yaml").write_text("epochs: 1\ntrain_size: 64\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    r = cli(*["x.st" if a == "IN" else a for a in args])
    assert r.code == 2 and "writing it would destroy the input; choose another -o" in r.err, r.err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwrite_replaces_the_input_checkpoint_on_purpose(cli, trained_xor, tmp_path):
    import shutil

    from cfctool.checkpoint import load

    shutil.copy(trained_xor["cfc"], tmp_path / "x.st")
    shutil.copy(trained_xor["cfc"].with_suffix(".yaml"), tmp_path / "x.yaml")
    r = cli("prune", tmp_path / "x.st", "--ratio", "0.5", "--overwrite", "-q", "-o", tmp_path / "x.st")
    assert r.code == 0, r.err
    out = load(tmp_path / "x.st")  # the new pair is consistent (the sidecar's hash matches)
    assert out.record["history"][-1]["command"] == "prune" and sorted(p.name for p in tmp_path.iterdir()) == [
        "x.st", "x.yaml"]


@pytest.mark.slow
@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_every_write_to_stdout_is_checked(unbuffered, tmp_path):
    """`-o -`: a full disk is exit 1 with one error line, a reader closing mid-stream is 141
    (not 0 with a truncated stream), with or without Python's buffering."""
    import pty

    from helpers import tiny_run

    from cfctool import checkpoint
    from cfctool.ops.train import train

    big = tmp_path / "big.st"  # larger than a pipe's buffer, so the reader can leave mid-stream
    checkpoint.save(train(tiny_run("cfc", hidden=128, backbone_units=128, max_steps=1)), big)
    assert big.stat().st_size > 4 * 65536
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    prune = [sys.executable, "-m", "cfctool", "prune", str(big), "--ratio", "0.5", "-q", "-o", "-"]
    if Path("/dev/full").exists():
        with open("/dev/full", "wb") as full:
            r = subprocess.run(prune, stdout=full, stderr=subprocess.PIPE, env=env, timeout=120)
        assert r.returncode == 1 and r.stderr.decode().startswith("error: cannot write the checkpoint to standard "
                                                                  "output: No space left on device")
    proc = subprocess.Popen(prune, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert len(proc.stdout.read(100)) == 100
    proc.stdout.close()  # the reader leaves mid-stream
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b""
    leader, follower = pty.openpty()  # a terminal: refused before any work, as gzip does
    r = subprocess.run(prune, stdout=follower, stderr=subprocess.PIPE, env=env, timeout=120)
    os.close(follower)
    os.close(leader)
    assert r.returncode == 2 and b"refusing to write a binary checkpoint to a terminal" in r.stderr


@pytest.mark.slow
def test_an_interrupted_training_says_what_it_kept_and_resumes(tmp_path):
    import signal
    import time

    out = tmp_path / "x.st"
    args = [sys.executable, "-m", "cfctool", "train", "xor", "--hidden", "8", "--train-size", "4000", "--epochs", "40",
            "--threads", "1", "--state-every", "0.000001", "-q", "-o", str(out)]
    # a background job's SIGINT is ignored, and children inherit that: give the run Python's default
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = tmp_path / "x.st.train-state"
    deadline = time.monotonic() + 60
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and not out.exists()
    assert f"but the training state {state} was kept" in err.decode() and "--resume" in err.decode()
    r = subprocess.run([*args[:-3], "--epochs", "1", "--resume", "-q", "-o", str(out)], capture_output=True,
                       timeout=120)  # the last --epochs counts: finish the epoch in progress
    assert r.returncode == 0 and out.exists() and not state.exists(), r.stderr.decode()


@pytest.mark.parametrize("args,message", [
    (["prune"], "error: Missing argument 'checkpoint'. (see `cfctool prune --help`)"),
    (["prune", "x.st", "--ratio", "abc", "-o", "y.st"], "error: Invalid value for '--ratio'"),
    (["prune", "--bogus"], "error: No such option: --bogus (see `cfctool prune --help`)"),
    (["frobnicate"], "error: No such command 'frobnicate'."),
])
def test_command_line_usage_errors_are_one_error_line(args, message, cli):
    r = cli(*args)
    assert r.code == 2 and r.err.startswith(message) and r.err.count("\n") == 1, r.err


def _leaves(app, prefix=()):
    """Every command of the app as its words (`import ncps` under its group)."""
    found = [(*prefix, c.name) for c in app.registered_commands]
    for group in app.registered_groups:
        found += _leaves(group.typer_instance, (*prefix, group.name))
    return found


def test_every_command_takes_config_and_print_config_and_shows_its_choices(cli, trained_xor, tmp_path):
    """One declaration style: every command's settings are a typed config; --print-config shows
    them as YAML, --config reads that back, an unknown key is refused, and each Literal choice
    is listed in --help."""
    import yaml

    from cfctool.cli.app import build_app
    from cfctool.configs import DataConfig, TrainConfig
    from cfctool.configs.base import literal_choices
    from cfctool.configs.commands import (
        BenchConfig, EvalConfig, ExportConfig, ImportNcpsConfig, InfoConfig, ReportConfig,
    )
    from cfctool.ops.methods import METHODS

    ckpt = str(trained_xor["cfc"])
    walk = {  # command: (its config classes, arguments that let it resolve its settings, its stored kind)
        ("train",): ((TrainConfig, DataConfig), ["xor"], "train"),
        ("distill",): ((), [ckpt, "--student", "cfc"], "distill"),
        ("eval",): ((EvalConfig,), [ckpt], "eval"),
        ("info",): ((InfoConfig,), [ckpt], "info"),
        ("bench",): ((BenchConfig,), [ckpt], "bench"),
        ("export",): ((ExportConfig,), [ckpt, "-o", tmp_path / "m.onnx"], "export"),
        ("import", "ncps"): ((ImportNcpsConfig,), [tmp_path / "w.safetensors", "-o", tmp_path / "w.st",
                                                   "--dataset", "xor"], "import"),
        ("report",): ((ReportConfig,), [ckpt], "report"),
        **{(name,): ((m.config,), [ckpt], name) for name, m in METHODS.items()},
    }
    walk["prune",] = (walk["prune",][0], [ckpt, "--ratio", "0.5"], "prune")  # the settings they require
    walk["reduce",] = (walk["reduce",][0], [ckpt, "--dim", "4"], "reduce")
    assert sorted(_leaves(build_app())) == sorted(walk)  # a new command must join this walk
    for words, (classes, args, kind) in walk.items():
        shown_help = " ".join(cli(*words, "--help").out.replace("│", " ").split())
        assert "--config" in shown_help and "--print-config" in shown_help, words
        for cls in classes:
            for name, choices in literal_choices(cls).items():
                assert f"One of: {', '.join(map(str, choices))}." in shown_help, (words, name)
        r = cli(*words, *args, "--print-config")
        assert r.code == 0, (words, r.err)
        shown = yaml.safe_load(r.out)
        assert shown["kind"] == kind and shown["version"] == 1, words
        saved = tmp_path / f"{kind}.yaml"
        saved.write_text(r.out)
        again = cli(*words, *args, "--config", saved, "--print-config")
        assert again.code == 0 and yaml.safe_load(again.out) == shown, (words, again.err)
        if kind not in ("info", "distill"):  # (info has no settings; distill's students take any train key)
            saved.write_text(f"kind: {kind}\nnot_a_setting: 1\n")
            bad = cli(*words, *args, "--config", saved, "--print-config")
            assert bad.code == 2 and "not_a_setting" in bad.err, (words, bad.err)
    # the --config of one command is refused by another
    saved.write_text("kind: eval\nsplit: val\n")
    r = cli("bench", ckpt, "--config", saved, "--print-config")
    assert r.code == 2 and "holds eval settings, not bench settings" in r.err
    # a Literal's choices are checked where no op would ask
    r = cli("eval", ckpt, "--split", "validation")
    assert r.code == 2 and "'split' must be one of test, val, train (got 'validation')" in r.err


def test_export_choices_are_the_engines_own():
    from cfctool.configs.base import literal_choices
    from cfctool.configs.commands import ExportConfig
    from cfctool.ops.export import FORMATS

    assert literal_choices(ExportConfig)["format"] == tuple(FORMATS)
