"""Commands whose implementation lands in later releases: they fail clearly, never silently."""

from __future__ import annotations

import typer

from cfctool.errors import CfcError

PENDING = {
    "reduce": "Model-order reduction (POD-DEIM, SVD, APoZ).",
}


def register(app: typer.Typer) -> None:
    for name, summary in PENDING.items():
        _add(app, name, summary)


def _add(app: typer.Typer, name: str, summary: str) -> None:
    def command(ctx: typer.Context):
        raise CfcError(f"`cfctool {name}` is not implemented yet in this version; "
                       "see the README's roadmap (train, eval and info work today)")

    command.__doc__ = f"{summary} (not implemented yet)"
    app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(command)
