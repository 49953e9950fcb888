"""Our CfC loop against the reference library (ncps.torch.CfC), same weights, same threads.

Shape from the issue: batch 128, 256 steps, 192 inputs, hidden 192, ReLU backbone 64 x 1.
Forward (inference, no grad) and forward+backward are timed interleaved; medians count.

    python -m benchmarks.cfc_speed [--repeats 15] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import interleaved, machine, write_results
from cfctool.families.build import build_core


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=256)
    args = parser.parse_args(argv)
    from ncps.torch import CfC as NcpsCfC

    B, T, I, H, U = args.batch, args.steps, 192, 192, 64
    torch.manual_seed(0)
    ref = NcpsCfC(I, H, backbone_units=U, backbone_layers=1, activation="relu", return_sequences=False)
    ours = build_core(dict(name="cfc", hidden=H, mode="default", backbone_units=U, backbone_layers=1,
                           backbone_activation="relu", backbone_dropout=0.0, mixed_memory=False), I)
    ours.load_state_dict({k.replace("rnn_cell.", "cells.0."): v for k, v in ref.state_dict().items()})
    x = torch.randn(B, T, I)
    with torch.no_grad():
        diff = (ref(x)[0] - ours(x)[1]).abs().max().item()

    def fwd(model, pick):
        def run():
            with torch.no_grad():
                pick(model(x))
        return run

    def fwd_bwd(model, pick):
        def run():
            model.zero_grad(set_to_none=True)
            pick(model(x)).sum().backward()
        return run

    results = {}
    for n in args.threads:
        torch.set_num_threads(n)
        f = interleaved({"ncps": fwd(ref, lambda o: o[0]), "cfctool": fwd(ours, lambda o: o[1])}, args.repeats)
        fb = interleaved({"ncps": fwd_bwd(ref, lambda o: o[0]), "cfctool": fwd_bwd(ours, lambda o: o[1])},
                         args.repeats)
        results[f"threads_{n}"] = {
            "forward": {**f, "speedup": f["ncps"]["median_s"] / f["cfctool"]["median_s"]},
            "forward_backward": {**fb, "speedup": fb["ncps"]["median_s"] / fb["cfctool"]["median_s"]},
        }
        print(f"threads {n}: forward {results[f'threads_{n}']['forward']['speedup']:.2f}x, "
              f"forward+backward {results[f'threads_{n}']['forward_backward']['speedup']:.2f}x", file=sys.stderr)
    doc = {
        "benchmark": "CfC sequence loop, cfctool vs ncps.torch.CfC (same weights)",
        "command": "python -m benchmarks.cfc_speed " + " ".join(sys.argv[1:]),
        "shape": {"batch": B, "steps": T, "inputs": I, "hidden": H, "backbone": f"{U}x1 relu"},
        "max_abs_output_diff": diff,
        "machine": machine(),
        "device": "cpu",
        "results": results,
    }
    print(write_results("cfc_speed", doc))


if __name__ == "__main__":
    main()
