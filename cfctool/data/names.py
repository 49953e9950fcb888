"""Data set names, importable without torch (the CLI validates against them)."""

DATASETS = ("xor", "imdb", "person_activity", "mnist", "pmnist", "pixel-mnist", "fashion-mnist")
