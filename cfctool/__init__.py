"""cfctool: train and compress Closed-form Continuous-time networks.

The public Python API is imported lazily so that `import cfctool` (and `cfctool --help`)
stays fast and does not pull in torch until a function is actually used. The compression
methods (`cfctool.quantize`, `cfctool.prune`, `cfctool.reduce`, ...) come from their
registry, `cfctool.ops.methods.METHODS`.
"""

__version__ = "0.1.0"

_API = {
    "load": ("cfctool.checkpoint", "load"),
    "save": ("cfctool.checkpoint", "save"),
    "Checkpoint": ("cfctool.checkpoint", "Checkpoint"),
    "train": ("cfctool.ops.train", "train"),
    "fit": ("cfctool.training.fit", "fit"),
    "MaskConstraint": ("cfctool.training.fit", "MaskConstraint"),
    "evaluate": ("cfctool.ops.evaluate", "evaluate"),
    "distill": ("cfctool.ops.distill", "distill"),
    "describe": ("cfctool.ops.info", "describe"),
    "resolve_config": ("cfctool.configs", "resolve"),
    "build_model": ("cfctool.families.build", "build_model"),
    "model_from_checkpoint": ("cfctool.families.build", "model_from_checkpoint"),
    "CfcError": ("cfctool.errors", "CfcError"),
    "CheckpointError": ("cfctool.errors", "CheckpointError"),
    "DataError": ("cfctool.errors", "DataError"),
    "ConfigError": ("cfctool.errors", "ConfigError"),
    "TrainingError": ("cfctool.errors", "TrainingError"),
}


def _methods() -> dict:
    """The compression methods (quantize, prune, reduce, ...): each is `cfctool.NAME`."""
    import importlib

    return importlib.import_module("cfctool.ops.methods").METHODS


def __getattr__(name):
    import importlib

    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    if name == "__all__":
        return ["__version__", *_API, *_methods()]
    if not name.startswith("_") and name in _methods():
        return _methods()[name].op
    raise AttributeError(f"module 'cfctool' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_API, *_methods()})
