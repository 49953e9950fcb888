"""Test sequences of a checkpoint's task as text, for edge.c: one sequence per line, per step
the input values (a token id for token tasks), then dt when the exported model reads it
(its header says: NAME_DT_INPUT). Only a sequence's valid steps are written.

    python examples/edge/sequences.py model.st DIR/model.h 16 > DIR/sequences.txt
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from cfctool import checkpoint
from cfctool.data.registry import load_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("header", help="the exported NAME.h (says whether the model reads dt)")
    parser.add_argument("count", type=int, help="how many test sequences (the first ones)")
    parser.add_argument("--data", default=os.environ.get("CFCTOOL_DATA"))
    args = parser.parse_args(argv)
    ckpt = checkpoint.load(args.checkpoint)
    reads_dt = re.search(r"#define \w+_DT_INPUT 1\b", Path(args.header).read_text()) is not None
    split = load_split(ckpt.task, "test", Path(args.data) if args.data else None, ckpt.task_tensors())
    batch = split.take(slice(0, args.count))
    for i in range(len(batch.x)):
        steps = range(batch.x.shape[1]) if batch.mask is None else batch.mask[i].nonzero().flatten().tolist()
        values = []
        for t in steps:
            x = batch.x[i, t]
            values += [str(int(x))] if x.dim() == 0 else [f"{float(v):.9g}" for v in x]
            if reads_dt:
                values.append(f"{float(batch.dt[i, t]) if batch.dt is not None else 1.0:.9g}")
        print(" ".join(values))


if __name__ == "__main__":
    main()
