"""A study's `cfctool report` as a results file: benchmarks/results/NAME.yaml holds the rows
of `cfctool report CKPT...` (the same fields as `report -o NAME.yaml`) stamped with the
machine, the commit and the cfctool version, for the README's tables.

    python -m benchmarks.study_report quickstart quickstart/teacher.st quickstart/pruned.st ...
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from benchmarks.common import machine, write_results
from cfctool.ops.report import report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the results file's name (quickstart, pipeline-imdb, prune-acceptance, ...)")
    parser.add_argument("checkpoints", nargs="+", help="checkpoints or folders, as `cfctool report` takes them")
    parser.add_argument("--note", default="nothing else", help="what else ran on the machine meanwhile")
    parser.add_argument("--threads", type=int, default=1, help="the threads the bench steps ran on")
    parser.add_argument("--timing", default="", help="what was timed (the bench steps' workload and repeats)")
    args = parser.parse_args(argv)
    rows = report(args.checkpoints)
    print(write_results(args.name, {"checkpoints": [asdict(r) for r in rows],
                                    "command": f"python -m benchmarks.study_report {' '.join(argv or sys.argv[1:])}",
                                    "what_else_ran": args.note, "threads": args.threads, "timing": args.timing,
                                    "machine": machine()}))


if __name__ == "__main__":
    main()
