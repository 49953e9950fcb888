"""The README and the docs site: generated pages are current, links resolve, every command's
help has a description and an example, and no page cites files a reader does not have."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def _commands():
    import typer.main

    from cfctool.cli.app import build_app

    group = typer.main.get_command(build_app())
    return group, group.commands


def test_cli_reference_is_current():
    """docs/reference/cli.md is what the app generates now (`make cli-reference` rewrites it)."""
    from cfctool.cli.reference import render

    assert (ROOT / "docs/reference/cli.md").read_text() == render(), \
        "docs/reference/cli.md is out of date: run `make cli-reference`"


def test_cli_reference_check_fails_on_a_stale_page(tmp_path):
    from cfctool.cli.reference import main

    stale = tmp_path / "cli.md"
    stale.write_text((ROOT / "docs/reference/cli.md").read_text().replace("--ratio", "--rate"))
    with pytest.raises(SystemExit, match="out of date"):
        main([str(stale), "--check"])


def test_cli_reference_lists_every_command_and_option():
    """Each command's section names every option it takes, with the default --help shows."""
    text = (ROOT / "docs/reference/cli.md").read_text()
    _, commands = _commands()
    sections = dict(re.findall(r"^## `cfctool (\S+)`\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    assert set(sections) == set(commands)
    for name, command in commands.items():
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert f"`{opt}" in sections[name] or f", {opt}" in sections[name], (name, opt)
    assert "[default: 0.0002]" in sections["prune"]  # --lr's default, as the help shows it
    assert "Example: cfctool prune" in sections["prune"]


def test_every_command_help_has_a_description_and_an_example(cli):
    _, commands = _commands()
    names = [f"{name} {sub}" if sub else name for name, command in commands.items()
             for sub in (list(getattr(command, "commands", {})) or [None])]  # a group's subcommands
    assert "import ncps" in names
    for name in names:
        out = cli(*name.split(), "--help").out
        assert f"Example: cfctool {name}" in out, name
        # a paragraph after the one-line summary (rich wraps lines; paragraphs are blank-line separated)
        paragraphs = [p for p in re.split(r"\n\s*\n", out.split("╭")[0]) if p.strip() and "Usage:" not in p]
        assert len(paragraphs) >= 2, (name, paragraphs)
        assert "<bool>" not in out, name  # plain flags show no type


def test_a_flag_setting_shows_its_default_by_name(cli):
    out = " ".join(cli("prune", "--help").out.replace("│", " ").split())  # (a help text may wrap anywhere)
    assert "[default: --global]" in out and "[default: True]" not in out


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_and_no_private_files_are_cited(page):
    text = page.read_text()
    for target, _ in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
    for private in ("SEEDS.md", "LEADS.md", "DESIGN.md", "/work/", "shared/hooks"):
        assert private not in text, f"{page.name} cites {private}, which a reader of the repository does not have"
    assert not re.search(r"\b[Ii]ssue \d+|\bthe issue\b", text), f"{page.name} cites our issue tracker"


def test_makefile_bootstraps_a_cpu_torch_venv(tmp_path):
    """`make test` on a machine without .venv plans: venv, torch from the CPU index, the
    project with its extras, then pytest (a dry run: nothing is installed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "-n", f"VENV={venv}", "test"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    lines = out.splitlines()
    steps = [next(i for i, line in enumerate(lines) if pattern in line)
             for pattern in ("-m venv", "--index-url https://download.pytorch.org/whl/cpu", '-e ".[test,onnx,plot,docs,tables,lint]"',
                             "-m pytest")]
    assert steps == sorted(steps)
    (venv / "bin").mkdir(parents=True)
    (venv / ".cfctool-installed").touch()  # already bootstrapped: straight to the tests
    out = subprocess.run(["make", "-n", f"VENV={venv}", "test"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "pip install" not in out and "-m pytest" in out


@pytest.mark.parametrize("index,expected", [
    ("", None),  # offline: torch from pip's own index, no PyTorch URL at all
    ("http://10.255.255.1/unreachable", "--index-url http://10.255.255.1/unreachable"),
])
def test_torch_index_can_be_left_out_for_offline_installs(tmp_path, index, expected):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", f"VENV={tmp_path / 'venv'}", f"TORCH_INDEX={index}", "test"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    torch_line = next(line for line in out.splitlines() if "--no-deps" in line)
    if expected is None:
        assert "--index-url" not in torch_line and "download.pytorch.org" not in out
    else:
        assert expected in torch_line
    # no extras: the project alone (".[]" is not a requirement pip takes)
    out = subprocess.run(["make", "-n", f"VENV={tmp_path / 'venv'}", f"TORCH_INDEX={index}", "EXTRAS=", "test"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert '-e "."' in out and "[]" not in out


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    for command in ("make demo", "make test"):
        assert command in readme and f"\n{command}\n" in ci
    assert "\nmake docs\n" in ci and "\nmake lint\n" in ci  # the linters and the type checker too
    # the offline install: make demo with TORCH_INDEX= while pip's index is an unreachable address
    assert re.search(r"PIP_INDEX_URL=http://127\.0\.0\.1:\d+\S* .*\n\s*make demo VENV=\S+ TORCH_INDEX= ", ci)


def test_train_says_what_it_does_while_loading(cli, tmp_path):
    r = cli("train", "xor", "--train-size", 200, "--test-size", 100, "--epochs", 1, "-o", tmp_path / "x.st")
    assert r.code == 0 and "loading xor" in r.err and "testing the kept weights" in r.err
    r = cli("train", "xor", "--train-size", 200, "--test-size", 100, "--epochs", 1, "-q", "-o", tmp_path / "y.st")
    assert r.code == 0 and r.err == ""


def test_guides_use_no_developer_paths_and_the_c_name_rule_holds():
    """Examples must run from a user's clone: no `../shared/data`, and the C name rule the export
    guide states is the one the code applies."""
    from cfctool.escape import c_identifier

    for page in sorted((ROOT / "docs/guide").glob("*.md")):
        text = page.read_text()
        assert "--data ../shared/data" not in text and "DATA=../shared/data" not in text, page.name
    assert c_identifier("student-int8") == "student_int8" and c_identifier("8bit") == "m_8bit"
    assert "`student-int8.st` gives `student_int8.h`" in (ROOT / "docs/guide/export.md").read_text()
