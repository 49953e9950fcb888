"""The command line as a user meets it: outputs on stdout, `error:` lines and exit codes."""

import json
import subprocess
import sys

import pytest

from cfctool.checkpoint import load


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
    (["train", "nope"], "dataset must be one of", 2),
    (["train", "xor", "--arch", "cfc-ncp", "--backbone-units", "8"], "does not apply to arch 'cfc-ncp'", 2),
    (["train", "xor", "-o", "/proc/x.st"], "cannot write /proc/x.st", 1),
    (["train", "xor", "--resume", "-o", "x.st"], "no training state", 2),
    (["prune", "x.st", "--ratio", "0.5"], "not implemented yet", 1),
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
