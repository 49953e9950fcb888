"""Errors the library raises; the CLI turns each into one `error: ...` line.

Exit codes: 2 for a ConfigError (the command line or a config file asks for something
invalid: a usage error), 1 for every other CfcError.

Messages say what went wrong *and* what to do next, because users see nothing else.
"""


class CfcError(Exception):
    """Base of every expected failure of cfctool."""


class CheckpointError(CfcError):
    """A checkpoint file is missing, damaged, of another format version, or inconsistent."""


class OutputError(CheckpointError, OSError):
    """An output could not be written (nothing was left half-written); also an OSError."""


class DataError(CfcError):
    """A data set is missing or malformed."""


class ConfigError(CfcError):
    """Options, presets or config files are invalid or contradict each other (exit code 2)."""


class TrainingError(CfcError):
    """Training diverged (NaN/inf) or cannot proceed."""
