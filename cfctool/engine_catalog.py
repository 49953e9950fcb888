"""The engines by name, one line each: the vocabulary of `--engine` and its help text.

Torch-free, so `--help` is built without loading torch; `engines.ENGINES` (the registry that
runs them) is held to it by a test, in both directions."""

from __future__ import annotations

# in the registry's order of the automatic choice; "onnxruntime" times an exported graph (bench)
ENGINES = {
    "folded-int8": "int8 products on the stored integers, int32 sums, for quantized checkpoints",
    "folded": "the step on folded weights in PyTorch",
    "loop": "the training loop, plain PyTorch eager: any model, encodings decoded",
    "c": "generated C99 compiled with the system compiler, one sequence at a time, fp32 or the int8 step of a "
    "quantized checkpoint",
    "onnxruntime": "the exported graph on ONNX Runtime, bench only, with the onnx extra",
}
# the engines a checkpoint runs on in-process (eval); onnxruntime needs an export first
RUNNABLE = tuple(name for name in ENGINES if name != "onnxruntime")


def listing(names: tuple[str, ...] | None = None) -> str:
    """'name: what it is; ...' for the help of an --engine option."""
    return "; ".join(f"{name}: {ENGINES[name]}" for name in (names or tuple(ENGINES)))
