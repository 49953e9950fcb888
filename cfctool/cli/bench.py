"""`cfctool bench IN.st [...]`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cfctool import engine_catalog as catalog
from cfctool.cli import options


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
    @app.command(
        "bench", epilog=options.example("cfctool bench small.st --against model.st --threads 1 -o small.bench.yaml")
    )
    def bench_command(
        checkpoint: options.Checkpoint,
        cpu: Annotated[bool, typer.Option("--cpu", help="Pin the CPU even where a GPU exists (the default).")] = False,
        device: Annotated[str, typer.Option(help="cpu or cuda (torch engine); --cpu overrides.")] = "cpu",
        engine: Annotated[
            str,
            typer.Option(
                help="auto (the fastest exact engine for the checkpoint, the one eval runs; "
                "'torch' is an older name of it), all (auto, loop and onnxruntime), "
                "or an engine by name: " + catalog.listing() + "."
            ),
        ] = "auto",
        against: Annotated[
            str | None, typer.Option(help="A base checkpoint, interleaved in the same run; reports ratios.")
        ] = None,
        threads: options.Threads = None,
        batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
        seq_len: Annotated[
            int | None, typer.Option(help="Time synthetic inputs of this length instead of the split.")
        ] = None,
        batches: Annotated[
            int | None, typer.Option(help="Time N batches of a seeded random subset of the split.")
        ] = None,
        repeats: Annotated[int, typer.Option(help="Timed passes over the workload (medians are reported).")] = 5,
        warmup: Annotated[int, typer.Option(help="Untimed warm-up batches per model.")] = 1,
        split: Annotated[str, typer.Option(help="Split to time: test or train.")] = "test",
        data: options.Data = None,
        output: Annotated[str | None, options.output("Also write the report as YAML.")] = None,
        as_json: options.Json = False,
        quiet: options.Quiet = False,
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

        if output:
            check_output(output, sidecar=False, suffix=None, inputs=(checkpoint, against))
        model = read_checkpoint(checkpoint)
        base = read_checkpoint(against) if against else None
        report = bench(
            model,
            engine=engine,
            against=base,
            split=split,
            data_dir=data,
            batch_size=batch_size,
            seq_len=seq_len,
            batches=batches,
            repeats=repeats,
            warmup=warmup,
            threads=threads,
            device="cpu" if cpu else device,
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
