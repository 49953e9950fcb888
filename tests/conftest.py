import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
from helpers import tiny_run

# Under pytest-xdist (`make test`: one worker per core) every worker, and every command it
# starts, keeps to one thread unless a test asks for more: torch's default pool in each worker
# put two threads on each core, and the suite ran slower for it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    """The real data sets; tests that need them skip with a reason when they are absent."""
    path = Path(os.environ.get("CFCTOOL_DATA", SHARED_DATA))
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set CFCTOOL_DATA)")
    return path


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(monkeypatch):
    """Run `cfctool ARGS` in-process through the real entry point; returns exit code, stdout, stderr."""
    from cfctool.cli.app import main

    def run(*args, stdin: bytes | None = None) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture(scope="session")
def trained_xor(tmp_path_factory):
    """One small trained XOR checkpoint per architecture, saved to disk: {arch: path}."""
    from cfctool import checkpoint
    from cfctool.ops.train import train

    folder = tmp_path_factory.mktemp("ckpts")
    paths = {}
    for arch in ("cfc", "cfc-deep", "cfc-ncp", "ltc"):
        path = folder / f"{arch}.st"
        checkpoint.save(train(tiny_run(arch)), path)
        paths[arch] = path
    return paths


@pytest.fixture(scope="session")
def learned_xor(tmp_path_factory):
    """The quick XOR preset trained to ~100% (the tiny fixtures are near chance)."""
    from cfctool import checkpoint
    from cfctool.configs import resolve
    from cfctool.ops.train import train

    path = tmp_path_factory.mktemp("learned") / "xor.st"
    checkpoint.save(train(resolve("xor", "cfc", overrides={"threads": 2, "train_size": 8000, "epochs": 3})), path)
    return path
