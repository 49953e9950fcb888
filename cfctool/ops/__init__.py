"""The library behind each command: plain functions that take and return Checkpoints or reports."""
