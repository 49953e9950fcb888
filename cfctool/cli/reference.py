"""The CLI reference page, generated from the Typer app by Typer's own Markdown generator
(what `typer cfctool.cli.app utils docs` prints), so every command, option, help text,
default and example in it is the one `--help` shows.

    python -m cfctool.cli.reference docs/reference/cli.md           # (re)write the page
    python -m cfctool.cli.reference docs/reference/cli.md --check   # exit 1 when it is out of date

`--data-guide docs/guide/data.md` also rewrites the data guide's generated section: every
built-in data set's tensors, from what the data modules declare (`TENSORS`).
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

    before, start, rest = text.partition(TENSORS_START)
    _, end, after = rest.partition(TENSORS_END)
    if not start or not end:
        raise SystemExit(f"the data guide has no generated section ({TENSORS_START} ... {TENSORS_END})")
    return f"{before}{TENSORS_START}\n{tensor_tables()}{TENSORS_END}{after}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when PATH is out of date")
    parser.add_argument("--data-guide", type=Path, help="also rewrite this data guide's generated tensor tables")
    args = parser.parse_args(argv)
    if args.data_guide is not None and not args.check:
        args.data_guide.write_text(with_tensor_tables(args.data_guide.read_text()))
        print(args.data_guide)
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
