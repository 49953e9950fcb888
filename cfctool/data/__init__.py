"""Data sets: one module per data set, each returning tensors plus the task description."""
