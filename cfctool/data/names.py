"""Data sets: the one list of names, each with the module that loads it (torch-free: the CLI
validates against it). A module has `load(DataConfig) -> Dataset` and
`load_split(task_record, split, data_dir, task_tensors) -> Split`, and may have
`preview_task(DataConfig)` and `view_converter(source_task, target_task)` (the data sets it
loads that are views of the same rows)."""

MODULES = {
    "xor": "cfctool.data.xor",
    "imdb": "cfctool.data.imdb",
    "person_activity": "cfctool.data.person_activity",
    "mnist": "cfctool.data.mnist",
    "pmnist": "cfctool.data.mnist",
    "pixel-mnist": "cfctool.data.mnist",
    "fashion-mnist": "cfctool.data.mnist",
}
DATASETS = tuple(MODULES)
