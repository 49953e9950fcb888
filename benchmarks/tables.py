"""Render the README's result tables from benchmarks/results/*.yaml (between marker comments).

    python -m benchmarks.tables          # rewrites README.md in place
    python -m benchmarks.tables --check  # exit 1 when README.md's tables are not what the results say
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from benchmarks.common import ROOT, results_dir


def _load(name: str):
    path = results_dir() / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


def cfc_speed() -> str:
    doc = _load("cfc_speed")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.cfc_speed`_"
    rows = ["| threads | forward (inference) | forward + backward | max abs output diff |", "|---|---|---|---|"]
    for key, r in doc["results"].items():
        rows.append(f"| {key.split('_')[1]} | {r['forward']['speedup']:.2f}× | {r['forward_backward']['speedup']:.2f}× "
                    f"| {doc['max_abs_output_diff']:.1e} |")
    return "\n".join(rows) + f"\n\nMeasured {doc['machine']['utc']} on {doc['machine']['cpu']}, torch {doc['machine']['torch']}."


def baselines() -> str:
    doc = _load("baselines")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.baselines`_"
    rows = ["| benchmark | network | test accuracy (ours) | seed accuracy | epochs | s/epoch (ours, CPU) | "
            "s/epoch (seed, GPU) | RNN params (ours / seed) | total params | file bytes |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in doc["runs"].items():
        if name == "ltc-vs-cfc":
            continue
        seed = r["seed_reference"]
        caveat = f" ({seed['note']})" if seed.get("note") else ""
        network = r["arch"] + (f" (preset {r['preset']})" if r.get("preset", "default") != "default" else "") + \
            (" + " + ", ".join(f"{k}={v}" for k, v in r["changed_from_preset"].items())
             if r.get("changed_from_preset") else "")
        rows.append(f"| {r['dataset']} | {network} | {100 * r['test_accuracy']:.1f}% | {100 * seed['accuracy']:.1f}%{caveat} "
                    f"| {r['epochs']} | {r['sec_per_epoch']} ({r['threads']} thread{'s' if r['threads'] != 1 else ''}) "
                    f"| {seed.get('sec_per_epoch_gpu', '')} | {r['rnn_params']:,} / "
                    f"{format(seed['rnn_params'], ',') if 'rnn_params' in seed else '-'} "
                    f"| {r['total_params']:,} | {r['file_bytes']:,} |")
    ltc = doc["runs"].get("ltc-vs-cfc")
    if ltc:
        rows.append("")
        rows.append(f"LTC vs CfC training speed ({ltc['dataset']}, hidden {ltc['hidden']}, batch {ltc['batch']}, "
                    f"{ltc['threads']} thread): {ltc['sec_per_step']['ltc']} s vs {ltc['sec_per_step']['cfc']} s per step, "
                    f"LTC **{ltc['ltc_over_cfc']}× slower**.")
    return "\n".join(rows)


def engines() -> str:
    doc = _load("engines")
    if not doc or not doc.get("results"):
        return "_not measured yet: run `python -m benchmarks.engines`_"
    rows = ["| checkpoint | threads | items (valid steps) | cfctool torch | same, padded steps computed "
            "| torch loop (unfolded) | ONNX Runtime (Scan) | ncps | cfctool torch vs ncps | accuracy | our engines agree "
            "| LTC / CfC loop per sequence, same hidden |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in doc["results"].items():
        for run in r.get("runs", []):
            e = run["engines"]
            ort = e.get("cfctool-onnxruntime")
            ort_cell = f"{ort['median_s']:.2f} s" if ort else ("export failed" if "onnx_export_failed" in r else "—")
            ltc = ""
            if run is r["runs"][0]:
                measured = doc.get("ltc", {}).get(name) or ([r["ltc_vs_cfc"]] if "ltc_vs_cfc" in r else [])
                ltc = ", ".join(f"{m['ltc_over_cfc']:.0f}× (batch {m['batch']})" for m in measured)
            agree = run.get("our_engines_identical_predictions")
            valid = f" ({100 * r['valid_step_fraction']:.0f}%)" if r.get("valid_step_fraction") is not None else ""
            nopack = e.get("cfctool-torch-nopack")
            nopack_cell = f"{nopack['median_s']:.2f} s" if nopack else "—"
            partial = "†" if "--batches" in r.get("command", "") else ""
            rows.append(f"| {name} | {run['threads']} | {r['items']:,}{partial}{valid} | {e['cfctool-torch']['median_s']:.2f} s "
                        f"| {nopack_cell} "
                        f"| {e['cfctool-torch-loop']['median_s']:.2f} s | {ort_cell} | {e['ncps']['median_s']:.2f} s "
                        f"| **{e['cfctool-torch']['speedup_vs_ncps']:.2f}×** | {100 * e['cfctool-torch']['accuracy']:.2f}% "
                        f"| {'yes' if agree else 'NO'} | {ltc} |")
    return "\n".join(rows) + (f"\n\nWhole test split (†: its first batches only, for time; the accuracy is that "
                              f"slice's), medians of interleaved repeats (count and min/max per entry in engines.yaml); "
                              f"{doc['machine']['cpu']}, torch {doc['machine']['torch']}.")


def quantize() -> str:
    doc = _load("quantize")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.quantize CHECKPOINT...`_"
    rows = ["| model | variant | engine | accuracy | seed accuracy | file ratio | vs folded fp32 | vs fp32 eager "
            "(seed: int8 vs eager) |", "|---|---|---|---|---|---|---|---|"]
    # the seed's "static" is unfused (a quantization point on every Linear output); ours fuses by default
    seed_col = {"fp32 folded": "fp32", "fp32 eager": "fp32", "static-nofuse": "static", "static": "fused",
                "static-mse": "fused", "qat": "qat", "static-fold": "fused"}
    notes = []
    for key, run in doc["runs"].items():
        seed = run.get("seed_reference") or {}
        for name, r in run["rows"].items():
            if "not_applicable" in r:
                continue
            s_acc = seed.get(seed_col.get(name, ""))
            s_speed = f" ({seed['speedup']}×)" if seed and name not in ("fp32 folded", "fp32 eager") else ""
            rows.append(f"| {key} | {name} | {r['engine']} | {100 * r['accuracy']:.2f}% | "
                        f"{'' if s_acc is None else f'{100 * s_acc:.1f}%'} | {r['file_ratio']:.2f}× | "
                        f"{r['speedup_vs_folded_fp32']:.2f}× | {r['speedup_vs_eager_fp32']:.2f}×{s_speed} |")
        w = run["workload"]
        notes.append(f"{key}: {w['items']:,} test items{' (a seeded subset)' if w.get('subset') else ''}, batch "
                     f"{w['batch_size']}, {run['threads']} thread(s), medians of {run['repeats']} interleaved passes; "
                     f"{run['machine']['cpu']}, torch {run['machine']['torch']}; also running: {run['what_else_ran']}.")
    return "\n".join(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def prune() -> str:
    """Per model: one row per ratio, one column per method: accuracy without -> with fine-tuning."""
    doc = _load("prune")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.prune CHECKPOINT...`_"
    out = []
    for key, run in doc["runs"].items():
        cells = run["cells"]
        base = cells["unpruned"]
        methods = sorted({n.split("@")[0] for n in cells if "@" in n}, key=lambda m: (m.startswith("structured"), m))
        ratios = sorted({float(n.split("@")[1].split("+")[0]) for n in cells if "@" in n})
        ft = run.get("finetune_epochs") or 0
        out.append(f"**{key}** (unpruned {100 * base['accuracy']:.2f}%, normalised accuracy "
                   f"{base['normalised_accuracy']:.4f}); cells: test accuracy without → after {ft} epoch(s) of "
                   "fine-tuning (lr " f"{run.get('finetune_lr')}), then the normalised accuracy after fine-tuning; "
                   "unstructured: file ratio with `--storage sparse`; structured: CPU speed-up on the same engine.")
        out.append("")
        out.append("| ratio | " + " | ".join(methods) + " |")
        out.append("|---|" + "---|" * len(methods))
        for r in ratios:
            row = [f"{r:g}"]
            for m in methods:
                a, b = cells.get(f"{m}@{r}"), cells.get(f"{m}@{r}+ft{ft}") if ft else None
                if a is None or "accuracy" not in a:
                    row.append("n/a" if a and "not_applicable" in a else "")
                    continue
                text = f"{100 * a['accuracy']:.1f}%"
                if b and "accuracy" in b:
                    text += f" → {100 * b['accuracy']:.1f}% ({b['normalised_accuracy']:.4f})"
                extra = (b or a).get("file_ratio_sparse") or (b or a).get("speedup")
                if extra:
                    text += f", {extra:.1f}×"
                row.append(text)
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        out.append(f"- {run['command']}; {run['threads']} thread(s); {run['machine']['cpu']}; also running: "
                   f"{run['what_else_ran']}.")
        out.append("")
    return "\n".join(out).rstrip()


def distill() -> str:
    """One row per student: distilled vs the same student without the teacher."""
    doc = _load("distill")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.distill --teacher imdb=TEACHER.st --only ...`_"
    runs = doc["runs"]
    rows = ["| student | settings | teacher (accuracy) | distilled | without teacher | difference | recurrent params "
            "(teacher / student) | params without / with embedding | epochs |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        if not r["with_teacher"]:
            continue
        alone = runs.get(f"{name}-alone")
        settings = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) + \
            (f", started from {Path(r['init']).name}" if r.get("init") else "")
        diff = f"{100 * (r['test_accuracy'] - alone['test_accuracy']):+.2f}" if alone else ""
        alone_acc = f"{100 * alone['test_accuracy']:.2f}%" if alone else ""
        rows.append(f"| {name} ({r['student']}) | {settings}, alpha {r['alpha']} | {r['teacher_arch']} "
                    f"({100 * (r['teacher_accuracy'] or 0):.2f}%) | **{100 * r['test_accuracy']:.2f}%** | "
                    f"{alone_acc} | {diff} | "
                    f"{r['teacher_rnn_params']:,} / {r['rnn_params']:,} ({r['rnn_compression']:.1f}×) | "
                    f"{r['params_without_embedding']:,} / {r['params']:,} | {r['epochs']} |")
    any_run = next(iter(runs.values()))
    command = re.sub(r"--only \S+", "--only ENTRY", any_run["command"])
    rows.append("")
    rows.append(f"One run each, seed {any_run['seed']}, CPU, {any_run['threads']} thread per run; "
                f"{any_run['machine']['cpu']}; also running: {any_run['what_else_ran']}. "
                f"Command: `{command}`.")
    return "\n".join(rows)


def reduce() -> str:
    """Per model: one row per cell: top-1 / top-3 without and after fine-tuning, speed-up."""
    doc = _load("reduce")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.reduce CHECKPOINT --methods ... --dims ...`_"
    out = []
    for key, run in doc["runs"].items():
        cells = run["cells"]
        base = cells["original"]
        ft = run.get("finetune_epochs") or 0
        top3 = "top3_accuracy" in base
        seed = run["seed_reference"] or ("no published counterpart; against structured pruning of the hidden units "
                                         "to the same size (prune@K)")
        out.append(f"**{key}** (original {100 * base['accuracy']:.2f}% top-1"
                   + (f", {100 * base['top3_accuracy']:.2f}% top-3" if top3 else "") + f"; {seed})")
        out.append("")
        head = "| method @ K[:m] | top-1" + (" / top-3" if top3 else "") + " | speed-up | MACs per input |"
        if ft:
            head += f" after {ft} epoch(s): top-1" + (" / top-3" if top3 else "") + " | speed-up |"
        out.append(head)
        out.append("|---|---|---|---|" + ("---|---|" if ft else ""))
        for name, c in cells.items():
            if name == "original" or "+ft" in name:
                continue
            if "accuracy" not in c:
                out.append(f"| {name} | n/a: {c.get('not_applicable', '')} | | |" + (" | |" if ft else ""))
                continue
            acc = lambda x: f"{100 * x['accuracy']:.2f}%" + (f" / {100 * x['top3_accuracy']:.2f}%" if top3 else "")
            row = f"| {name} | {acc(c)} | {c['speedup']:.2f}× | {c.get('macs_per_input') or 0:,} |"
            if ft:
                f = cells.get(f"{name}+ft{ft}")
                row += f" {acc(f)} | {f['speedup']:.2f}× |" if f and "accuracy" in f else " | |"
            out.append(row)
        out.append("")
        workload = run.get("speed_batches")
        workload = f"{workload} seeded batches of 128" if isinstance(workload, int) else workload
        if run.get("timing"):
            out.append(f"- Times {run['timing']}.")
        out.append(f"- Cells accumulate over invocations; the last: `{run['command']}`; times: {workload}, {run.get('repeats')} interleaved repeats (medians), "
                   f"{run['threads']} thread, vs the original on its own fastest engine ({base.get('engine')}); "
                   f"{run['machine']['cpu']}; also running: {run['what_else_ran']}.")
        out.append("")
    return "\n".join(out).rstrip()


def originals() -> str:
    """The Neural ODE originals: training (baselines.yaml) and whole-test-set CPU time (the
    interleaved base times of reduce.yaml's --retime, else its cells)."""
    base, red = _load("baselines") or {"runs": {}}, _load("reduce") or {"runs": {}}
    rows = ["| model | test top-1 | seed | training | whole test set, CPU, 1 thread |", "|---|---|---|---|---|"]
    for name, key, label in (("mnist-conv-ode", "mnist/conv-ode", "conv-ode (MNIST)"),
                             ("pmnist-ode-rnn", "pmnist/ode-rnn", "ode-rnn (pixel MNIST)"),
                             ("pmnist-ode-rnn-continued", None, "ode-rnn (pixel MNIST), continued"),
                             ("pmnist-ode-rnn-ema", None, "ode-rnn (pixel MNIST), weight-averaged"),
                             ("pmnist-ode-rnn-scratch", None, "ode-rnn (pixel MNIST), one run with AdamW and averaging")):
        r = base["runs"].get(name)
        times = sorted(c["base_test_seconds"] for c in (red["runs"].get(key) or {}).get("cells", {}).values()
                       if "base_test_seconds" in c)
        whole = (red["runs"].get(key) or {}).get("speed_batches") == "whole test split"
        when = f"{times[len(times) // 2]:.2f} s (median over the reduction runs' interleaved passes)" \
            if times and whole else ""
        bench = _load(f"bench-{name}")
        if bench and not bench["workload"].get("synthetic") and bench["workload"]["items"] >= 10000:
            engines = ", ".join(f"{r['engine']} {r['split_seconds']['median']:.2f} s" for r in bench["results"])
            when = f"{engines} (`cfctool bench`, {bench['repeats']} repeats, medians)"
        if r is None:
            rows.append(f"| {label} | not finished (`python -m benchmarks.baselines --only {name} --resume`) | | | {when} |")
            continue
        seed = r["seed_reference"]
        epochs = f"{r['epochs']} epochs"
        if r.get("init_from"):  # a warm start: its own epochs, then the totals with the run it started from
            epochs = (f"{r['epochs']} more epochs from `{r['init_from']['path']}` ({r['epochs_in_all']} in all, "
                      f"{r['train_seconds_in_all'] / 60:.0f} min)")
        amp = (r.get("changed_from_preset") or {}).get("amp")
        rows.append(f"| {label} | **{100 * r['test_accuracy']:.2f}%** | {100 * seed['accuracy']:.1f}% ({seed['note']}) "
                    f"| {epochs}, {r['sec_per_epoch']} s/epoch{f', {amp} autocast' if amp else ''}, {r['threads']} "
                    f"thread{'s' if r['threads'] != 1 else ''} | {when} |")
    return "\n".join(rows)


def scale() -> str:
    doc = _load("scale")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.scale`_"
    rows = ["| processes (1 thread each) | samples/s (median) | speed-up |", "|---|---|---|"]
    for n, rate in doc["samples_per_s"].items():
        rows.append(f"| {n} | {rate:.1f} | {doc['speedup'][n]:.2f}× |")
    rows.append("")
    rows.append(f"{doc['model']}; global batch {doc['global_batch']}; {doc['steps']} steps ({doc['warmup']} left out), "
                f"{doc['repeats']} interleaved rounds; {doc['machine']['cpu']}, {doc['machine']['cores']} cores; "
                f"also running: {doc['what_else_ran']}. `{doc['command']}`.")
    return "\n".join(rows)


def _report_table(name: str, how: str, digits: int = 2) -> str:
    """A `cfctool report -o benchmarks/results/NAME.yaml` as a table, sizes against the first row."""
    doc = _load(name)
    if not doc:
        return f"_not measured yet: run `{how}`_"
    rows = ["| checkpoint | history | test accuracy | params | non-zero | file bytes | weight bytes | × smaller "
            "(weights) | CPU s | speed-up | engine |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    first = doc["checkpoints"][0]
    for r in doc["checkpoints"]:
        rows.append(f"| {Path(r['path']).name} | {r['history']} | {100 * r['accuracy']:.2f}% | {r['params']:,} | "
                    f"{r['nonzero_params']:,} | {r['file_bytes']:,} | {r['tensor_bytes']:,} | "
                    f"{first['tensor_bytes'] / r['tensor_bytes']:.1f}× | {r['cpu_seconds'] or 0:.{digits}f} | "
                    f"{r['speedup'] or 0:.2f}× | {r['engine']} |")
    return "\n".join(rows)


def pipeline() -> str:
    return _report_table("pipeline-imdb", "make -f benchmarks/imdb.mk pipeline-results")


def prune_acceptance() -> str:
    return _report_table("prune-acceptance", "make -f benchmarks/imdb.mk pruning-acceptance-results")


def quickstart() -> str:
    return _report_table("quickstart", "make -f benchmarks/quickstart.mk results", digits=3)


def render(text: str) -> str:
    """`text` (the README) with every table between its markers rendered from the results."""
    for name, table in (("cfc_speed", cfc_speed), ("baselines", baselines), ("engines", engines),
                        ("quantize", quantize), ("prune", prune), ("distill", distill), ("reduce", reduce),
                        ("scale", scale), ("pipeline", pipeline), ("quickstart", quickstart),
                        ("prune_acceptance", prune_acceptance), ("originals", originals)):
        pattern = re.compile(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"the README has no <!-- table:{name} --> markers")
        text = pattern.sub(lambda m, table=table: m.group(1) + table() + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is out of date")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    rendered = render(text)
    if args.check:
        if rendered != text:
            raise SystemExit(f"{args.readme}: tables out of date; run python -m benchmarks.tables")
    else:
        args.readme.write_text(rendered)
    print(args.readme)


if __name__ == "__main__":
    main()
