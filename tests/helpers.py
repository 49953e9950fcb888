"""Helpers shared by tests (importable because pytest puts tests/ on sys.path)."""


def tiny_run(arch: str, **overrides):
    """A seconds-long XOR training run for any architecture."""
    from cfctool.configs import resolve

    settings = {"train_size": 256, "test_size": 128, "epochs": 1, "batch_size": 64, "hidden": 8,
                "backbone_units": 8, "bits": 6, "seed": 0}
    if arch == "cfc-deep":
        settings.update(backbone_layers=2)
    settings.update(overrides)
    return resolve("xor", arch, overrides=settings)
