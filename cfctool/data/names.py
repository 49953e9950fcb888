"""Data set names, importable without torch (the CLI validates against them)."""

DATASETS = ("xor",)
