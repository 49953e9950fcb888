"""Render the README's result tables from benchmarks/results/*.yaml (between marker comments).

    python benchmarks/tables.py          # rewrites README.md in place
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str):
    path = RESULTS / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


def cfc_speed() -> str:
    doc = _load("cfc_speed")
    if not doc:
        return "_not measured yet: run `python benchmarks/cfc_speed.py`_"
    rows = ["| threads | forward (inference) | forward + backward | max abs output diff |", "|---|---|---|---|"]
    for key, r in doc["results"].items():
        rows.append(f"| {key.split('_')[1]} | {r['forward']['speedup']:.2f}× | {r['forward_backward']['speedup']:.2f}× "
                    f"| {doc['max_abs_output_diff']:.1e} |")
    return "\n".join(rows) + f"\n\nMeasured {doc['machine']['utc']} on {doc['machine']['cpu']}, torch {doc['machine']['torch']}."


def baselines() -> str:
    doc = _load("baselines")
    if not doc:
        return "_not measured yet: run `python benchmarks/baselines.py`_"
    rows = ["| benchmark | network | test accuracy (ours) | seed accuracy | epochs | s/epoch (ours, CPU) | "
            "s/epoch (seed, GPU) | RNN params (ours / seed) | total params | file bytes |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in doc["runs"].items():
        if name == "ltc-vs-cfc":
            continue
        seed = r["seed_reference"]
        caveat = " (full data; ours: subset)" if seed.get("note") else ""
        rows.append(f"| {r['dataset']} | {r['arch']} | {100 * r['test_accuracy']:.1f}% | {100 * seed['accuracy']:.1f}%{caveat} "
                    f"| {r['epochs']} | {r['sec_per_epoch']} ({r['threads']} thread{'s' if r['threads'] != 1 else ''}) "
                    f"| {seed['sec_per_epoch_gpu']} | {r['rnn_params']:,} / {seed['rnn_params']:,} "
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
        return "_not measured yet: run `python benchmarks/engines.py`_"
    rows = ["| checkpoint | threads | items | cfctool torch | cfctool ONNX Runtime | ncps | best vs ncps | "
            "ORT = torch predictions | LTC / CfC per sequence |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in doc["results"].items():
        if "onnx_export_failed" in r:
            rows.append(f"| {name} | | {r['items']} | | export failed: {r['onnx_export_failed'][:60]} | | | | |")
            continue
        for run in r["runs"]:
            e = run["engines"]
            best = max(v["speedup_vs_ncps"] for v in e.values())
            ltc = f"{r['ltc_vs_cfc']['ltc_over_cfc']:.0f}×" if run is r["runs"][0] else ""
            rows.append(f"| {name} | {run['threads']} | {r['items']} | {e['cfctool-torch']['median_s']:.2f} s "
                        f"| {e['cfctool-onnxruntime']['median_s']:.2f} s | {e['ncps']['median_s']:.2f} s "
                        f"| {best:.2f}× | {'yes' if run['onnx_vs_torch_identical_predictions'] else 'NO'} | {ltc} |")
    return "\n".join(rows) + f"\n\nMedians of interleaved repeats (count per entry in engines.yaml); {doc['machine']['cpu']}."


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, render in (("cfc_speed", cfc_speed), ("baselines", baselines), ("engines", engines)):
        pattern = re.compile(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- table:{name} --> markers")
        text = pattern.sub(lambda m: m.group(1) + render() + "\n" + m.group(2), text)
    readme.write_text(text)
    print(readme)


if __name__ == "__main__":
    main()
