"""Training services under `train`, `distill`, fine-tuning and QAT: the loop (`fit`), its
state and resume, weight averaging, fine-tuning a compressed checkpoint, and data-parallel
helpers."""
