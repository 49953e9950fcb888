"""Data sets: the one list of names, each with the module that loads it. A module is
torch-free to import (the CLI builds its flags from it) and has `SETTINGS` (its own
settings, as families declare theirs), `load(DataConfig) -> Dataset` and
`load_split(task_record, split, data_dir, task_tensors) -> Split`; it may have
`validate(settings)` (checks across its settings), `OWN_SETTINGS` ({setting: why}: settings
that other data sets must not be given), `preview_task(DataConfig)`, `INPUT_KIND` and
`view_converter(source_task, target_task)` (the data sets it loads that are views of the
same rows)."""

MODULES = {
    "xor": "cfctool.data.xor",
    "imdb": "cfctool.data.imdb",
    "person_activity": "cfctool.data.person_activity",
    "mnist": "cfctool.data.mnist",
    "pmnist": "cfctool.data.mnist",
    "pixel-mnist": "cfctool.data.mnist",
    "fashion-mnist": "cfctool.data.mnist",
    "own": "cfctool.data.own",  # your own data: arrays (.npz, .safetensors) or long tables (.csv, .parquet)
}
DATASETS = tuple(MODULES)
