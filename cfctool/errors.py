"""Errors the library raises; the CLI turns each into one `error: ...` line and exit code 1.

Messages say what went wrong *and* what to do next, because users see nothing else.
"""


class CfcError(Exception):
    """Base of every expected failure of cfctool."""


class CheckpointError(CfcError):
    """A checkpoint file is missing, damaged, of another format version, or inconsistent."""


class DataError(CfcError):
    """A data set is missing or malformed."""


class ConfigError(CfcError):
    """Options, presets or config files are invalid or contradict each other."""


class TrainingError(CfcError):
    """Training diverged (NaN/inf) or cannot proceed."""
