"""`cfctool report`: one table of every checkpoint of a study (what it is, how it was made,
how accurate, how big, how fast) and a Pareto plot.

Accuracy comes from an eval report beside the checkpoint (`NAME.eval.json`, as written by
`cfctool eval NAME.st --json > NAME.eval.json`, or `NAME.eval.yaml`), else from the test
metrics its own record holds (train and distill write them; compression steps clear them,
since they change the model). Speed comes from a bench report beside it (`NAME.bench.yaml`,
`cfctool bench NAME.st --against BASE.st -o NAME.bench.yaml`, or `.json`): the seconds over
the timed workload, the engine that ran, and the speed-up over the `--against` model.
Nothing is measured here: the report only reads, so it is instant and repeatable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cfctool import checkpoint
from cfctool.errors import CfcError, CheckpointError, ConfigError
from cfctool.escape import markdown_cell, terminal
from cfctool.families.build import model_from_checkpoint
from cfctool.files import TEXT_LIMIT, read_bounded, strict_yaml
from cfctool.metrics import mean_interval, parameter_counts, shown, task_metric
from cfctool.ops.info import tensor_bytes
from cfctool.ops.methods import METHODS


@dataclass
class Row:
    path: str
    arch: str
    dataset: str
    history: str
    accuracy: float | None
    accuracy_from: str | None
    params: int
    nonzero_params: int
    file_bytes: int
    tensor_bytes: int
    cpu_seconds: float | None = None
    engine: str | None = None
    speedup: float | None = None
    speedup_verdict: str | None = None  # bench's: 'no measurable difference' when its interval holds 1
    against: str | None = None
    searches: list[dict[str, Any]] = field(default_factory=list)  # --max-drop searches (ops.budget)
    metric: str = "accuracy"  # the task's metric (metrics.task_metric): accuracy, auc or mse
    value: float | None = None  # its value on the test split, from value_from
    value_from: str | None = None
    recipe: str = ""  # the history without its seeds (recipe_of): rows alike here differ only by seed
    seeds: list[Any] = field(default_factory=list)  # each history step's seed


def find_checkpoints(paths: Sequence[str | Path]) -> list[Path]:
    """The .st files among `paths` (directories searched recursively), in a stable order."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.extend(sorted(p.rglob("*.st")))
        elif p.is_file():
            found.append(p)
        else:
            raise CheckpointError(f"{p}: no such file or directory")
    if not found:
        raise CfcError(
            f"no .st checkpoints under {', '.join(map(str, paths))}; run the study first "
            f"(e.g. make -f examples/quickstart.mk)"
        )
    return list(dict.fromkeys(found))


def step_label(entry: dict[str, Any]) -> str:
    """One history entry as a few words: `prune 0.9 global`, `quantize static int8`, ..."""
    c = entry.get("config") or {}
    name = entry.get("command", "?")
    try:
        return _label(name, c)
    except (AttributeError, KeyError, TypeError, ValueError):  # a record written by another tool
        return str(name)


def _label(name: str, c: dict[str, Any]) -> str:
    if name in METHODS:
        return METHODS[name].hooks().label(c)
    if name == "distill":
        d = c.get("distill") or {}
        return f"distill -> {d.get('student', '?')} (alpha {d.get('alpha')})"
    if name == "train":
        arch = c.get("arch")
        return f"train {arch.get('name', '')}".strip() if isinstance(arch, dict) else "train"
    return name


@dataclass
class SeedGroup:
    """Checkpoints of one recipe that differ only by seed: the metric's mean, sd and 95% interval."""

    rows: list[Row]

    def summary(self) -> dict[str, Any]:
        values = [r.value for r in self.rows if r.value is not None]
        speedups = [r.speedup for r in self.rows if r.speedup is not None]
        first = self.rows[0]
        return {
            "checkpoints": [r.path for r in self.rows],
            "history": first.history,
            "seeds": [r.seeds[-1] if r.seeds else None for r in self.rows],
            "metric": first.metric,
            **({"n": 0} if not values else mean_interval(values)),
            "speedup": mean_interval(speedups) if speedups else None,
            "params": sorted({r.params for r in self.rows}),
            "file_bytes": sorted({r.file_bytes for r in self.rows}),
        }


def seed_groups(rows: list[Row]) -> list[SeedGroup]:
    """Recipes run with more than one seed, in the order their first checkpoint is listed. A
    checkpoint with the seeds of one listed before it (a copy, or the same run again) is left
    out: counted twice, one run would pull the mean and narrow the interval."""
    groups: dict[str, dict[tuple[str, ...], Row]] = {}
    for r in rows:
        groups.setdefault(r.recipe, {}).setdefault(tuple(map(str, r.seeds)), r)
    return [SeedGroup(list(g.values())) for g in groups.values() if len(g) > 1]


SEED_COLUMNS = ("recipe", "n", "seeds", "mean ± sd", "95% interval", "params", "file bytes", "speed-up")


def _spread(metric: str, m: dict[str, Any]) -> str:
    """mean ± sd in the metric's units (accuracy: percent, its sd in points)."""
    if not m.get("n"):
        return ""
    sd = "" if m["n"] < 2 else f" ± {(100 if metric == 'accuracy' else 1) * m['sd']:.2f}"
    return f"{shown(metric, m['mean'])}{sd}"


def seed_cells(group: SeedGroup, base: Path | None = None) -> list[str]:
    s = group.summary()
    metric = s["metric"]
    name = cells(group.rows[0], base)[0]
    interval = f"{shown(metric, s['low'])} to {shown(metric, s['high'])}" if s.get("n", 0) >= 2 else ""
    speed = s["speedup"]
    return [
        terminal(f"{name} ({s['history']})", 400),
        str(s.get("n", 0)),
        terminal(", ".join(str(x) for x in s["seeds"]), 100),
        f"{metric} {_spread(metric, s)}" if s.get("n") else "",
        interval,
        " / ".join(f"{p:,}" for p in s["params"]),
        " / ".join(f"{b:,}" for b in s["file_bytes"]),
        "" if not speed else f"{speed['mean']:.2f}x" + (f" ± {speed['sd']:.2f}" if speed["n"] >= 2 else ""),
    ]


def _sidecar_report(path: Path, kind: str) -> tuple[dict | None, str | None]:
    import yaml

    for suffix in (".json", ".yaml"):
        candidate = path.with_name(f"{path.stem}.{kind}{suffix}")
        if candidate.is_file():
            try:
                text = read_bounded(candidate, TEXT_LIMIT, f"{kind} report").decode("utf-8")
                doc = json.loads(text) if suffix == ".json" else strict_yaml(text)
            except (ValueError, yaml.YAMLError, RecursionError) as exc:
                raise CfcError(
                    f"{candidate}: not a readable {kind} report ({str(exc)[:200]}); rerun cfctool {kind}"
                ) from None
            if isinstance(doc, dict):
                return doc, candidate.name
    return None, None


def row_for(path: Path) -> Row:
    ckpt = checkpoint.load(path)
    counts = parameter_counts(model_from_checkpoint(ckpt))
    history = " -> ".join(step_label(e) for e in ckpt.record.get("history") or []) or "(no history)"
    ev, ev_name = _sidecar_report(path, "eval")
    accuracy, source = None, None
    if ev is not None and _number(ev.get("accuracy")) is not None:
        accuracy, source = _number(ev["accuracy"]), ev_name
    elif _number((ckpt.record.get("metrics") or {}).get("accuracy")) is not None:
        accuracy, source = _number(ckpt.record["metrics"]["accuracy"]), "record (test)"
    metric = task_metric(ckpt.task).name
    value, value_from = None, None
    if ev is not None and _number(ev.get(metric)) is not None:
        value, value_from = _number(ev[metric]), ev_name
    elif _number((ckpt.record.get("metrics") or {}).get(metric)) is not None:
        value, value_from = _number(ckpt.record["metrics"][metric]), "record (test)"
    recipe, seeds = checkpoint.recipe_of(ckpt.record)
    row = Row(
        path=str(path),
        recipe=recipe,
        seeds=seeds,
        arch=ckpt.arch["name"],
        dataset=ckpt.task.get("dataset", "?"),
        history=history,
        accuracy=accuracy,
        accuracy_from=source,
        metric=metric,
        value=value,
        value_from=value_from,
        params=counts["params"],
        nonzero_params=counts["nonzero_params"],
        file_bytes=path.stat().st_size,
        tensor_bytes=tensor_bytes(ckpt),
        searches=[
            {"step": section, **c["budget"]}
            for section, c in (ckpt.record.get("compression") or {}).items()
            if isinstance(c, dict) and "budget" in c
        ],
    )
    bench, _ = _sidecar_report(path, "bench")
    try:
        if bench and bench.get("results"):
            mine = bench["results"][0]
            row.cpu_seconds = _number((mine.get("split_seconds") or {}).get("median"))
            row.engine = None if mine.get("engine") is None else str(mine["engine"])
            if bench.get("ratios"):
                row.speedup = _number(bench["ratios"][0].get("speedup"))
                verdict = bench["ratios"][0].get("verdict")
                row.speedup_verdict = verdict if verdict in ("faster", "slower", "no measurable difference") else None
                row.against = (bench.get("against") or [{}])[0].get("source")
    except (AttributeError, IndexError, KeyError, TypeError):
        raise CfcError(
            f"{path.with_name(path.stem + '.bench')}.*: not a bench report of cfctool's; rerun cfctool bench"
        ) from None
    return row


def _number(value: Any) -> float | None:
    """A metric read from a file: a finite real number, or None (a string, null, NaN: not shown)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def report(paths: Sequence[str | Path]) -> list[Row]:
    return [row_for(p) for p in find_checkpoints(paths)]


COLUMNS = (
    "checkpoint",
    "arch",
    "history",
    "accuracy",
    "params",
    "non-zero",
    "file bytes",
    "weight bytes",
    "cpu s",
    "speed-up",
    "engine",
)


def columns(rows: list[Row]) -> tuple[str, ...]:
    """COLUMNS with the metric column named for the rows' task metric (all the same: a study
    compresses one model; mixed tasks: 'metric', each cell naming its own)."""
    metrics = {r.metric for r in rows}
    name = metrics.pop() if len(metrics) == 1 else "metric"
    return tuple(name if c == "accuracy" else c for c in COLUMNS)


def metric_cell(row: Row, named: bool = False) -> str:
    if row.value is None:
        return ""
    value = shown(row.metric, row.value)
    return f"{row.metric} {value}" if named else value


def cells(row: Row, base: Path | None = None, named: bool = False) -> list[str]:
    """The table's text for one row (paths shown relative to `base`; `named`: the metric's
    name in its cell, for tables of mixed tasks)."""
    path = Path(row.path)
    shown = str(path.relative_to(base)) if base is not None and path.is_relative_to(base) else str(path)
    return [
        terminal(shown, 200),
        terminal(row.arch, 40),
        terminal(row.history, 400),
        metric_cell(row, named),
        f"{row.params:,}",
        f"{row.nonzero_params:,}",
        f"{row.file_bytes:,}",
        f"{row.tensor_bytes:,}",
        "" if row.cpu_seconds is None else f"{row.cpu_seconds:.3f}",
        ""
        if row.speedup is None
        else f"{row.speedup:.2f}x"
        + (" (no measurable difference)" if row.speedup_verdict == "no measurable difference" else ""),
        terminal(row.engine or "", 40),
    ]


def markdown(rows: list[Row], base: Path | None = None) -> str:
    header = columns(rows)
    named = "metric" in header
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(c) for c in cells(r, base, named)) + " |" for r in rows]
    notes = sorted({markdown_cell(f"{r.metric} of {Path(r.path).name}: {r.value_from}") for r in rows if r.value_from})
    what = header[3][0].upper() + header[3][1:] if header[3] != "mse" else "MSE (standardised units)"
    text = (
        "\n".join(lines) + f"\n\n{what} on the test split; speed-up over each bench report's --against "
        "model on the engine named.\n" + ("".join(f"\n- {n}" for n in notes) + "\n" if notes else "")
    )
    groups = seed_groups(rows)
    if groups:
        text += (
            "\nRecipes run with several seeds (the checkpoints alike but for their seeds): the mean with the "
            "sample standard deviation, and the 95% t-interval of the mean.\n\n| "
            + " | ".join(SEED_COLUMNS)
            + " |\n|"
            + "---|" * len(SEED_COLUMNS)
            + "\n"
            + "".join("| " + " | ".join(markdown_cell(c) for c in seed_cells(g, base)) + " |\n" for g in groups)
        )
    return text + "".join(search_table(r, s, base, markdown_cell) for r in rows for s in r.searches)


def search_table(row: Row, search: dict[str, Any], base: Path | None = None, text=terminal) -> str:
    """One --max-drop search: every candidate, on the validation hold-out (its words through
    `text`: `escape.terminal` for a terminal, `escape.markdown_cell` for Markdown)."""
    try:
        return _search_table(row, search, base, text)
    except (AttributeError, KeyError, TypeError, ValueError):  # a record written by another tool
        return (
            f"\n{text(search.get('step', '?'))} of {text(cells(row, base)[0])}: the record's search summary "
            "cannot be read\n"
        )


def _search_table(row: Row, search: dict[str, Any], base: Path | None, text) -> str:
    name = text(cells(row, base)[0])
    chosen = text(", ".join(f"{k} {v}" for k, v in search["chosen"].items()))
    metric = str(search.get("metric", "accuracy"))  # searches recorded before the metric was: accuracy
    key = f"val_{metric}"
    allowed = (
        f"{search['max_drop_points']:g} points" if "max_drop_points" in search else f"{search['max_drop_percent']:g}%"
    )
    models = search.get("models") if isinstance(search.get("models"), list) else []
    held_out = (
        f"{search['val_samples']:,} held-out training sequences"
        if not models
        else f"the mean over {len(models)} seeds' models, each on its own hold-out"
    )
    lines = [
        f"\n{text(search['step'])} of {name} within {allowed} of validation {text(metric)} "
        f"{shown(metric, search['baseline_' + key])} ({held_out}; "
        f"{text(search['search'])}; {search['seconds']:.0f} s): chose {chosen}\n",
        f"| candidate | val {text(metric)}{' (mean; sd of the drop)' if models else ''} | weight bytes | file bytes "
        "| seconds | within |",
        "|---|---|---|---|---|---|",
    ]
    for t in search["candidates"]:
        spread = f" (sd {float(t.get('drop_sd') or 0):.2f})" if models else ""
        lines.append(
            f"| {text(', '.join(f'{k} {v}' for k, v in t['setting'].items()))} | {shown(metric, t[key])}{spread} | "
            f"{t.get('weight_bytes', 0):,} | {t['file_bytes']:,} | {t['seconds']:.1f} | "
            f"{'yes' if t['within'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def as_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


def as_yaml(rows: list[Row]) -> str:
    import yaml

    doc: dict[str, Any] = {"checkpoints": [asdict(r) for r in rows]}
    groups = seed_groups(rows)
    if groups:
        doc["seed_groups"] = [g.summary() for g in groups]
    return yaml.safe_dump(doc, sort_keys=False)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and accuracy (higher), by cost."""
    front, best = [], float("-inf")
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc))
            best = acc
    return front


def require_plotting() -> None:
    """--plot's dependency (the `plot` extra), checked before any work is done."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CfcError(
            "--plot needs matplotlib: pip install 'cfctool[plot]' (or drop --plot); nothing was written"
        ) from None


def plot(rows: list[Row], out: str | Path) -> Path:
    """Accuracy vs file size and vs CPU time, every checkpoint a point, the Pareto front a line."""
    require_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ConfigError(f"--plot {out}: give a .png, .pdf or .svg path")
    rated = [r for r in rows if r.value is not None]
    metric = columns(rated)[3]
    sign = -1.0 if metric == "mse" else 1.0  # the front: lower cost and a better metric (a lower error)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (attr, label) in zip(axes, (("file_bytes", "file size (bytes)"), ("cpu_seconds", "CPU seconds (bench)"))):
        pts = [(getattr(r, attr), float(r.value or 0.0), Path(r.path).stem) for r in rated if getattr(r, attr)]
        for x, y, name in pts:
            ax.scatter(x, y, s=18)
            ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        front = [(x, sign * y) for x, y in pareto_front([(x, sign * y) for x, y, _ in pts])]
        if front:
            ax.plot(*zip(*front), "-", color="black", lw=0.8, label="Pareto front")
            ax.legend(fontsize=7)
        ax.set_xscale("log")
        ax.set(xlabel=label, ylabel=f"test {metric}")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)
    return out
