"""The engines by name, one line each: the vocabulary of `--engine` and its help text.

Torch-free, so `--help` is built without loading torch; `engines.ENGINES` (the registry that
runs them) is held to it by a test, in both directions (names, order and `in_process`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Listed:
    help: str
    in_process: bool = True  # runs inside cfctool (eval); else an exported graph that bench times


# in the registry's order of the automatic choice
ENGINES = {
    "folded-int8": Listed("int8 products on the stored integers, int32 sums, for quantized checkpoints"),
    "folded": Listed("the step on folded weights in PyTorch"),
    "loop": Listed("the training loop, plain PyTorch eager: any model, encodings decoded"),
    "c": Listed(
        "generated C99 compiled with the system compiler, one sequence at a time, fp32 or the int8 step of a "
        "quantized checkpoint"
    ),
    "onnxruntime": Listed("the exported graph on ONNX Runtime, bench only, with the onnx extra", in_process=False),
}
# the engines a checkpoint runs on in-process (eval)
RUNNABLE = tuple(name for name, listed in ENGINES.items() if listed.in_process)


def listing(names: tuple[str, ...] | None = None) -> str:
    """'name: what it is; ...' for the help of an --engine option."""
    return "; ".join(f"{name}: {ENGINES[name].help}" for name in (names or tuple(ENGINES)))
