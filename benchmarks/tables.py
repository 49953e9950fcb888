"""Render every result table of the README and the docs from benchmarks/results/*.yaml.

A page asks for a table with a marker pair, `<!-- table:NAME -->` ... `<!-- /table:NAME -->`;
what lies between is replaced by TABLES[NAME]() (no number in a page is typed by hand).
Every table ends with where it comes from: machine, threads, what else ran, the command
and the commit.

    python -m benchmarks.tables            # rewrites README.md and docs/**/*.md in place
    python -m benchmarks.tables --check    # exit 1 when a page's tables are not what the results say
    python -m benchmarks.tables PAGE.md    # just that page
"""

from __future__ import annotations

import argparse
import math
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
    return "\n".join(rows) + f"\n\nMeasured {doc['machine']['utc']}.\n\n" + _source(doc, threads="per row")


def baselines() -> str:
    doc = _load("baselines")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.baselines`_"
    rows = ["| benchmark | network | test accuracy (ours) | paper's accuracy | epochs | s/epoch (ours, CPU) | "
            "s/epoch (paper, GPU) | RNN params (ours / paper) | total params | file bytes |",
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
    rows += ["", "Seconds per epoch are an upper bound: runs went two at a time, one thread each, beside other "
             "work.", "", _source(doc, threads="per row", also="another training or benchmark (1 thread) beside most runs",
                                  command="python -m benchmarks.baselines --only NAME --threads 1")]
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
                              f"{doc['machine']['cpu']}, torch {doc['machine']['torch']}.\n\n"
                              + _source(doc, threads="per row", command="python -m benchmarks.engines"))


def quantize(only: str | None = None, variants: tuple[str, ...] | None = None) -> str:
    """Every model's variants; `only`: one model's rows, `variants`: those variants only."""
    doc = _load("quantize")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.quantize CHECKPOINT...`_"
    rows = ["| model | variant | engine | accuracy | paper's accuracy | file ratio | vs folded fp32 | vs fp32 eager "
            "(paper: int8 vs eager) |", "|---|---|---|---|---|---|---|---|"]
    # the seed's "static" is unfused (a quantization point on every Linear output); ours fuses by default
    seed_col = {"fp32 folded": "fp32", "fp32 eager": "fp32", "static-nofuse": "static", "static": "fused",
                "static-mse": "fused", "qat": "qat", "static-fold": "fused"}
    notes = []
    for key, run in doc["runs"].items():
        if only is not None and key != only:
            continue
        seed = run.get("seed_reference") or {}
        for name, r in run["rows"].items():
            if "not_applicable" in r or (variants is not None and name not in variants):
                continue
            s_acc = seed.get(seed_col.get(name, ""))
            s_speed = f" ({seed['speedup']}×)" if seed and name not in ("fp32 folded", "fp32 eager") else ""
            if (r.get("quantization") or {}).get("qat_kept_epoch") == 0:
                notes.append(f"{key} {name}: the fine-tuned epoch was worse on validation than the starting weights, "
                             "which QAT kept: the static int8 model")
            rows.append(f"| {key} | {name} | {r['engine']} | {100 * r['accuracy']:.2f}% | "
                        f"{'' if s_acc is None else f'{100 * s_acc:.1f}%'} | {r['file_ratio']:.2f}× | "
                        f"{r['speedup_vs_folded_fp32']:.2f}× | {r['speedup_vs_eager_fp32']:.2f}×{s_speed} |")
        w = run["workload"]
        whole = next((r["accuracy_samples"] for r in run["rows"].values() if "accuracy_samples" in r), None)
        timed = f"{w['items']:,} test items{' (a seeded subset)' if w.get('subset') else ''}"
        timed = f"accuracy on all {whole:,} test items, time on {timed}" if whole else timed
        notes.append(f"{key}: {timed}, batch "
                     f"{w['batch_size']}, {run['threads']} thread(s), medians of {run['repeats']} interleaved passes; "
                     f"{run['machine']['cpu']}, torch {run['machine']['torch']}; also running: {run['what_else_ran']}.")
    return "\n".join(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n\n" + \
        _source(doc, threads="per model above", also="per model above",
                command="python -m benchmarks.quantize CHECKPOINT... --threads 1")


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
    out.append(_source(doc, threads="per model above", also="per model above"))
    return "\n".join(out).rstrip()


def distill() -> str:
    """One row per student: distilled vs the same student without the teacher (the study's
    sizes have their own table, distill_study)."""
    from benchmarks.distill import study_entries

    doc = _load("distill")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.distill --teacher imdb=TEACHER.st --only ...`_"
    runs = doc["runs"]
    rows = ["| student | settings | teacher (accuracy) | distilled | without teacher | difference | recurrent params "
            "(teacher / student) | params without / with embedding | epochs |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        if not r["with_teacher"] or name in study_entries():  # those have their own table (distill_study)
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
    rows += ["", _source({**doc, "machine": any_run["machine"]}, threads=any_run["threads"], also=any_run["what_else_ran"],
                         command="")]
    return "\n".join(rows)


def distill_study() -> str:
    """The study's student sizes: with and without the teacher, under both recipes."""
    from benchmarks.distill import STUDY_RECIPES, STUDY_SIZES, study_runs

    study = study_runs((_load("distill") or {}).get("runs", {}))
    done = list(study.values())
    if not done:
        return "_not measured yet: `python -m benchmarks.distill --teacher imdb=runs/imdb/cfc-deep.st --only imdb-8x-seed ...`_"
    head = "| student | recurrent params (teacher / student) |"
    for recipe in STUDY_RECIPES:
        name = "--preset seed (10 epochs)" if recipe == "seed" else "reference recipe (20 epochs)"
        head += f" {name}: with teacher | without | difference |"
    rows = [head, "|" + "---|" * (2 + 3 * len(STUDY_RECIPES))]
    for ratio, arch, size in STUDY_SIZES:
        # a run with the teacher first: a run without it records whichever teacher was given, unused
        any_run = next((study[ratio, recipe, w] for w in (True, False) for recipe in STUDY_RECIPES
                        if (ratio, recipe, w) in study), None)
        if any_run is None:
            continue
        settings = ", ".join(f"{k} {v}" for k, v in size.items())
        row = (f"| {ratio}: {arch} ({settings}) | {any_run['teacher_rnn_params']:,} / {any_run['rnn_params']:,} "
               f"({any_run['rnn_compression']:.1f}×) |")
        for recipe in STUDY_RECIPES:
            w, a = study.get((ratio, recipe, True)), study.get((ratio, recipe, False))
            diff = f"{100 * (w['test_accuracy'] - a['test_accuracy']):+.2f}" if w and a else "—"
            row += (f" {_pct(w['test_accuracy']) if w else '—'} | {_pct(a['test_accuracy']) if a else '—'} | "
                    f"{diff} |")
        rows.append(row)
    teachers = sorted({(r["teacher"], r["teacher_accuracy"]) for r in done if r["with_teacher"]}) or \
        sorted({(r["teacher"], r["teacher_accuracy"]) for r in done})
    rows += ["", "Teacher: " + "; ".join(f"`{t}` ({_pct(acc)} test)" for t, acc in teachers) + ". One run each, "
             f"seed {done[0]['seed']}, loss 0.25 CE + 0.75 KD with the teacher, CE alone without it (which no "
             "teacher changes); same epochs and seed per pair. —: not run yet.", "",
             _source({"machine": done[0]["machine"], "provenance": (_load("distill") or {}).get("provenance")},
                     threads=done[0]["threads"],
                     also="; ".join(dict.fromkeys(r["what_else_ran"] for r in done)),
                     command="`; `".join(dict.fromkeys(re.sub(r"--only \S+", "--only ENTRY", r["command"])
                                                        for r in done)))]
    return "\n".join(rows)


def reduce(only: str | None = None) -> str:
    """Per model (`only`: that one): one row per cell: top-1 / top-3 without and after
    fine-tuning, speed-up."""
    doc = _load("reduce")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.reduce CHECKPOINT --methods ... --dims ...`_"
    out = []
    for key, run in doc["runs"].items():
        if only is not None and key != only:
            continue
        cells = run["cells"]
        base = cells["original"]
        ft = run.get("finetune_epochs") or 0
        top3 = "top3_accuracy" in base
        seed = run["seed_reference"] or ("no published counterpart; against structured pruning of the hidden units "
                                         "to the same size (prune@K)")
        model = Path(str(run.get("checkpoint", ""))).name or "?"
        out.append(f"**{key}**, checkpoint `{model}` (original {100 * base['accuracy']:.2f}% top-1"
                   + (f", {100 * base['top3_accuracy']:.2f}% top-3" if top3 else "") + f"; {seed})")
        out.append("")
        head = ("| method @ K[:m] | top-1" + (" / top-3" if top3 else "")
                + " | speed-up | MACs per input | parameters (× original) | file bytes (× original) |")
        if ft:
            head += f" after {ft} epoch(s): top-1" + (" / top-3" if top3 else "") + " | speed-up |"
        out.append(head)
        out.append("|---|---|---|---|---|---|" + ("---|---|" if ft else ""))

        def size(c: dict, key: str) -> str:  # a reduction can make the model larger: say so
            if not c.get(key) or not base.get(key):
                return ""
            return f"{c[key]:,} ({c[key] / base[key]:.2f}×)"

        for name, c in cells.items():
            if name == "original" or "+ft" in name:
                continue
            if "accuracy" not in c:
                out.append(f"| {name} | n/a: {c.get('not_applicable', '')} | | | | |" + (" | |" if ft else ""))
                continue
            acc = lambda x: f"{100 * x['accuracy']:.2f}%" + (f" / {100 * x['top3_accuracy']:.2f}%" if top3 else "")
            row = (f"| {name} | {acc(c)} | {c['speedup']:.2f}× | {c.get('macs_per_input') or 0:,} | "
                   f"{size(c, 'params')} | {size(c, 'file_bytes')} |")
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
    out.append(_source(doc, threads="per model above", also="per model above"))
    return "\n".join(out).rstrip()


def originals() -> str:
    """The Neural ODE originals: training (baselines.yaml) and whole-test-set CPU time (the
    interleaved base times of reduce.yaml's --retime, else its cells)."""
    base, red = _load("baselines") or {"runs": {}}, _load("reduce") or {"runs": {}}
    rows = ["| model | test top-1 | paper | training | whole test set, CPU, 1 thread |", "|---|---|---|---|---|"]
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
    rows += ["", _source(base, threads="per row", also="see the baselines and the reduction tables",
                         command="python -m benchmarks.baselines --only NAME; cfctool bench CKPT --repeats 3")]
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
                f"also running: {doc['what_else_ran']}."
                + (f" Embedding gradients: {doc['embedding_gradients']}." if doc.get("embedding_gradients") else ""))
    for label, runs in (doc.get("runs") or {}).items():  # sparse against dense, paired by round
        if not str(label).endswith("dense embedding gradients"):
            continue
        from cfctool.metrics import paired_ratio

        n = int(str(label).split(",")[0])
        sparse = doc["runs"].get(n) or doc["runs"].get(str(n)) or []
        r = paired_ratio([1 / x["samples_per_s"] for x in runs], [1 / x["samples_per_s"] for x in sparse])
        ratios = [x["samples_per_s"] / y["samples_per_s"] for x, y in zip(sparse, runs)]
        rows.append(f"Sparse against dense embedding gradients at {n} processes, paired by round: "
                    f"{r['speedup']:.2f}× (rounds {min(ratios):.2f}–{max(ratios):.2f}×, {r['passes']} rounds): "
                    f"{r['verdict']}.")
    rows += ["", _source(doc, threads="1 per process")]
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
                    f"{r['speedup'] or 0:.2f}×{' (no measurable difference)' if r.get('speedup_verdict') == 'no measurable difference' else ''} | {r['engine']} |")
    if doc.get("timing"):
        rows += ["", f"Times: {doc['timing']}; sizes and speed-ups against the first row."]
    rows += ["", _source(doc)]
    return "\n".join(rows)


def pipeline() -> str:
    return _report_table("pipeline-imdb", "make -f benchmarks/imdb.mk pipeline-results")


def prune_acceptance() -> str:
    return _report_table("prune-acceptance", "make -f benchmarks/imdb.mk pruning-acceptance-results")


def quickstart() -> str:
    return _report_table("quickstart", "make -f benchmarks/quickstart.mk results", digits=3)


# the papers' figures are cited by name (docs/references.md lists them)
_CITES = (("SEEDS.md A", "CfC paper"), ("SEEDS.md B", "compression study"), ("SEEDS.md C", "MOR paper"),
          ("SEEDS.md", "the papers"),
          # the measuring machine's own paths, as a reader of the repository would write them
          ("/work/runs/", "runs/"), ("/work/shared/data", "$CFCTOOL_DATA"), ("../shared/data", "$CFCTOOL_DATA"))


def _cite(text: str) -> str:
    for old, new in _CITES:
        text = text.replace(old, new)
    return text


def _source(doc: dict | None, *, threads=None, also=None, command=None) -> str:
    """The table's last line: where its numbers come from (fields the table text already
    names are passed in; anything a results file did not record says so)."""
    doc = doc or {}
    m = doc.get("machine") or {}
    cpu = m.get("cpu", "not recorded") + (f", {m['cores']} cores" if m.get("cores") else "") + \
        (f", torch {m['torch']}" if m.get("torch") else "")
    prov = doc.get("provenance") or {}
    commit = prov.get("commit", "not recorded")
    if prov.get("backfilled"):
        commit += " (the commit that recorded the results file)"
    parts = [f"machine: {cpu}"]
    threads = threads if threads is not None else doc.get("threads")
    parts.append(f"threads: {threads if threads is not None else 'not recorded'}")
    also = also if also is not None else doc.get("what_else_ran")
    parts.append(f"also running: {also or 'not recorded'}")
    command = command if command is not None else doc.get("command")
    if command:
        parts.append(f"command: `{command}`")
    parts.append(f"commit: {commit}")
    return "<small>Source: " + "; ".join(parts) + ".</small>"


def imdb_recipes() -> str:
    """IMDB per architecture: the compression study's protocol, the reference recipe, and the
    searched CfC-Deep recipe (`--preset deep`, the search's chosen run)."""
    from benchmarks.baselines import DEEP_PRESET_RUN

    doc = _load("baselines") or {"runs": {}}
    runs = doc["runs"]
    rows = ["| IMDB, one run each (seed 0) | `--preset seed` | reference recipe (`--preset reference`) | "
            "`--preset deep` (CfC-Deep's default) | paper |", "|---|---|---|---|---|"]
    for label, seed_run, ref_run, deep_run, figure in (
            ("CfC", "imdb-cfc", "imdb-cfc-reference", None, "imdb-cfc"),
            ("CfC, no gate", None, "imdb-cfc-reference-nogate", None, None),
            ("CfC-Deep", "imdb-cfc-deep", "imdb-cfc-deep-reference", DEEP_PRESET_RUN, "imdb-cfc-deep"),
            ("CfC-NCP", "imdb-cfc-ncp", "imdb-cfc-ncp-reference", None, "imdb-cfc-ncp")):
        cell = lambda name: (f"{100 * runs[name]['test_accuracy']:.1f}% ({runs[name]['epochs']} epochs)"
                             if name in runs else "")
        rows.append(f"| {label} | {cell(seed_run) if seed_run else ''} | {cell(ref_run)} | "
                    f"{cell(deep_run) if deep_run else ''} | {paper(figure) if figure else ''} |")
    return "\n".join(rows) + "\n\n" + _source(doc, threads=1, also="another training (1 thread) beside most runs",
                                              command="python -m benchmarks.baselines --only NAME --threads 1")


def imdb_single_changes() -> str:
    """The `seed` preset with one ingredient of the reference recipe each (10 epochs)."""
    doc = _load("baselines") or {"runs": {}}
    runs = doc["runs"]
    base = runs.get("imdb-cfc")
    if not base:
        return "_not measured yet: run `python -m benchmarks.baselines --only imdb-cfc`_"
    rows = [f"| change to the `seed` preset ({100 * base['test_accuracy']:.1f}%) | test accuracy | difference |",
            "|---|---|---|"]
    for name in ("imdb-cfc-rmsprop", "imdb-cfc-prepad", "imdb-cfc-kernel-decay", "imdb-cfc-lecun-heads",
                 "imdb-cfc-silu64x2"):
        r = runs.get(name)
        if r:
            change = ", ".join(f"{k}={v}" for k, v in (r["changed_from_preset"] or {}).items())
            diff = f"{100 * (r['test_accuracy'] - base['test_accuracy']):+.1f}"
            rows.append(f"| {change} | {100 * r['test_accuracy']:.1f}% | {'±0.0' if diff == '-0.0' else diff} |")
    return "\n".join(rows) + "\n\n" + _source(doc, threads=1, also="another training (1 thread) beside most runs",
                                              command="python -m benchmarks.baselines --only NAME --threads 1")


def edge() -> str:
    """Batch-1 latency per step: generated C against the folded engines and ncps."""
    doc = _load("edge")
    runs = (doc or {}).get("latency") or {}
    if not runs:
        return "_not measured yet: run `python -m benchmarks.edge --model NAME=CKPT`_"
    rows = ["| model | µs per step (median of interleaved passes) | C against each | accuracy, C / eval's engine |",
            "|---|---|---|---|"]
    for name, r in runs.items():
        times = "; ".join(f"{k} {v['median']:.2f}" for k, v in r["us_per_step"].items())
        spans = r.get("c_speedup_interval") or {}
        ratios = ", ".join(f"{v:.2f}×" + (f" ({spans[k]['interval'][0]:.2f}–{spans[k]['interval'][1]:.2f}"
                                          + (", no measurable difference" if spans[k]["verdict"] ==
                                             "no measurable difference" else "") + ")" if k in spans else "")
                           + f" {k}" for k, v in r["c_speedup"].items())
        acc = r.get("accuracy") or {}
        acc_cell = " / ".join(f"{100 * v:.2f}%" for v in acc.values()) + \
            (f" ({r['test_samples']:,} items" + (f", {r['predictions_differing']} predictions differ"
                                                 if "predictions_differing" in r else "") + ")"
             if r.get("test_samples") else "")
        sparse = sum(" sparse" in p for p in r.get("products") or [])
        form = (f"; {sparse} of {len(r['products'])} products sparse" if sparse else "") + \
            (f", token table {r['token_table']}" if r.get("token_table") == "embedding" else "") + \
            (f"; flash {r['flash_vs_dense']:.2f}× the dense C's" if r.get("flash_vs_dense") else "")
        if "predictions_differing_dense" in r:
            acc_cell += f"; dense C: {r['predictions_differing_dense']} differ"
        rows.append(f"| {name} ({r['arch']}, {r['dataset']}{form}) | {times} | {ratios} | {acc_cell} |")
    any_run = next(iter(runs.values()))
    seqs = sorted({r["sequences"] for r in runs.values()})
    rows += ["", f"One stream at a time (batch 1), {' or '.join(map(str, seqs))} test sequences a pass, "
             f"{any_run['repeats']} interleaved passes; C against each: the median of the per-pass ratios with "
             "its distribution-free interval (where recorded); C timed in C around its compiled loop "
             f"(`{any_run['compiler']}`), the others by the wall clock.", "",
             _source({**doc, "machine": any_run["machine"]}, threads=any_run["threads"],
                     also="; ".join(dict.fromkeys(r["what_else_ran"] for r in runs.values())),
                     command="`; `".join(dict.fromkeys(r["command"] for r in runs.values())))]
    return "\n".join(rows)


def edge_m4() -> str:
    """The generated C on a Cortex-M4: flash and RAM, and which parts it fits."""
    doc = _load("edge")
    runs = (doc or {}).get("m4") or {}
    if not runs:
        return "_not measured yet: run `python -m benchmarks.edge --m4 NAME=CKPT`_"
    parts = list(next(iter(runs.values()))["fits"])
    rows = ["| model | weights | dt | flash (text + data) | RAM (state + stack arrays) | " + " | ".join(parts) + " |",
            "|---|---|---|---|---|" + "---|" * len(parts)]
    for name, r in runs.items():
        table = (f", token table {r['token_table']}" if r.get("token_table") else "") + \
            (f", {r['sparse_products']} of {r['products']} products sparse" if r.get("sparse_products") else "") + \
            (f", rows padded to {r['row_align']} B" if r.get("row_align") else "")
        rows.append(f"| {name} ({r['arch']}, {r['dataset']}) | {r['encoding']}{table} | {r.get('dt', '')} | {r['flash_bytes']:,} B | "
                    f"{r['ram_bytes']:,} B | " + " | ".join("fits" if r["fits"][p] else "no" for p in parts) + " |")
    any_run = next(iter(runs.values()))
    rows += ["", f"`{any_run['compiler']}`, sized by `arm-none-eabi-size` (the model's object alone).", "",
             _source({**doc, "machine": any_run["machine"]}, threads="n/a", also="n/a (sizes)",
                     command="`; `".join(dict.fromkeys(r["command"] for r in runs.values())))]
    return "\n".join(rows)


def own_data() -> str:
    """docs/results/own-data.md: PhysioNet 2012 and Walker2d as your own data, against the papers."""
    doc = _load("own-data")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.own_data`_"
    rows = ["| benchmark | test metric | fp32 | int8 (static) | pruned 80% + 1 epoch | paper (CfC) | C weights | "
            "train (wall, peak RSS) |", "|---|---|---|---|---|---|---|---|"]
    shown = {"physionet": ("AUC", "auc", "physionet-cfc", "{:.3f}"),
             "walker2d": ("MSE, data units", "mse_units", "walker2d-cfc", "{:.3f}")}
    for name, (label, key, figure, fmt) in shown.items():
        r = doc["runs"].get(name)
        if not r:
            continue
        cell = lambda v: fmt.format(r["test"][v][key]) if key in r["test"].get(v, {}) else "—"  # noqa: E731
        train = r["commands"].get("train") or {}
        rows.append(f"| {name} | {label} | {cell('fp32')} | {cell('int8')} | {cell('pruned')} | {paper(figure)} | "
                    f"{r['c_flash_bytes']:,} bytes | {train.get('wall_s', '?')} s, {train.get('peak_rss_mb', '?')} MB |")
    extra = []
    for name in shown:
        r = doc["runs"].get(name)
        if r and "accuracy" in r["test"].get("fp32", {}):
            extra.append(f"{name} accuracy (fp32): {100 * r['test']['fp32']['accuracy']:.1f}%")
        if r and "mae_units" in r["test"].get("fp32", {}):
            extra.append(f"{name} MAE (fp32, data units): {r['test']['fp32']['mae_units']:.3f}")
    commands = "; ".join(f"`{r['train_command']}`" for r in doc["runs"].values() if r.get("train_command"))
    return ("\n".join(rows) + "\n\n" + ("; ".join(extra) + ".\n\n" if extra else "")
            + f"Trained {doc['epochs']} epochs (PhysioNet; Walker2d as its command says); the training commands: "
            f"{commands}.\n\n" + _source(doc))


def stream() -> str:
    """docs/results/own-data.md: one epoch on a table larger than memory (--stream)."""
    doc = _load("stream")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.stream`_"
    big, small = doc["large"], doc["small"]
    t = doc["tables"]
    rows = ["| table | path | address-space limit | peak RSS | training rows/s |", "|---|---|---|---|---|",
            f"| {t['large']['bytes'] / 1e9:.2f} GB, {t['large']['rows']:,} rows | --stream | "
            f"{big['address_space_limit_gb']:g} GB | {big['peak_rss_mb']:,.0f} MB | {big['rows_per_s']:,.0f} |"]
    for name in ("in_memory", "stream"):
        s = small[name]
        rows.append(f"| {t['small']['bytes'] / 1e6:.0f} MB, {t['small']['rows']:,} rows | "
                    f"{'in memory' if name == 'in_memory' else '--stream'} | none | {s['peak_rss_mb']['median']:,.0f} MB | "
                    f"{s['rows_per_s']['median']:,.0f} ({s['rows_per_s']['min']:,.0f} to {s['rows_per_s']['max']:,.0f}) |")
    return ("\n".join(rows) + f"\n\n{doc['model']}; rows/s: the training split's rows over `fit`'s wall time (the "
            f"epoch and its validation pass). On the small table `--stream` ran at "
            f"{small['stream_over_in_memory_rows_per_s']:.2f}x the in-memory path's rows/s (medians of "
            f"{len(small['stream']['runs'])} interleaved runs each; min to max in brackets).\n\n" + _source(doc))


def sparse_int() -> str:
    """docs/results/pruning.md: prune -> quantize against dense int8 (benchmarks/sparse_int.py)."""
    doc = _load("sparse-int")
    if not doc:
        return "_not measured yet: run `python -m benchmarks.sparse_int`_"
    rows = ["| model, pruning | variant | test accuracy | engine | recurrent weight bytes | file bytes | codecs |",
            "|---|---|---|---|---|---|---|"]
    for key, e in doc["results"].items():
        for variant in ("fp32", "dense int8", "pruned fp32", "pruned int8"):
            v = e[variant]
            acc = "—" if v["accuracy"] is None else _pct(v["accuracy"])
            rows.append(f"| {key} ({e['scope']} {e['ratio']:g}, +{e['finetune']} ep) | {variant} | {acc} | {v['engine']} | "
                        f"{v['recurrent_weight_bytes']:,} | {v['file_bytes']:,} | {', '.join(v['codecs']) or 'none'} |")
        rows.append(f"| | **pruned int8 / dense int8** | | | **{100 * e['recurrent_ratio_to_dense_int8']:.1f}%** | "
                    f"**{100 * e['file_ratio_to_dense_int8']:.1f}%** | |")
    first = next(iter(doc["results"].values()))
    return "\n".join(rows) + "\n\n" + _source(doc, threads=first["threads"], also=first["what_else_ran"],
                                              command=first["command"])


def _papers() -> dict:
    return yaml.safe_load((ROOT / "benchmarks" / "papers.yaml").read_text())


def paper(figure: str) -> str:
    """A paper's figure by id (benchmarks/papers.yaml), for the tables' "paper" columns."""
    return next(f["value"] for f in _papers()["figures"] if f["id"] == figure)


def papers() -> str:
    """docs/references.md: each paper, then the figures of it that our tables quote."""
    doc = _papers()
    out = []
    for key, p in doc["papers"].items():
        link = f" [{p['link']}]({p['link']})" if p.get("link") else ""
        out.append(f"### {p['title']}\n\n{p['authors']}. {p['venue']}.{link} Cited in the tables as "
                   f"*{p['short']}*.\n")
        out.append("| figure | value |\n|---|---|")
        out.extend(f"| {f['what']} | {f['value']} |" for f in doc["figures"] if f["paper"] == key)
        out.append("")
    return "\n".join(out).rstrip()


def headline() -> str:
    """The README's few headline results, each from its results file, with a link to its page."""
    base, quant, prune_acc, pipe = (_load(n) or {} for n in ("baselines", "quantize", "prune-acceptance",
                                                              "pipeline-imdb"))
    red = _load("bench-pmnist-ode-rnn-scratch-svd125") or {}
    runs = base.get("runs", {})
    rows = ["| result | ours | paper | details |", "|---|---|---|---|"]
    ref = runs.get("imdb-cfc-reference")
    if ref:
        rows.append(f"| IMDB CfC, test accuracy | {100 * ref['test_accuracy']:.1f}% | {paper('imdb-cfc')} | "
                    "[baselines](docs/results/baselines.md) |")
    q = (quant.get("runs") or {}).get("imdb/cfc", {}).get("rows", {}).get("static")
    if q:
        rows.append(f"| IMDB CfC, static int8: accuracy; speed-up over fp32 eager | {100 * q['accuracy']:.2f}%; "
                    f"{q['speedup_vs_eager_fp32']:.2f}× | {paper('imdb-cfc-int8')} | "
                    "[quantization](docs/results/quantization.md) |")
    if prune_acc.get("checkpoints"):
        first, g = prune_acc["checkpoints"][0], prune_acc["checkpoints"][1]
        rows.append(f"| IMDB CfC, 95% global pruning + 3 epochs: accuracy; weights × smaller | "
                    f"{100 * g['accuracy']:.2f}% (from {100 * first['accuracy']:.2f}%); "
                    f"{first['tensor_bytes'] / g['tensor_bytes']:.1f}× | {paper('pruning')} | "
                    "[pruning](docs/results/pruning.md) |")
    if pipe.get("checkpoints"):
        t, last = pipe["checkpoints"][0], pipe["checkpoints"][-1]
        rows.append(f"| IMDB CfC-Deep → pruned, distilled, int8 CfC-NCP: weights × smaller; × faster; accuracy | "
                    f"{t['tensor_bytes'] / last['tensor_bytes']:.1f}×; {last['speedup']:.1f}×; "
                    f"{100 * last['accuracy']:.2f}% (teacher {100 * t['accuracy']:.2f}%) | {paper('distillation')} | "
                    "[pipelines](docs/results/pipelines.md) |")
    scratch = runs.get("pmnist-ode-rnn-scratch")
    if scratch and red.get("ratios"):
        rows.append(f"| pixel-MNIST ODE-RNN: accuracy; rank-125 SVD (least-squares interpolation) speed-up | "
                    f"{100 * scratch['test_accuracy']:.2f}%; "
                    f"{red['ratios'][0]['speedup']:.2f}× | {paper('pmnist-ode-rnn')} | "
                    "[model-order reduction](docs/results/reduction.md) |")
    edge_runs = ((_load("edge") or {}).get("latency") or {})
    for key in ("imdb42-cfc", "pmnist-ode-rnn"):  # imdb42: the current generator (the imdb-* rows predate it)
        e = edge_runs.get(key)
        if e:
            c = next(iter(e["us_per_step"]))
            others = ", ".join(f"{v:.1f}× {k}" for k, v in e["c_speedup"].items())
            rows.append(f"| {key} at batch 1 (one stream) as generated C: µs per step; against | "
                        f"{e['us_per_step'][c]['median']:.1f} µs; {others} | — | [edge engine](docs/results/edge.md) |")
    ltc = runs.get("ltc-vs-cfc")
    if ltc:
        rows.append(f"| LTC vs CfC, training step (Person Activity, hidden {ltc['hidden']}) | CfC "
                    f"{ltc['ltc_over_cfc']}× faster | {paper('cfc-speed')} | [baselines](docs/results/baselines.md) |")
    return "\n".join(rows) + "\n\nOne CPU run each (2-core AMD EPYC, 1 thread) against the papers' figures (GPU " \
        "means of 5 runs where they give them); each page says what ran beside each measurement. The papers: " \
        "[references](docs/references.md)."


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _status(ours: float, value: float, band: float) -> str:
    """reproduced within the paper's band (or its figure when it gives none), exceeded above it, short below."""
    if ours > value + band:
        return "exceeded"
    return "reproduced" if ours >= value - band else "short"


def replication() -> str:
    """docs/results/replication.md: every figure of the three papers we reproduce, theirs and ours,
    the command, and where we stand (computed from the results files; the reasons are the
    measured circumstances)."""
    base = (_load("baselines") or {}).get("runs", {})
    quant = (_load("quantize") or {}).get("runs", {})
    red = (_load("reduce") or {}).get("runs", {})
    prune_pa = ((_load("prune") or {}).get("runs", {}).get("person_activity/cfc") or {}).get("cells", {})
    accept = (_load("prune-acceptance") or {}).get("checkpoints") or []
    dist = (_load("distill") or {}).get("runs", {})
    svd = _load("bench-pmnist-ode-rnn-scratch-svd125") or {}
    rows: dict[str, tuple[str, str]] = {}  # figure id -> (table row, the command that recorded it)

    def row(fid: str, ours: str, status: str, why: str, command: str | None) -> None:
        f = next(f for f in _papers()["figures"] if f["id"] == fid)
        paper_short = _papers()["papers"][f["paper"]]["short"]
        command = (command or "").split(" --note ")[0]  # what else ran is on the results pages
        command = command.replace("python benchmarks/", "python -m benchmarks.").replace(".py ", " ")
        rows[fid] = (f"| {paper_short}: {f['what']} | {f['value']} | {ours} | **{status}**{': ' + why if why else ''} "
                     f"| {_clone_link(fid)} |", command)

    ltc = base.get("ltc-vs-cfc")
    if ltc:
        row("cfc-speed", f"CfC {ltc['ltc_over_cfc']}× faster than LTC per training step", 
            "reproduced" if ltc["ltc_over_cfc"] >= 10 else "short",
            f"over an order of magnitude on Person Activity (hidden {ltc['hidden']}), one CPU thread", ltc.get("command"))
    cfc = base.get("imdb-cfc-reference")
    seeds = ((_load("seeds") or {}).get("groups") or {})
    several = seeds.get("imdb-cfc-default") if (seeds.get("imdb-cfc-default") or {}).get("n", 0) > 1 else None
    if several:
        t = several["test_accuracy"]
        ours = f"{_seed_mean(several)} (seed 0: {_pct(cfc['test_accuracy'])})" if cfc else _seed_mean(several)
        row("cfc-imdb-reference", ours, _status(100 * t["mean"], 85.9, 1.0),
            f"the mean of {t['n']} CPU seeds ([several seeds](#several-seeds))", cfc.get("command") if cfc else None)
        row("imdb-cfc", ours, _status(100 * t["mean"], 88.2, 0.8),
            f"the mean of {t['n']} CPU seeds against a GPU mean of 5, {88.2 - 100 * t['mean']:.1f} points under it; "
            "the reference code's own mean is 85.9% ([several seeds](#several-seeds))", cfc.get("command") if cfc else None)
    elif cfc:
        acc = cfc["test_accuracy"]
        row("cfc-imdb-reference", _pct(acc), _status(100 * acc, 85.9, 1.0), "one CPU run", cfc.get("command"))
        row("imdb-cfc", _pct(acc), _status(100 * acc, 88.2, 0.8),
            "one CPU run against a GPU mean of 5; the reference code's own mean is 85.9%", cfc.get("command"))
    # the CfC-Deep recipe runs (not the study's protocol), chosen by their best validation accuracy
    deep = max((v for k, v in base.items() if k.startswith("imdb-cfc-deep") and v.get("preset") != "seed"
                and v.get("test_accuracy") is not None),
               key=lambda v: max((e.get("val_accuracy") or 0 for e in v.get("epoch_log") or []), default=0),
               default=None)
    if deep:
        acc = deep["test_accuracy"]
        st = _status(100 * acc, 88.1, 0.4)
        tests = [v["test_accuracy"] for k, v in base.items() if k.startswith("imdb-cfc-deep") and v.get("preset") != "seed"
                 and v.get("test_accuracy") is not None]
        best_val = max(e.get("val_accuracy") or 0 for e in deep["epoch_log"])
        deep_seeds = {k: seeds[k] for k in ("imdb-cfc-deep-deep", "imdb-cfc-deep-reference") if k in seeds}
        if any(g["n"] > 1 for g in deep_seeds.values()):
            top = max(deep_seeds.values(), key=lambda g: g["test_accuracy"]["mean"])
            label = {"imdb-cfc-deep-deep": "`--preset deep`", "imdb-cfc-deep-reference": "the reference recipe"}
            row("imdb-cfc-deep", "; ".join(f"{label[k]} {_seed_mean(g)}" for k, g in deep_seeds.items()),
                _status(100 * top["test_accuracy"]["mean"], 88.1, 0.4),
                "means of CPU seeds against a GPU mean of 5: [several seeds](#several-seeds)", deep.get("command"))
        else:
            row("imdb-cfc-deep", _pct(acc), st, "" if st != "short" else
                f"one CPU run of the recipe a search chose by validation accuracy ({_pct(best_val)} on 1,000 held-out "
                f"reviews); its {len(tests)} finished runs reached {_pct(min(tests))} to {_pct(max(tests))} on test: "
                "[the search](baselines.md#the-cfc-deep-recipe-search)", deep.get("command"))
    ncp = base.get("imdb-cfc-ncp-reference")
    if ncp:
        row("imdb-cfc-ncp", _pct(ncp["test_accuracy"]), _status(100 * ncp["test_accuracy"], 84.4, 0.6),
            "one CPU run", ncp.get("command"))
    pa = base.get("person_activity-cfc")
    if pa:
        row("person-activity-cfc", _pct(pa["test_accuracy"]), _status(100 * pa["test_accuracy"], 82.8, 0.7),
            "the data here is a subset of Person Activity (see the data sets page); not comparable", pa.get("command"))
    for fid, key, static_acc, qat_acc, speedup in (("imdb-cfc-int8", "imdb/cfc", 86.0, 86.8, 1.9),
                                                    ("imdb-cfc-deep-int8", "imdb/cfc-deep", 87.2, 87.6, 2.7)):
        rows_q = (quant.get(key) or {}).get("rows", {})
        q, qat, fp32 = rows_q.get("static"), rows_q.get("qat"), rows_q.get("fp32 folded")
        if q:
            st = _status(100 * q["accuracy"], static_acc, 0.0)
            qst = _status(100 * qat["accuracy"], qat_acc, 0.0) if qat else None
            speed = "reproduced" if q["speedup_vs_eager_fp32"] >= speedup * 0.9 else "short"
            whole = q.get("accuracy_samples")
            short = "short" in (st, qst)
            row(fid, f"static {_pct(q['accuracy'])}" + (f", QAT {_pct(qat['accuracy'])}" if qat else "")
                + f"; {q['speedup_vs_eager_fp32']:.2f}×",
                f"{st} (static), " + (f"{qst} (QAT), " if qst else "") + f"{speed} (speed)",
                "our int8 engine against fp32 eager, batch 128, one thread"
                + (f"; accuracy on all {whole:,} test reviews" if whole else "")
                + (f"; our fp32 model is at {_pct(fp32['accuracy'])} (theirs "
                   f"{paper(fid.removesuffix('-int8')).split(' ')[0]}), against which static int8 is "
                   f"{100 * (q['accuracy'] - fp32['accuracy']):+.2f} points"
                   + (f", QAT {100 * (qat['accuracy'] - fp32['accuracy']):+.2f}" if qat else "")
                   if short and fp32 else ""),
                (quant.get(key) or {}).get("command"))
    g95 = prune_pa.get("unstructured-global@0.95+ft10")
    if len(accept) > 1 and g95:
        first, glob = accept[0], accept[1]
        kept = glob["accuracy"] >= first["accuracy"] - 0.005
        row("pruning", f"IMDB CfC: {_pct(glob['accuracy'])} at 95% global + 3 epochs (from {_pct(first['accuracy'])}); "
            f"Person Activity: {_pct(g95['accuracy'])} at 95% + 10 epochs (from {_pct(prune_pa['unpruned']['accuracy'])})",
            ("reproduced" if kept else "short") + " on IMDB, short on Person Activity",
            "the Person Activity subset leaves little to fine-tune on", "make -f examples/imdb.mk pruning-acceptance")
    from benchmarks.distill import STUDY_RECIPES, STUDY_SIZES, study_runs, study_teacher

    study = study_runs(dist)
    if study:

        def recipe_text(recipe: str) -> str:
            cells = [f"{ratio} {_pct(study[ratio, recipe, True]['test_accuracy'])} vs "
                     f"{_pct(study[ratio, recipe, False]['test_accuracy'])}"
                     for ratio, *_ in STUDY_SIZES if (ratio, recipe, True) in study and (ratio, recipe, False) in study]
            return ", ".join(cells)

        def gains(recipe: str) -> list[float]:
            return [100 * (study[r, recipe, True]["test_accuracy"] - study[r, recipe, False]["test_accuracy"])
                    for r, *_ in STUDY_SIZES[:2] if (r, recipe, True) in study and (r, recipe, False) in study]

        teacher = study_teacher(study)["teacher_accuracy"]
        label = {"seed": "`--preset seed`", "reference": "the reference recipe"}
        # the study's two findings, per recipe: no loss at 8-15x (with the teacher, within half a point of
        # it), and students alone 5-10 points worse (the teacher's gain at 8x and 15x)
        no_loss = [rec for rec in STUDY_RECIPES if all(
            (r, rec, True) in study and study[r, rec, True]["test_accuracy"] >= teacher - 0.005 for r, *_ in STUDY_SIZES[:2])]
        effect = [rec for rec in STUDY_RECIPES if gains(rec) and max(gains(rec)) >= 5]
        ours = "; ".join(f"{label[rec]}: {recipe_text(rec)}" for rec in STUDY_RECIPES if recipe_text(rec))
        status = (f"{'reproduced' if no_loss else 'short'} (no loss), {'reproduced' if effect else 'short'} "
                  "(teacher effect)")
        why = (f"teacher {_pct(teacher)}; no loss at 8-15× under {' and '.join(label[r] for r in no_loss) or 'neither recipe'}; "
               + "; ".join(f"the teacher's gain at 8× and 15× under {label[rec]}: "
                           f"{', '.join(f'{g:+.1f}' for g in gains(rec))} points" for rec in STUDY_RECIPES if gains(rec))
               + " (the study: 5-10)")
        row("distillation", ours + " (with vs without the teacher)", status, why,
            re.sub(r"--only \S+", "--only ENTRY", next(iter(study.values()))["command"]))
    conv = red.get("mnist/conv-ode", {}).get("cells", {})
    if base.get("mnist-conv-ode") and conv.get("pod-deim/lstsq@50:120"):
        c = conv["pod-deim/lstsq@50:120"]
        acc = base["mnist-conv-ode"]["test_accuracy"]
        row("mnist-conv-ode", f"{_pct(acc)}; POD-DEIM 50 (least-squares rebuild) {_pct(c['accuracy'])} at "
            f"{c['speedup']:.1f}× faster", "exceeded" if acc > 0.979 and c["accuracy"] > 0.919 else "reproduced",
            "our least-squares interpolation; the seed's DEIM form gives "
            f"{_pct(conv['pod-deim@50']['accuracy'])}" if conv.get("pod-deim@50") else "",
            red["mnist/conv-ode"].get("command"))
    scratch = base.get("pmnist-ode-rnn-scratch")
    if scratch and svd.get("ratios"):
        acc, r = scratch["test_accuracy"], svd["results"][0]["accuracy"]
        plain = ((red.get("pmnist/ode-rnn-40ep") or {}).get("cells") or {}).get("svd@125") or {}
        row("pmnist-ode-rnn", f"{_pct(acc)}; SVD rank 125, least-squares interpolation (ours) {_pct(r)} at "
            f"{svd['ratios'][0]['speedup']:.2f}× faster"
            + (f"; the paper's plain SVD {_pct(plain['accuracy'])}" if "accuracy" in plain else ""),
            f"{_status(100 * acc, 96.2, 0.0)} (accuracy), exceeded (reduced, with our interpolation)",
            f"one CPU run, {96.2 - 100 * acc:.1f} points under the paper's full model; the rank-125 model with "
            f"`--interpolation lstsq` loses {100 * (acc - r):.2f} points where the paper's lost 1.7"
            + (f"; plain SVD (`--method svd`, as the paper) loses {100 * (acc - plain['accuracy']):.2f}"
               if "accuracy" in plain else ""), scratch.get("command"))
    table = "\n".join(r for r, _ in rows.values())
    return ("| paper: figure | theirs | ours | status | from a clone |\n|---|---|---|---|---|\n" + table
            + "\n\nOne CPU run each (2-core AMD EPYC, 1 thread) unless the row gives a mean of seeds, against the papers' figures (GPU means of 5 runs where "
            "they give them). *reproduced*: within the paper's ± band (at its figure when it gives none); *exceeded*: "
            "above it; *short*: below it, with the reason. The last column links each figure's commands from a "
            "fresh clone, below.\n\n" + _clone_sections({fid: cmd for fid, (_, cmd) in rows.items()}))


def _seed_mean(group: dict) -> str:
    """A recipe's test accuracy over its seeds: mean ± sd, n and the 95% interval (one seed: the value)."""
    t = group["test_accuracy"]
    if t["n"] < 2:
        return f"{_pct(t['mean'])} (n = 1)"
    return (f"{100 * t['mean']:.2f}% ± {100 * t['sd']:.2f} (n = {t['n']}; 95% interval {100 * t['low']:.2f}–"
            f"{100 * t['high']:.2f}%)")


# the paper's figure (benchmarks/papers.yaml) each group of seeds is compared with
SEED_PAPERS = {"imdb-cfc-default": "imdb-cfc", "imdb-cfc-deep-deep": "imdb-cfc-deep",
               "imdb-cfc-deep-reference": "imdb-cfc-deep"}


def _mean_sd(figure: str) -> tuple[float, float]:
    """A paper's "M% ± S" figure as numbers."""
    found = re.match(r"([\d.]+)% ± ([\d.]+)", paper(figure))
    if not found:
        raise ValueError(f"papers.yaml: figure {figure} is not 'M% ± S'")
    return float(found[1]), float(found[2])


def seeds() -> str:
    """docs/results/replication.md#several-seeds: each recipe's seeds, their spread against the
    papers' means of 5 GPU runs, and what one validation hold-out can tell apart."""
    doc = _load("seeds") or {}
    groups = doc.get("groups") or {}
    if not groups:
        return "No results yet: `python -m benchmarks.seeds runs/seeds/*.st`."
    rows = ["| recipe | n | test accuracy, mean ± sd | 95% interval | each seed (test) | validation, mean ± sd "
            "(one hold-out's standard error) | the paper (GPU, mean ± sd of 5) | training wall time, each (pauses included) |",
            "|---|---|---|---|---|---|---|---|"]
    lines = []
    for name, g in groups.items():
        t, v = g["test_accuracy"], g.get("val_accuracy") or {}
        mean, sd = _mean_sd(SEED_PAPERS[name]) if name in SEED_PAPERS else (None, None)
        spread = (f"{100 * t['mean']:.2f}% ± {100 * t['sd']:.2f}" if t["n"] > 1 else _pct(t["mean"]))
        interval = f"{100 * t['low']:.2f}–{100 * t['high']:.2f}%" if t["n"] > 1 else "—"
        val = (f"{100 * v['mean']:.2f}% ± {100 * v['sd']:.2f} ({100 * g['val_standard_error']:.2f})"
               if v.get("n", 0) > 1 and g.get("val_standard_error") else "—")
        each = ", ".join(f"{_pct(r['test_accuracy'])} (seed {r['seed']})" for r in g["runs"])
        hours = ", ".join(_duration(r["train_seconds"]) for r in g["runs"] if r.get("train_seconds"))
        rows.append(f"| {name} | {t['n']} | {spread} | {interval} | {each} | {val} | "
                    f"{f'{mean}% ± {sd}' if mean else '—'} | {hours} |")
        if mean and t["n"] > 1:
            inside = t["low"] * 100 <= mean <= t["high"] * 100
            best = max(r["test_accuracy"] for r in g["runs"])
            lines.append(f"- **{name}**: {100 * t['mean'] - mean:+.2f} points from the paper's {mean}%; the paper's "
                         f"mean is {'inside' if inside else 'outside'} our 95% interval (a t-interval of {t['n']} "
                         f"seeds). Our best seed is {(100 * best - mean) / sd:+.1f} of the paper's run-to-run sd "
                         f"({sd}) from its mean.")
        elif mean:
            lines.append(f"- **{name}**: one seed so far ({_pct(t['mean'])}, {100 * t['mean'] - mean:+.2f} points from "
                         f"the paper's {mean}%): no spread yet.")
        if v.get("n", 0) > 1 and g.get("val_standard_error"):
            se_val = 100 * g["val_standard_error"]
            n_val = g["runs"][0]["val_samples"]
            lines.append(f"  Its validation hold-out ({n_val:,} reviews) has a standard error of {se_val:.2f} points at "
                         f"this accuracy; two recipes one seed each are told apart at 95% only when they differ by "
                         f"{1.96 * math.sqrt(2) * se_val:.1f} points or more (5,000 reviews: "
                         f"{1.96 * math.sqrt(2) * se_val * math.sqrt(n_val / 5000):.1f}), while the seeds' test "
                         f"accuracies spread by {100 * t['sd']:.2f} points (sd).")
    return ("\n".join(rows) + "\n\n" + "\n".join(lines) + "\n\n" + _source(
        doc, threads="1", also=doc.get("what_else_ran"), command=(doc.get("command") or "").split(" --note ")[0]))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {round(seconds % 3600 / 60):02d} min"


def _clone_time(fid: str) -> str:
    """The figure's time from a clone: its parts' measured seconds, plus the recorded training of
    models the measurement found already trained."""
    from benchmarks.replicate import part_seconds, parts_of, recorded_seconds

    done = ((_load("replication") or {}).get("parts") or {})
    parts = parts_of(fid)
    if parts and all(p.id not in done and recorded_seconds(p) for p in parts):
        return f"about {_duration(sum(recorded_seconds(p) or 0 for p in parts))} (the recorded runs)"
    if not parts or not all(p.id in done for p in parts):
        return ""
    return _duration(sum(part_seconds(done[p.id]) for p in parts))


def _clone_link(fid: str) -> str:
    from benchmarks.replicate import SAME_AS, parts_of

    parts = parts_of(fid)
    if not parts:
        return ""
    fid = SAME_AS.get(fid, fid)
    how = "shipped model" if all(p.shipped for p in parts) else "trains first"
    took = _clone_time(fid) or "not timed yet"
    return f"[{how}, {took}](#{fid})"


def _clone_sections(commands: dict[str, str]) -> str:
    """Per figure: each part's commands from a clone's root, its measured time, the values it must
    give (read from the recorded results) and whether the timed run gave them."""
    from benchmarks.replicate import PARTS, SAME_AS, recorded, recorded_seconds

    done = ((_load("replication") or {}).get("parts") or {})
    out = ["## From a clone", "",
           "Run from the repository root of a clone with cfctool installed (`make test` makes `.venv`; then "
           "`. .venv/bin/activate`) and `CFCTOOL_DATA` naming the data directory. Every output lands in "
           "`runs/replicate/`. A row marked *shipped model* starts from `benchmarks/checkpoints/`; the others are "
           "targets of `benchmarks/replicate.mk`, which train their model first with the recorded recipe and seed "
           "(an interrupted training continues where it stopped; `make -n` shows the commands). Times were "
           "measured by `python -m benchmarks.replicate` on the 2-core machine, each command with the threads it "
           "names; *expect* is the recorded value each must give. The suite runs every figure measured under a "
           "minute in all (its parts in order) and checks its values.", ""]
    papers = _papers()
    for fid in commands:
        parts = [p for p in PARTS if p.row == fid]
        if not parts:
            continue
        also = [other for other, same in SAME_AS.items() if same == fid and commands.get(other)]
        f = next(f for f in papers["figures"] if f["id"] == fid)
        out += [f"### {papers['papers'][f['paper']]['short']}: {f['what']} {{#{fid}}}", ""]
        for p in parts:
            d = done.get(p.id)
            if d:
                trained = d.get("training_seconds_recorded") or {}
                took = _duration(d["seconds"]) + ("" if not trained else " plus the training, " + ", ".join(
                    f"{_duration(v)} (`{k}`, read from its record)" for k, v in trained.items()))
                took += f"; also running: {d['what_else_ran']}"
                gave = ("gave the expected values" if d["match"] else "**differed**: " + ", ".join(
                    f"{k} {v}" for k, v in d["values"].items()))
            elif recorded_seconds(p):
                took, gave = (f"not run from a clone yet: the recorded runs took {_duration(recorded_seconds(p))} "
                              "in all, on this machine"), ""
            else:
                took, gave = "not timed from a clone yet", ""
            expect = ", ".join(f"{e.label} {_expect_text(e, recorded(e))}" for e in p.expects)
            out += [f"**{p.what}** ({took}{'; ' + gave if gave else ''}). Expect: {expect}.", "",
                    "```sh", *p.steps, "```", ""]
        for p in parts:
            if p.note:
                out += [p.note, ""]
        if commands[fid]:
            out += [f"Recorded by `{commands[fid]}`" + (" (also the figure of "
                    + ", ".join(f"the {papers['papers'][f2['paper']]['short']}" for f2 in papers["figures"]
                                if f2["id"] in also) + ")" if also else "") + ".", ""]
    return "\n".join(out).rstrip()


def _expect_text(e, value: float) -> str:
    if e.at_least is not None:
        return f"at least {e.at_least:g}× (recorded {value:g}×)"
    if e.ratio:
        return f"{value:.2f}× (±{100 * e.tol:.0f}%: a timing)"
    return _pct(value)


def deep_search() -> str:
    """The IMDB CfC-Deep recipe search: one row per probe, finished or stopped."""
    doc = _load("deep_search")
    if not doc:
        return "_not collected yet: `python -m benchmarks.deep_search --states runs/baselines --plot`_"
    rows = ["| probe | preset + changes | epochs | best validation (epoch) | last training loss | test | what it said |",
            "|---|---|---|---|---|---|---|"]
    for name, p in doc["probes"].items():
        changes = ", ".join(f"{k} {v}" for k, v in (p["changed_from_preset"] or {}).items())
        last = p["epochs"][-1] if p["epochs"] else {}
        best = f"{_pct(p['best_val_accuracy'])} ({p['best_epoch']})" if p["best_val_accuracy"] is not None else "—"
        test = f"**{_pct(p['test_accuracy'])}**" if p["test_accuracy"] is not None else "— (stopped)"
        rows.append(f"| {name} | {p['preset']}{': ' + changes if changes else ''} | {len(p['epochs'])}"
                    f"{'' if p['status'] == 'finished' else ' (stopped)'} | {best} | "
                    f"{last.get('train_loss', float('nan')):.3f} | {test} | {p['verdict']} |")
    threads = sorted({str(p["threads"]) for p in doc["probes"].values()})
    how = [f"{name}: {p['how_it_ran']}" for name, p in doc["probes"].items() if p.get("how_it_ran")]
    return "\n".join(rows) + "\n\n" + "".join(f"- {h}\n" for h in how) + (
        "\n" if how else "") + ("Validation: 1,000 training reviews held out (4%); test: the 25,000 test "
                                       "reviews, once per finished run, at its best validation epoch.\n\n") + \
        _source(doc, threads="/".join(threads), also="at most one other 1-thread training beside each probe",
                command="python -m benchmarks.deep_search --states runs/baselines --plot")


def _budget_accuracy(e: dict) -> str:
    """Test accuracy before → after a budget's setting: one model's, or the seeds' mean ± sd (n)."""
    if not e.get("seeds"):
        return (f"{_pct(e['test_accuracy']['original'])} → {_pct(e['test_accuracy']['compressed'])} "
                f"({-e['test_drop_points']:+.2f})")
    from cfctool.metrics import mean_interval

    each = e["seeds"]["test_accuracy_each"]
    before, after = (mean_interval(each[k]) for k in ("original", "compressed"))
    drop = sum(100 * (a - b) for a, b in zip(each["original"], each["compressed"])) / len(each["original"])
    return (f"{100 * before['mean']:.2f} ± {100 * before['sd']:.2f}% → {100 * after['mean']:.2f} ± "
            f"{100 * after['sd']:.2f}% ({-drop:+.2f}; n = {before['n']})")


def _alone(runs: dict, key: str, e: dict) -> str:
    """What the first model alone chose, where that search is on record (the same method and
    budget on the same model: its validation and test accuracy equal)."""
    one = runs.get(key.rsplit("-seeds", 1)[0])
    first = {k: e["seeds"][f"{k}_each"]["original"][0] for k in ("val_accuracy", "test_accuracy")}
    same = one and all(one[k]["original"] == first[k] for k in first)
    if not same or one["max_drop_points"] != e["max_drop_points"]:
        return ""
    return f"; the first model alone chose {', '.join(f'{k} {v}' for k, v in one['found'].items())}"


def _worst(e: dict) -> str:
    """A mean budget bounds the mean drop, not each model's: say so where one model lost more on test."""
    each = e["seeds"]["test_accuracy_each"]
    worst = max(100 * (a - b) for a, b in zip(each["original"], each["compressed"]))
    if worst <= e["max_drop_points"]:
        return ""
    return (f" — one model lost {worst:.2f} points on test: a budget on the mean bounds the mean drop, "
            "not each model's")


def budget() -> str:
    """docs/results/budget.md: each --max-drop search on a trained model."""
    doc = _load("budget") or {}
    runs = doc.get("runs") or {}
    if not runs:
        return "No results yet: `python -m benchmarks.budget runs/imdb/cfc.st --max-drop 0.5 --threads 1`."
    rows = ["| search | setting found | candidates | search time | test accuracy (original → compressed) | "
            "file bytes (original → compressed) | speed-up | engine |", "|---|---|---|---|---|---|---|---|"]
    for key, e in runs.items():
        found = ", ".join(f"{k} {v}" for k, v in e["found"].items())
        rows.append(f"| {key} (≤ {e['max_drop_points']:g} points) | {found} | {e['candidates']} | "
                    f"{e['search_seconds'] / 60:.1f} min | {_budget_accuracy(e)} | "
                    f"{e['file_bytes']['original']:,} → {e['file_bytes']['compressed']:,} | {e['speedup']:.2f}× | "
                    f"{e['engine']['compressed']} |")
    several = {k: e for k, e in runs.items() if e.get("seeds")}
    notes = ""
    if several:
        notes = ("Rows `-seedsN`: the budget held on the mean over N seeds' models of the recipe, each on its "
                 "own validation hold-out (`--max-drop-with`); the test accuracy is the mean ± sd over the N "
                 "models at the setting found (n = N), and the validation drop that decided it is below.\n\n"
                 + "".join(f"- {k}: validation drop {e['seeds']['drop_mean']:+.2f} points on the mean "
                           f"(sd {e['seeds']['drop_sd']:.2f} over the {len(e['seeds']['checkpoints'])} models); "
                           f"test drop per model "
                           f"{', '.join(f'{100 * (a - b):+.2f}' for a, b in zip(*e['seeds']['test_accuracy_each'].values()))}"
                           f"{_alone(runs, k, e)}{_worst(e)}\n" for k, e in several.items()) + "\n")
    first = next(iter(runs.values()))
    return "\n".join(rows) + "\n\n" + notes + _source(
        {**first, "provenance": doc.get("provenance")},
        also="; ".join(dict.fromkeys(f"{k}: {e['what_else_ran']}" for k, e in runs.items())),
        command="`; `".join(dict.fromkeys(e["command"] for e in runs.values())))


TABLES = {"replication": replication, "seeds": seeds, "budget": budget, "deep_search": deep_search, "cfc_speed": cfc_speed, "baselines": baselines, "engines": engines, "quantize": quantize, "prune": prune,
          "distill": distill, "distill_study": distill_study, "reduce": reduce, "scale": scale, "pipeline": pipeline, "quickstart": quickstart,
          "prune_acceptance": prune_acceptance, "originals": originals, "headline": headline, "papers": papers, "edge": edge, "edge_m4": edge_m4,
          "imdb_recipes": imdb_recipes, "own_data": own_data, "stream": stream, "sparse_int": sparse_int, "imdb_single_changes": imdb_single_changes,
          "quantize_imdb": lambda: quantize("imdb/cfc", ("fp32 folded", "fp32 eager", "static", "dynamic", "qat",
                                                         "int4-qat", "static-fold")),
          "quantize_onnx": lambda: quantize("imdb/cfc", ("fp32 folded", "fp32 onnxruntime", "static onnxruntime")),
          "reduce_ode_rnn": lambda: reduce("pmnist/ode-rnn")}
MARKER = re.compile(r"(<!-- table:([a-z0-9_]+) -->\n)(?:.*?\n)?(<!-- /table:\2 -->)", re.S)


def pages() -> list[Path]:
    """Every page that may hold tables: the README and the docs."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def render(text: str, where: str = "page") -> str:
    """`text` with every table between its markers rendered from the results."""
    def one(m: re.Match) -> str:
        if m.group(2) not in TABLES:
            raise SystemExit(f"{where}: unknown table '{m.group(2)}' (known: {', '.join(TABLES)})")
        return m.group(1) + _cite(TABLES[m.group(2)]()) + "\n" + m.group(3)
    return MARKER.sub(one, text)


PLOTS = ROOT / "docs" / "results" / "plots"  # the benchmark plots, copied where the docs site finds them


def stale_plots() -> list[Path]:
    """benchmarks/results/*.png whose copy under docs/results/plots/ is missing or differs."""
    return [png for png in sorted(results_dir().glob("*.png"))
            if not (PLOTS / png.name).is_file() or (PLOTS / png.name).read_bytes() != png.read_bytes()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pages", nargs="*", type=Path, help="pages to render (default: README.md and docs/**/*.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is out of date")
    args = parser.parse_args(argv)
    stale, used = [], set()
    for page in args.pages or pages():
        text = page.read_text()
        used.update(m.group(2) for m in MARKER.finditer(text))
        rendered = render(text, str(page))
        if rendered == text:
            continue
        if args.check:
            stale.append(str(page))
        else:
            page.write_text(rendered)
            print(page)
    if not args.pages and set(TABLES) - used:
        raise SystemExit(f"tables no page shows: {', '.join(sorted(set(TABLES) - used))}")
    if not args.pages:
        for png in stale_plots():
            if args.check:
                stale.append(str(PLOTS / png.name))
            else:
                PLOTS.mkdir(parents=True, exist_ok=True)
                (PLOTS / png.name).write_bytes(png.read_bytes())
                print(PLOTS / png.name)
    if stale:
        raise SystemExit(f"tables out of date in {', '.join(stale)}; run python -m benchmarks.tables")


if __name__ == "__main__":
    main()
