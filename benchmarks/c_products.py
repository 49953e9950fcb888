"""Where a sparse product beats a dense one in the generated C: the IMDB CfC step's three
product shapes (state 64x192, backbone 64x64, heads 576x64) at a range of densities, each
emitted by the C engine's own writer dense and sparse, fp32 and int8, compiled with the C
engine's flags (and, on a CPU with AVX-512 VNNI, again without it: the portable integer
rows), timed in C in interleaved passes (medians and their spread).

    python -m benchmarks.c_products --repeats 7

Results: benchmarks/results/c-products.yaml; the crossovers are what `c_products.SPARSE_BELOW`
is set from.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import merge_result

HEADER = {"benchmark": "dense against sparse weight products in the generated C (IMDB CfC step shapes)"}
SHAPES = ((64, 192), (64, 64), (576, 64))  # (outputs, inputs)
DENSITIES = (0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.10, 0.12, 0.16, 0.25)


def _library(folder: Path, tag: str, integer: bool, sparse: str, density: float, flags: tuple[str, ...]):
    """The three products at `density`, written by the engine's writer, as run(x, out, reps)."""
    import torch

    from cfctool.engines.c_source import assemble
    from cfctool.engines.c_writer import Writer
    from cfctool.engines.native import FLAGS

    g = torch.Generator().manual_seed(0)
    w = Writer("t", 16 if integer else 1, sparse)
    calls = []
    for k, (m, n) in enumerate(SHAPES):
        keep = torch.rand(m, n, generator=g) < density
        if integer:
            q = torch.randint(-127, 128, (m, n), generator=g, dtype=torch.int8) * keep
            calls.append(w.dot_u8(f"p{k}", q, "product", "x", "acc"))
        else:
            calls.append(w.matvec(f"p{k}", (torch.randn(m, n, generator=g) * keep).t().contiguous(), "product", "x",
                                  "out"))
    args = "const uint8_t *x, int32_t *acc, int reps" if integer else "const float *x, float *out, int reps"
    code = f"void run({args});\nvoid run({args})\n{{\n    int r;\n    for (r = 0; r < reps; ++r) {{\n        " + \
        "\n        ".join(calls) + "\n    }\n}\n"
    (folder / "t.h").write_text("")
    (folder / f"{tag}.c").write_text(assemble("t", w, code))
    lib = folder / f"{tag}.so"
    subprocess.run(["cc", *FLAGS, *flags, "-shared", "-o", str(lib), str(folder / f"{tag}.c")], check=True,
                   capture_output=True, text=True)
    return ctypes.CDLL(str(lib)).run, sum(p.nonzeros for p in w.products)


def _time(run, integer: bool, reps: int) -> float:
    """Microseconds for the three products once (one call of `reps` repetitions)."""
    x = (ctypes.c_uint8 * 576)(*([37] * 576)) if integer else (ctypes.c_float * 576)(*([0.5] * 576))
    out = (ctypes.c_int32 * 576)() if integer else (ctypes.c_float * 576)()
    start = time.perf_counter()
    run(x, out, reps)
    return 1e6 * (time.perf_counter() - start) / reps


def main(argv: list[str] | None = None) -> None:
    from cfctool.runtime import machine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved passes (medians are reported)")
    parser.add_argument("--reps", type=int, default=20000, help="product calls per timed pass")
    parser.add_argument("--densities", default=",".join(map(str, DENSITIES)),
                        help="comma-separated fractions of non-zeros")
    parser.add_argument("--kinds", default="fp32,int8,int8 portable rows",
                        help="comma-separated: fp32, int8 (as the C engine compiles it), int8 portable rows "
                             "(without VNNI, where the CPU has it)")
    parser.add_argument("--note", default="nothing else", help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    vnni = "avx512_vnni" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    kinds = {"fp32": (False, ()), "int8": (True, ())}
    if vnni:
        kinds["int8 portable rows"] = (True, ("-mno-avx512vnni",))
    kinds = {k: v for k, v in kinds.items() if k in args.kinds.split(",")}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind, (integer, flags) in kinds.items():
            for density in (float(d) for d in args.densities.split(",")):
                # one file per library: dlopen of a path already loaded returns the loaded one
                libs = {form: _library(folder, f"{kind}-{form}-{density}".replace(" ", "-"), integer,
                                       "never" if form == "dense" else "always", density, flags)
                        for form in ("dense", "sparse")}
                times = {form: [] for form in libs}
                for _ in range(args.repeats):
                    for form, (run, _) in libs.items():
                        times[form].append(_time(run, integer, args.reps))
                rows.setdefault(kind, []).append({
                    "density": density, "nonzeros": libs["sparse"][1],
                    **{f"{form}_us": {"median": round(statistics.median(v), 4), "min": round(min(v), 4),
                                      "max": round(max(v), 4)} for form, v in times.items()},
                    "sparse_faster": statistics.median(times["sparse"]) < statistics.median(times["dense"])})
    entry = {"shapes": [list(s) for s in SHAPES], "kinds": rows, "repeats": args.repeats, "reps": args.reps,
             "crossover": {kind: max([r["density"] for r in rs if r["sparse_faster"]], default=None)
                           for kind, rs in rows.items()},
             "vnni": vnni, "threads": 1, "machine": machine(), "what_else_ran": args.note,
             "command": f"python -m benchmarks.c_products {' '.join(sys.argv[1:])}"}
    print(merge_result("c-products", "runs", "imdb-cfc-step", entry, HEADER))


if __name__ == "__main__":
    main()
