"""`cfctool report PATHS... [-o report.md] [--json] [--plot pareto.png]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cfctool.cli import options
from cfctool.configs.commands import ReportConfig


def register(app: typer.Typer) -> None:
    def report_command(
        paths: Annotated[list[str], typer.Argument(help="Checkpoints (.st) or directories searched for them.")],
        output: Annotated[
            str | None, typer.Option("--output", "-o", help="Write the table here: .md (Markdown), .yaml or .json.")
        ] = None,
        config: options.Config = None,
        print_config: options.PrintConfig = False,
        as_json: options.Json = False,
        **settings,
    ):
        """One table of every checkpoint of a study: history, the task's metric, parameters, bytes, speed-up.

        Reads each checkpoint's record and the NAME.eval.json / NAME.bench.yaml written beside it
        (by `cfctool eval --json` and `cfctool bench -o`); sizes are absolute, and each speed-up is the
        one its bench report measured over its --against model. Prints the table (rich in a terminal, Markdown otherwise); -o writes it as
        Markdown, YAML or JSON; --plot draws the metric against size and time (the plot extra). The
        metric is the task's: accuracy, AUC for a binary task of your own data, MSE for regression.
        """
        from cfctool.checkpoint import atomic_write
        from cfctool.cli.io import check_output
        from cfctool.errors import ConfigError
        from cfctool.ops import report as rep

        cfg = options.resolved(ReportConfig, "report", config, settings)
        if print_config:
            options.print_config("report", cfg)
            return
        plot = cfg.plot
        kind = Path(output).suffix.lower() if output is not None else None
        found = rep.find_checkpoints(paths)
        if output is not None:
            check_output(
                output, sidecar=False, suffix=kind if kind in (".md", ".yaml", ".json") else ".md", inputs=found
            )
        if plot is not None:  # validated like -o, before any work: no directories are created
            if Path(plot).suffix.lower() not in (".png", ".pdf", ".svg"):
                raise ConfigError(f"--plot {plot}: give a .png, .pdf or .svg path")
            check_output(plot, sidecar=False, suffix=Path(plot).suffix, inputs=found)
            rep.require_plotting()
        rows = rep.report(found)
        base = Path.cwd()
        if plot is not None:
            rep.plot(rows, plot)
        if output is not None:
            writers = {".yaml": rep.as_yaml, ".json": rep.as_json}
            text = writers[kind](rows) if kind in writers else rep.markdown(rows, base)
            atomic_write(Path(output), text.encode())
        if as_json:
            print(rep.as_json(rows))
        elif output is not None:
            print(output)
        elif not sys.stdout.isatty():  # piped or redirected: the Markdown that -o x.md writes
            print(rep.markdown(rows, base), end="")
        else:
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            header = rep.columns(rows)
            table = Table(*header, title="cfctool report", show_lines=False)
            for row in rows:  # plain Text: a record's "[red]" is shown, never taken for markup
                table.add_row(*(Text(cell) for cell in rep.cells(row, base, "metric" in header)))
            console = Console(width=max(Console().width, 160))
            console.print(table)
            groups = rep.seed_groups(rows)
            if groups:
                seeds = Table(*rep.SEED_COLUMNS, title="recipes run with several seeds (mean ± sd, 95% t-interval)")
                for group in groups:
                    seeds.add_row(*(Text(cell) for cell in rep.seed_cells(group, base)))
                console.print(seeds)
            for row in rows:  # each --max-drop search, every candidate
                for search in row.searches:
                    console.print(rep.search_table(row, search, base), markup=False)
        if plot is not None and not as_json:
            print(f"plot: {plot}", file=sys.stderr)

    command = options.with_parameters(report_command, options.setting_parameters({ReportConfig: "Report settings"}))
    epilog = options.example("cfctool report teacher.st pruned.st student.st -o report.md --plot pareto.png")
    app.command("report", epilog=epilog)(command)
