"""The CLI reference page, generated from the Typer app by Typer's own Markdown generator
(what `typer cfctool.cli.app utils docs` prints), so every command, option, help text,
default and example in it is the one `--help` shows.

    python -m cfctool.cli.reference docs/reference/cli.md           # (re)write the page
    python -m cfctool.cli.reference docs/reference/cli.md --check   # exit 1 when it is out of date

`--data-guide docs/guide/data.md` also rewrites the data guide's generated section: every
built-in data set's tensors, from what the data modules declare (`TENSORS`);
`--training-guide docs/guide/training.md` the training guide's table of presets, from the
preset files (`cfctool/presets/*.yaml`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

INTRO = """\
Generated from the command-line app by `make cli-reference` (`python -m cfctool.cli.reference`);
a test fails when this page and `cfctool COMMAND --help` disagree. Every command also accepts
`-h`. Exit codes are on [their own page](exit-codes.md).
"""


def render() -> str:
    """The page: a short introduction, then every command with its arguments and options."""
    import typer
    import typer.main
    from typer.cli import MARKUP_MODE_KEY, get_docs_for_click

    from cfctool.cli.app import build_app

    app = build_app()
    command = typer.main.get_command(app)
    ctx = typer.Context(command, obj={MARKUP_MODE_KEY: app.rich_markup_mode})
    docs = get_docs_for_click(obj=command, ctx=ctx, name="cfctool", title="CLI reference").strip()
    title, _, body = docs.partition("\n")
    return f"{title}\n\n{INTRO}{body}\n"


TENSORS_START = "<!-- tensors: generated from the data modules by `make cli-reference`; do not edit -->"
TENSORS_END = "<!-- end of the generated tensors -->"


def with_tensor_tables(text: str) -> str:
    """The data guide with its generated section (between the markers) made current."""
    from cfctool.data.registry import tensor_tables

    return with_generated(text, TENSORS_START, TENSORS_END, tensor_tables(), "data guide")


PRESETS_START = "<!-- presets: generated from cfctool/presets/*.yaml by `make cli-reference`; do not edit -->"
PRESETS_END = "<!-- end of the generated presets -->"


def preset_table() -> str:
    """Every preset: what it is, the plain CfC's epochs and optimiser under it, and the
    architectures it gives settings of their own."""
    from cfctool.configs import resolve
    from cfctool.configs.presets import ARCH_PRESETS, DESCRIPTIONS, PRESETS
    from cfctool.escape import markdown_cell

    said = DESCRIPTIONS
    rows = [
        "| data set | preset | what it is | epochs | optimiser, lr (cfc) | own settings per architecture |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, name in sorted(PRESETS):
        train = resolve(dataset, "cfc", preset=name).train
        archs = "; ".join(
            f"{arch}: " + ", ".join(f"{k} {v}" for k, v in values.items())
            for (d, n, arch), values in sorted(ARCH_PRESETS.items())
            if (d, n) == (dataset, name)
        )
        cells = [
            f"`{dataset}`",
            f"`{name}`",
            said.get((dataset, name), ""),
            str(train.epochs),
            f"{train.optimizer} {train.lr:g}",
            archs or "-",
        ]
        rows.append("| " + " | ".join(markdown_cell(c) if i > 1 else c for i, c in enumerate(cells)) + " |")
    return "\n".join(rows) + "\n"


def with_generated(text: str, start_marker: str, end_marker: str, body: str, what: str) -> str:
    """`text` with the part between the markers replaced by `body`."""
    before, start, rest = text.partition(start_marker)
    _, end, after = rest.partition(end_marker)
    if not start or not end:
        raise SystemExit(f"the {what} has no generated section ({start_marker} ... {end_marker})")
    return f"{before}{start_marker}\n{body}{end_marker}{after}"


def with_preset_table(text: str) -> str:
    return with_generated(text, PRESETS_START, PRESETS_END, preset_table(), "training guide")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when PATH is out of date")
    parser.add_argument("--data-guide", type=Path, help="also rewrite this data guide's generated tensor tables")
    parser.add_argument("--training-guide", type=Path, help="also rewrite this training guide's table of presets")
    args = parser.parse_args(argv)
    if args.data_guide is not None and not args.check:
        args.data_guide.write_text(with_tensor_tables(args.data_guide.read_text()))
        print(args.data_guide)
    if args.training_guide is not None and not args.check:
        args.training_guide.write_text(with_preset_table(args.training_guide.read_text()))
        print(args.training_guide)
    text = render()
    if args.check:
        if not args.path.is_file() or args.path.read_text() != text:
            sys.exit(
                f"{args.path} is out of date: run `make cli-reference` (python -m cfctool.cli.reference {args.path})"
            )
        return
    args.path.write_text(text)
    print(args.path)


if __name__ == "__main__":
    main()
