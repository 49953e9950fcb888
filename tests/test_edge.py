"""examples/edge: the exported C on a host (stdin -> predictions) and, where the ARM tools are
installed, cross-compiled for a Cortex-M4 and run under QEMU, giving the host's outputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDGE = ROOT / "examples" / "edge"
needs_cc = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None,
                              reason="no C compiler (cc) or make on this machine")
needs_arm = pytest.mark.skipif(any(shutil.which(t) is None for t in ("arm-none-eabi-gcc", "qemu-system-arm")),
                               reason="arm-none-eabi-gcc and qemu-system-arm are not installed (Debian: "
                                      "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")


def _outputs(text: str) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in text.strip().splitlines()]


@pytest.fixture
def exported(trained_xor, cli, tmp_path, monkeypatch):
    """The XOR CfC exported as C, with 12 test sequences as text and the engine's logits."""
    monkeypatch.setenv("CFCTOOL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "edge"
    assert cli("export", trained_xor["cfc"], "--format", "c", "-o", out, "--name", "xor_cfc", "-q").code == 0
    seqs = subprocess.run([sys.executable, str(EDGE / "sequences.py"), str(trained_xor["cfc"]), str(out / "xor_cfc.h"),
                           "12"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    (out / "sequences.txt").write_text(seqs)
    from cfctool import checkpoint
    from cfctool.data.registry import load_split
    from cfctool.engines import choose
    from cfctool.families.build import model_from_checkpoint

    ckpt = checkpoint.load(trained_xor["cfc"])
    batch = load_split(ckpt.task, "test", None, ckpt.task_tensors()).take(slice(0, 12))
    engine = choose(ckpt, model_from_checkpoint(ckpt))
    return out, engine.module(batch.x, batch.dt, batch.mask)


def _make(out: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(EDGE), f"DIR={out}", "MODEL=xor_cfc", target],
                          capture_output=True, text=True, timeout=300)


@needs_cc
def test_the_host_program_predicts_what_the_engine_does(exported):
    out, logits = exported
    build = _make(out, "host")
    assert build.returncode == 0 and "warning" not in build.stderr, build.stderr
    run = subprocess.run([str(out / "build" / "host")], input=(out / "sequences.txt").read_text(),
                         capture_output=True, text=True, check=True)
    rows = _outputs(run.stdout)
    assert [int(r[0]) for r in rows] == logits.argmax(-1).tolist()
    for row, want in zip(rows, logits.tolist()):
        assert row[1:] == pytest.approx(want, rel=1e-4, abs=1e-5)


@needs_cc
@needs_arm
def test_the_cortex_m4_build_runs_under_qemu_like_the_host(exported):
    out, _ = exported
    size = _make(out, "size")
    assert size.returncode == 0, size.stderr
    text, data, bss = (int(v) for v in size.stdout.splitlines()[1].split()[:3])
    assert text > 0 and data == 0 and bss == 0  # weights are const (flash); no mutable globals
    assert _make(out, "host").returncode == 0
    host = subprocess.run([str(out / "build" / "host")], input=(out / "sequences.txt").read_text(),
                          capture_output=True, text=True, check=True).stdout
    qemu = _make(out, "qemu")
    assert qemu.returncode == 0, qemu.stderr
    got, want = _outputs(qemu.stdout), _outputs(host)
    assert len(got) == len(want) == 12
    for g, w in zip(got, want):
        assert g[0] == w[0] and g[1:] == pytest.approx(w[1:], rel=1e-4, abs=1e-5)
