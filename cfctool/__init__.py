"""cfctool: train and compress Closed-form Continuous-time networks.

The public Python API is imported lazily so that `import cfctool` (and `cfctool --help`)
stays fast and does not pull in torch until a function is actually used.
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
    "quantize": ("cfctool.ops.quantize", "quantize"),
    "prune": ("cfctool.ops.prune", "prune"),
    "distill": ("cfctool.ops.distill", "distill"),
    "reduce": ("cfctool.ops.reduce", "reduce"),
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

__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cfctool' has no attribute {name!r}")
