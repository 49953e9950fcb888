"""The layers of docs/design/architecture.md hold: no import runs back up a layer and no
module imports itself through others. Checked with import-linter's contracts (pyproject's
[tool.importlinter]) on the real package, and on a copy with a planted back-import and a
planted cycle, which must break them: a contract that cannot fail is no check."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
pytestmark = pytest.mark.skipif(lint_imports is None, reason="import-linter is not installed (the test extra has it)")


def _lint(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    only = [arg for c in contracts for arg in ("--contract", c)]
    return subprocess.run([lint_imports, "--no-cache", "--config", str(root / "pyproject.toml"), *only], cwd=root,
                          capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "cfctool", tmp_path / "cfctool", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _package_imports() -> dict[str, set[str]]:
    import grimp

    graph = grimp.build_graph("cfctool", cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of modules (function-level imports included)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return cycles


def test_the_package_keeps_its_layer_and_cycle_contracts():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


def test_no_module_reaches_itself_through_imports():
    edges = _package_imports()
    assert len(edges) > 50 and "cfctool.training.fit" in edges["cfctool.ops.train"]  # the real graph
    assert _cycles(edges) == []
    # the finder finds a planted one: a three-module ring beside an acyclic tail
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module,planted,contract", [
    # a model importing a command (as models/quantized once did for HEADS): an arrow back up
    ("models/quantized.py", "from cfctool.ops.quantize import quantize", "layers"),
    # a data module importing the configs above it (as data/registry once did)
    ("data/registry.py", "from cfctool.configs import DataConfig", "layers"),
    # the compression driver importing a method (the methods import the driver, never the reverse)
    ("ops/compress.py", "from cfctool.ops.prune import prune", "acyclic"),
])
def test_a_planted_back_import_or_cycle_breaks_a_contract(tmp_path, module, planted, contract):
    root = _copy(tmp_path)
    assert _lint(root, contract).returncode == 0  # the copy keeps it before the plant
    path = root / "cfctool" / module
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {planted}\n")  # function-level counts too
    r = _lint(root, contract)
    assert r.returncode != 0 and "BROKEN" in r.stdout, r.stdout + r.stderr
