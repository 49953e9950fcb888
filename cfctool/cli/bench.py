"""`cfctool bench IN.st [...]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cfctool.cli import options
from cfctool.configs.commands import BenchConfig


def _print_human(report: dict) -> None:
    w = report["workload"]
    print(
        f"workload  {w['items']} items, batch {w['batch_size']}, {w['seq_len']} steps, "
        f"{'synthetic' if w['synthetic'] else 'split ' + str(report['split'])}"
        f"{' (seeded random subset)' if w.get('subset') else ''}; {report['threads']} threads, "
        f"{report['repeats']} repeats"
    )
    for label, rows in (("model", report["results"]), ("against", report.get("against", []))):
        for r in rows:
            acc = "" if r["accuracy"] is None else f"  accuracy {r['accuracy']:.4f}"
            note = f"\n{'':<8}  note: {r['engine_note']}" if r.get("engine_note") else ""
            print(
                f"{label:<8}  {r['engine']:<11} split {r['split_seconds']['median']:.3f} s "
                f"(min {r['split_seconds']['min']:.3f}, max {r['split_seconds']['max']:.3f})  "
                f"batch {r['batch_latency_ms']['median']:.2f} ms  {r['items_per_s']:.0f} items/s{acc}"
            )
            print(
                f"{'':<8}  params {r['params']}  nonzero {r['nonzero_params']}  "
                f"MACs/seq {r['macs_per_sequence']}  bytes {r.get('file_bytes', '-')}{note}"
            )
            u = r["us_per_step"]
            print(
                f"{'':<8}  batch 1: {u['median']:.2f} us per step (min {u['min']:.2f}, max {u['max']:.2f}; timed "
                f"{u['timed']})"
            )
            if r.get("c"):
                c = r["c"]
                print(
                    f"{'':<8}  C: {c['steps_per_pass']} steps a pass, one sequence at a time; flash "
                    f"{c['flash_bytes']} B  state {c['state_bytes']} B  scratch {c['scratch_bytes']} B\n"
                    f"{'':<8}  compiled: {c['compiler']}"
                )
    for q in report.get("ratios", []):
        extra = "" if "accuracy_delta" not in q else f"  accuracy delta {q['accuracy_delta']:+.4f}"
        low, high = q["speedup_interval"]
        print(
            f"ratio     {q['engine']:<11} speed-up {q['speedup']:.2f}x ({low:.2f} to {high:.2f}, "
            f"{100 * q['interval_coverage']:.0f}% interval: {q['verdict']})  file size {q.get('size_ratio', float('nan')):.3f}x"
            f" of --against's  params {q['params_ratio']:.3f}x{extra}"
        )
    print(f"peak RSS  {report['peak_rss_mb']:.0f} MB (process)")


def register(app: typer.Typer) -> None:
    def bench_command(
        checkpoint: options.Checkpoint,
        data: options.Data = None,
        output: Annotated[str | None, options.output("Also write the report as YAML.")] = None,
        config: options.Config = None,
        print_config: options.PrintConfig = False,
        as_json: options.Json = False,
        quiet: options.Quiet = False,
        **settings,
    ):
        """CPU inference time, throughput, memory and sizes; names the engine that ran; never modifies the checkpoint.

        Times whole-split inference (or --batches of a seeded subset) in --repeats interleaved passes
        and reports medians, batch latency, items/s, peak RSS, MACs per sequence and bytes. With
        --against BASE.st both models run interleaved in one process and the report gives ratios:
        on a shared machine, the only figures worth quoting. --engine all times every engine that
        runs the checkpoint.
        """
        from cfctool.cli.io import check_output, read_checkpoint
        from cfctool.cli.progress import status_lines
        from cfctool.ops.bench import bench

        cfg = options.resolved(BenchConfig, "bench", config, settings)
        if print_config:
            options.print_config("bench", cfg)
            return
        if output:
            check_output(output, sidecar=False, suffix=None, inputs=(checkpoint, cfg.against, config))
        model = read_checkpoint(checkpoint)
        base = read_checkpoint(cfg.against) if cfg.against else None
        report = bench(
            model,
            engine=cfg.engine,
            against=base,
            split=cfg.split,
            data_dir=data,
            batch_size=cfg.batch_size,
            seq_len=cfg.seq_len,
            batches=cfg.batches,
            repeats=cfg.repeats,
            warmup=cfg.warmup,
            threads=cfg.threads,
            device="cpu" if cfg.cpu else cfg.device,
            notify=status_lines(quiet),
        )
        if output:
            import yaml

            from cfctool.checkpoint import atomic_write

            atomic_write(Path(output), yaml.safe_dump(report, sort_keys=False).encode())
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            _print_human(report)

    command = options.with_parameters(bench_command, options.setting_parameters({BenchConfig: "Timing settings"}))
    epilog = options.example("cfctool bench small.st --against model.st --threads 1 -o small.bench.yaml")
    app.command("bench", epilog=epilog)(command)
