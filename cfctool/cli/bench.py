"""`cfctool bench IN.st [...]` and `cfctool export IN.st -o model.onnx`."""

from __future__ import annotations

import json
from typing import Optional

import typer
from typing_extensions import Annotated


def _print_human(report: dict) -> None:
    w = report["workload"]
    print(f"workload  {w['items']} items, batch {w['batch_size']}, {w['seq_len']} steps, "
          f"{'synthetic' if w['synthetic'] else 'split ' + str(report['split'])}; {report['threads']} threads, "
          f"{report['repeats']} repeats")
    for label, rows in (("model", report["results"]), ("against", report.get("against", []))):
        for r in rows:
            acc = "" if r["accuracy"] is None else f"  accuracy {r['accuracy']:.4f}"
            print(f"{label:<8}  {r['engine']:<11} split {r['split_seconds']['median']:.3f} s "
                  f"(min {r['split_seconds']['min']:.3f}, max {r['split_seconds']['max']:.3f})  "
                  f"batch {r['batch_latency_ms']['median']:.2f} ms  {r['items_per_s']:.0f} items/s{acc}")
            print(f"{'':<8}  params {r['params']}  nonzero {r['nonzero_params']}  "
                  f"MACs/seq {r['macs_per_sequence']}  bytes {r.get('file_bytes', '-')}")
    for q in report.get("ratios", []):
        extra = "" if "accuracy_delta" not in q else f"  accuracy delta {q['accuracy_delta']:+.4f}"
        print(f"ratio     {q['engine']:<11} speed-up {q['speedup']:.2f}x  size {q.get('size_ratio', float('nan')):.3f}x"
              f"  params {q['params_ratio']:.3f}x{extra}")
    print(f"peak RSS  {report['peak_rss_mb']:.0f} MB (process)")


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_command(
        checkpoint: Annotated[str, typer.Argument(help="Checkpoint (.st), or '-' for stdin.")],
        cpu: Annotated[bool, typer.Option("--cpu", help="Pin the CPU even where a GPU exists (the default).")] = False,
        device: Annotated[str, typer.Option(help="cpu or cuda (torch engine); --cpu overrides.")] = "cpu",
        engine: Annotated[str, typer.Option(help="torch, onnxruntime or all.")] = "torch",
        against: Annotated[Optional[str], typer.Option(help="A base checkpoint, interleaved in the same run; reports ratios.")] = None,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads.")] = None,
        batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
        seq_len: Annotated[Optional[int], typer.Option(help="Time synthetic inputs of this length instead of the split.")] = None,
        batches: Annotated[Optional[int], typer.Option(help="Use only the first N batches.")] = None,
        repeats: Annotated[int, typer.Option(help="Timed passes over the workload (medians are reported).")] = 5,
        warmup: Annotated[int, typer.Option(help="Untimed warm-up batches per model.")] = 1,
        split: Annotated[str, typer.Option(help="Split to time: test or train.")] = "test",
        data: Annotated[Optional[str], typer.Option("--data", help="Data directory (default: $CFCTOOL_DATA).")] = None,
        output: Annotated[Optional[str], typer.Option("--output", "-o", help="Also write the report as YAML.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ):
        """CPU inference time, throughput, memory and sizes; never modifies the checkpoint."""
        from cfctool.cli.io import read_checkpoint
        from cfctool.errors import ConfigError
        from cfctool.ops.bench import bench

        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be >= 1 (got {threads})")
        model = read_checkpoint(checkpoint)
        base = read_checkpoint(against) if against else None
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"--device must be cpu or cuda (got '{device}')")
        report = bench(model, engine=engine, against=base, split=split, data_dir=data, batch_size=batch_size,
                       seq_len=seq_len, batches=batches, repeats=repeats, warmup=warmup, threads=threads,
                       device="cpu" if cpu else device)
        if output:
            import yaml

            from cfctool.checkpoint import atomic_write
            from pathlib import Path

            atomic_write(Path(output), yaml.safe_dump(report, sort_keys=False).encode())
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            _print_human(report)

    @app.command("export")
    def export_command(
        checkpoint: Annotated[str, typer.Argument(help="Checkpoint (.st), or '-' for stdin.")],
        output: Annotated[str, typer.Option("--output", "-o", help="ONNX file to write.")],
        seq_len: Annotated[Optional[int], typer.Option(help="Length of the verification inputs and of an unrolled graph (default: the task's).")] = None,
        data: Annotated[Optional[str], typer.Option("--data", help="Data directory, for verification inputs.")] = None,
    ):
        """Export to ONNX (a Scan graph for any length, or a loop unrolled at one length), verified against PyTorch."""
        from cfctool.cli.io import read_checkpoint
        from cfctool.errors import ConfigError
        from cfctool.ops.bench import workload
        from cfctool.ops.export import export_onnx, require_onnx

        if not output.endswith(".onnx"):
            raise ConfigError(f"output {output} must end in .onnx")
        require_onnx()
        ckpt = read_checkpoint(checkpoint)
        batches, _, _ = workload(ckpt, "test", data, 64, seq_len, 1)
        info = export_onnx(ckpt, output, batches[0])
        import sys

        print(f"max abs diff vs PyTorch {info['max_abs_diff']:.3g} (allowed {info['allowed_diff']:.3g}), "
              f"{info['argmax_mismatches']} changed predictions, on {info['verified_on']} sequences "
              f"of {'/'.join(map(str, info['verified_seq_lens']))} steps ({info['graph']} graph, inputs "
              f"{', '.join(info['inputs'])})", file=sys.stderr)
        print(output)
