"""Why the pixel-MNIST ODE-RNN trains slowly: measurements on a checkpoint.

- saturation: the share of tanh units with |tanh(A x + b)| > 0.99 (gradient < 0.02) and the
  state's size along the 784 steps; a saturated unit passes (almost) no gradient back;
- spectrum: A's eigenvalues and how many Euler modes grow (|1 + dt lambda| > 1);
- sensitivity: the loss increase when every element of one tensor moves by +-eps (random
  signs): Adam moves every element by about lr a step, so this says which tensor's noise costs;
- fit: accuracy and loss on seeded samples of the training and validation splits (a gap
  means more training buys less validation accuracy);
- shifts: validation accuracy of images moved by one pixel (augmentation headroom).

    python -m benchmarks.ode_rnn_diagnosis benchmarks/checkpoints/pmnist-ode-rnn-ema.st --data ../shared/data

Results go to benchmarks/results/ode-rnn-diagnosis.yaml under the checkpoint's name.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from benchmarks.common import machine, merge_result


def saturation(model, x: torch.Tensor, steps: list[int]) -> dict:
    trace: dict = {}
    with torch.no_grad():
        model.rnn(x, trace=trace)
    states = torch.stack(trace["cells.0.state"], 1)
    f = torch.stack(trace["cells.0.nonlinearity"], 1)
    return {t: {"saturated_share": round(float((f[:, t - 1].abs() > 0.99).float().mean()), 3),
                "mean_abs_state": round(float(states[:, t - 1].abs().mean()), 3),
                "max_abs_state": round(float(states[:, t - 1].abs().max()), 2)} for t in steps}


def spectrum(model) -> dict:
    lam = torch.linalg.eigvals(model.rnn.matrix().detach().double())
    growth = (1 + model.rnn.dt * lam).abs()
    return {"max_abs_imag": round(float(lam.imag.abs().max()), 3), "real_range": [round(float(lam.real.min()), 4),
            round(float(lam.real.max()), 4)], "euler_growing_modes": int((growth > 1).sum()),
            "max_euler_growth": round(float(growth.max()), 4)}


def sensitivity(model, x, y, eps: float, draws: int) -> dict:
    def loss() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(x), y))

    base, out = loss(), {}
    generator = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        keep = p.detach().clone()
        rises = []
        for _ in range(draws):
            with torch.no_grad():
                signs = torch.randint(0, 2, p.shape, generator=generator).to(p.dtype) * 2 - 1
                p.add_(eps * signs)
            rises.append(loss() - base)
            with torch.no_grad():
                p.copy_(keep)
        out[name] = {"elements": p.numel(), "loss_rise_median": round(sorted(rises)[len(rises) // 2], 4)}
    return {"eps": eps, "base_loss": round(base, 4), "tensors": out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA", "../shared/data"))
    parser.add_argument("--samples", type=int, default=3000, help="rows of each split for the fit and shift checks")
    parser.add_argument("--probe", type=int, default=512, help="training rows for saturation and sensitivity")
    parser.add_argument("--eps", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from cfctool import checkpoint
    from cfctool.configs import resolve
    from cfctool.data.base import Split
    from cfctool.data.mnist import translate
    from cfctool.data.registry import load_dataset
    from cfctool.engines import fastest
    from cfctool.families.build import model_from_checkpoint
    from cfctool.metrics import split_metrics

    ckpt = checkpoint.load(args.checkpoint)
    if ckpt.arch["name"] != "ode-rnn":
        raise SystemExit(f"{args.checkpoint} is a {ckpt.arch['name']}: this diagnosis reads an ode-rnn")
    model = model_from_checkpoint(ckpt).eval()
    data = load_dataset(resolve("pmnist", "ode-rnn", overrides={"data_dir": args.data}).data, seed=0)
    engine = fastest(model).module
    probe = data.splits["train"].sample(args.probe, seed=1)
    fit = {name: {k: round(v, 4) for k, v in split_metrics(engine, data.splits[name].sample(args.samples, 0),
                                                             data.task, 500).items() if k != "samples"}
           for name in ("train", "val")}
    val = data.splits["val"].sample(args.samples, 0)
    shifts = {}
    for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        moved = translate(val.x, torch.full((len(val),), dy), torch.full((len(val),), dx))
        shifts[f"{dy},{dx}"] = round(split_metrics(engine, Split(moved, val.y), data.task, 500)["accuracy"], 4)
    entry = {
        "command": "python -m benchmarks.ode_rnn_diagnosis " + " ".join(sys.argv[1:]),
        "checkpoint_test_accuracy": ckpt.record["metrics"].get("accuracy"),
        "saturation_by_step": saturation(model, probe.x, [50, 100, 200, 300, 500, 784]),
        "spectrum": spectrum(model),
        "sensitivity": sensitivity(model, probe.x, probe.y, args.eps, draws=3),
        "fit": {**fit, "samples": args.samples, "gap_points": round(100 * (fit["train"]["accuracy"]
                                                                           - fit["val"]["accuracy"]), 2)},
        "val_accuracy_moved_by_dy_dx": shifts,
        "threads": args.threads, "machine": machine(),
    }
    print(merge_result("ode-rnn-diagnosis", "checkpoints", Path(args.checkpoint).stem, entry,
                       {"benchmark": "pixel-MNIST ODE-RNN: saturation, spectrum, sensitivity, fit, shifts"}))


if __name__ == "__main__":
    main()
