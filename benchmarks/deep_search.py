"""The CfC-Deep recipe search on IMDB: every probe's curves, finished or stopped, in one place.

The search chooses by validation accuracy and reports test accuracy once, for finished runs
only. Finished probes are read from benchmarks/results/baselines.yaml (their `epoch_log`);
stopped ones from the training state they left (`--states DIR`: NAME.st.train-state, which
`cfctool.training.state.state_summary` reads without loading tensors). The result is
benchmarks/results/deep_search.yaml, its table (`python -m benchmarks.tables`) and, with
`--plot`, validation accuracy and training loss per epoch for every probe.

    python -m benchmarks.deep_search --states runs/baselines --plot
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.baselines import RUNS, VARIANTS
from benchmarks.common import machine, panels, results_dir, save_figure, write_results

# the probes, in the order they ran, with what each one told the search (a stopped probe's verdict
# is why it was stopped; a finished one's is what it suggested next)
PROBES = {
    "imdb-cfc-deep": "the study's recipe (Adam 2e-3, 10 epochs): stuck near 70% validation",
    "imdb-cfc-deep-reference": "the reference recipe (RMSprop 5e-4, decay 0.7): training loss still 0.22 at the end, "
                               "its lr below 1e-6: underfits",
    "imdb-cfc-deep-decay85": "a slower decay alone trailed the reference run at every epoch, its training loss rising "
                             "in epoch 3: stopped",
    "imdb-cfc-deep-lr1e3": "a larger lr stayed at chance for 1.5 epochs: stopped",
    "imdb-cfc-deep-decay85-nodrop": "without dropout: 72.1% validation after 4 epochs against the reference run's 83.5% "
                                    "at a similar training loss: stopped",
    "imdb-cfc-deep-warmup": "a ramp-up to 5e-4: at chance through the ramp, then the loss jumped: stopped",
    "imdb-cfc-deep-ema": "a weight average over the slower decay: smoother, not higher",
    "imdb-cfc-deep-lr25": "half the lr, decaying slower: better; training loss still 0.17",
    "imdb-cfc-deep-lr25-3x312": "three layers of 312 at the same recurrent parameter count: fits faster, and "
                                "the best validation: chosen (`--preset deep`)",
    "imdb-cfc-deep-lr25-nodrop": "lr25 without dropout: validation 75.7% after 4 epochs against lr25's 81.2%, its "
                                 "training loss lower (0.42 against 0.44): it overfits sooner; stopped",
    "imdb-cfc-deep-lr25-decay90": "lr25 with a slower decay (0.9)",
}

# how a run was spread over threads and sittings, where its record alone does not say
HOW_IT_RAN = {
    "imdb-cfc-deep-lr25-3x312": "epochs 1-5 on 1 thread beside another probe, 6-20 resumed on 2 threads alone",
}


def collect(states: Path | None) -> dict[str, dict]:
    """name -> the probe's settings, curve and outcome (finished or stopped); probes never
    started are left out."""
    import yaml

    from cfctool.training.state import state_summary

    finished = (yaml.safe_load((results_dir() / "baselines.yaml").read_text()) or {}).get("runs", {})
    out = {}
    for name, verdict in PROBES.items():
        _, _, changed, *preset = VARIANTS.get(name) or RUNS[name]
        entry = {"preset": preset[0] if preset else "default", "changed_from_preset": changed or None,
                 "verdict": verdict}
        run = finished.get(name)
        summary = state_summary(states / f"{name}.st.train-state") if states else None
        if run:
            curve = run["epoch_log"]
            entry.update(status="finished", test_accuracy=run["test_accuracy"], best_epoch=run["best_epoch"],
                         sec_per_epoch=run["sec_per_epoch"], threads=run["threads"], device=run["device"],
                         command=run["command"])
        elif summary:
            curve = summary["epochs"]
            entry.update(status=f"stopped after epoch {summary['epochs_done']}", test_accuracy=None,
                         best_epoch=summary["best_epoch"], threads=1, device="cpu",
                         sec_per_epoch=round(summary["train_seconds"] / max(summary["epochs_done"], 1), 1))
        else:
            continue
        if name in HOW_IT_RAN:
            entry["how_it_ran"] = HOW_IT_RAN[name]
        entry["epochs"] = [{k: round(e[k], 4) if isinstance(e[k], float) else e[k]
                            for k in ("epoch", "train_loss", "val_accuracy") if k in e} for e in curve]
        vals = [e["val_accuracy"] for e in curve if e.get("val_accuracy") is not None]
        entry["best_val_accuracy"] = max(vals) if vals else None
        out[name] = entry
    return out


def plot(probes: dict[str, dict], out: Path) -> Path:
    fig, (acc, loss) = panels(2)
    for name, p in probes.items():
        epochs = p["epochs"]
        style = "-" if p["status"] == "finished" else ":"
        label = name.removeprefix("imdb-cfc-deep-") if name != "imdb-cfc-deep" else "seed recipe"
        acc.plot([e["epoch"] for e in epochs], [e.get("val_accuracy") for e in epochs], ls=style, marker=".",
                 label=label)
        loss.plot([e["epoch"] for e in epochs], [e.get("train_loss") for e in epochs], ls=style, marker=".",
                  label=label)
    acc.axhline(0.875, color="grey", lw=0.8, label="target 87.5% (test)")
    acc.set(xlabel="epoch", ylabel="validation accuracy (1,000 reviews)", ylim=(0.5, 0.9),
            title="IMDB CfC-Deep probes (dotted: stopped)")
    loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    acc.legend(fontsize=6)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=Path, default=None, help="the folder of the stopped probes' training states")
    parser.add_argument("--plot", action="store_true", help="write benchmarks/results/deep-search.png")
    args = parser.parse_args(argv)
    probes = collect(args.states)
    doc = {"benchmark": "the IMDB CfC-Deep recipe search (choose by validation, test once)", "probes": probes,
           "machine": machine()}
    print(write_results("deep_search", doc))
    if args.plot:
        print(plot(probes, results_dir() / "deep-search.png"))


if __name__ == "__main__":
    main()
