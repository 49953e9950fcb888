"""MNIST and Fashion-MNIST from the official IDX files (gzipped or raw).

Views, by data set name:
- `mnist`, `fashion-mnist`: 28 steps of 28 pixels (image rows), for the recurrent models;
- `pmnist` / `pixel-mnist`: 784 steps of 1 pixel, the ODE-RNN benchmark of the MOR paper.
Pixels are scaled to [0, 1]. `shift` N augments training batches with random translations
of up to N pixels (`random_shift`), whatever the view. Fashion-MNIST is looked up under
DATA_DIR/fashion-mnist and in Debian's `dataset-fashion-mnist` location
(/usr/share/datasets/fashion-mnist).
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfctool.data.base import Dataset, Split, find_input
from cfctool.errors import DataError
from cfctool.files import read_bounded
from cfctool.settings import Setting

if TYPE_CHECKING:  # torch and numpy load inside the functions: `cfctool --help` reads this module's settings
    import numpy as np
    import torch

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_LIMIT = 1 << 30  # bytes an IDX file may hold (MNIST's largest is 47 MB)
_FOLDER = {"mnist": "mnist", "pmnist": "mnist", "pixel-mnist": "mnist", "fashion-mnist": "fashion-mnist"}
_SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


# its settings (flags and config keys); `shift` means nothing for other data sets' rows
SETTINGS = (
    Setting(
        "shift",
        int,
        0,
        "mnist, pmnist, fashion-mnist: move each training image by a random -N..N pixels "
        "down and across (zero fill) every time it is drawn; validation and test images stay as they are "
        "(augmentation against overfitting).",
        low=0,
    ),
)
OWN_SETTINGS = {"shift": "shift moves images"}


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An IDX array (unsigned bytes), checking magic, dimensions and the data size."""
    import numpy as np

    raw = read_bounded(path, IDX_LIMIT, "IDX file", DataError)
    try:  # a gzip bomb stops at the bound: never more than IDX_LIMIT bytes are inflated
        data = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(IDX_LIMIT + 1) if path.suffix == ".gz" else raw
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is damaged or truncated") from None
    if len(data) > IDX_LIMIT:
        raise DataError(
            f"{path}: inflates to more than {IDX_LIMIT:,} bytes, far beyond MNIST's 47 MB; is it the wrong file?"
        )
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    dims = data[3]
    if dims != expected_dims:
        raise DataError(
            f"{path}: expected {expected_dims} dimensions, found {dims}; are image and label files swapped?"
        )
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(">" + "I" * dims, data[4:header])
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise DataError(
            f"{path}: truncated: the header announces {size} bytes of data, the file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _locate(data_dir, name: str, split: str) -> tuple[Path, Path]:
    folder = _FOLDER[name]
    layout = f"{folder}/{FILES[split][0]}[.gz] and {folder}/{FILES[split][1]}[.gz] (the official IDX files)"
    found = []
    for stem in FILES[split]:
        candidates = [stem + ".gz", stem]
        try:
            found.append(find_input(data_dir, folder, candidates, layout))
        except DataError:
            if folder == "fashion-mnist" and any((_SYSTEM_FASHION / c).exists() for c in candidates):
                found.append(next(_SYSTEM_FASHION / c for c in candidates if (_SYSTEM_FASHION / c).exists()))
            else:
                raise
    return found[0], found[1]


# the tensors of a split per data set (see xor.TENSORS); no dt (1 per step), no mask
_LABELS = ("y", ("N",), "int64", "the digit (MNIST) or the garment class (Fashion-MNIST), 0 ... 9")
_ROWS = (("x", ("N", 28, 28), "float32", "the image's 28 rows of 28 pixels, each in [0, 1]"), _LABELS)
_PIXELS = (("x", ("N", 784, 1), "float32", "the image's pixels in reading order, one a step, each in [0, 1]"), _LABELS)
TENSORS = {"mnist": _ROWS, "fashion-mnist": _ROWS, "pmnist": _PIXELS, "pixel-mnist": _PIXELS}
STEPS = "T = 28 rows (784 pixels for pmnist)"


def task_record(name: str) -> dict[str, Any]:
    pixel = name in ("pmnist", "pixel-mnist")
    return {
        "dataset": name,
        "input": {"kind": "features", "size": 1 if pixel else 28},
        "output": {"kind": "classification", "size": 10, "per_step": False},
        "preprocessing": {"view": "pixels (784 x 1)" if pixel else "rows (28 x 28)", "scale": "1/255"},
    }


def preview_task(cfg) -> dict[str, Any]:
    return task_record(cfg.dataset)


def load_split(task: dict[str, Any], split: str, data_dir, task_tensors=None, limit: int | None = None) -> Split:
    import numpy as np
    import torch

    if split not in FILES:
        raise DataError(f"{task['dataset']} has the splits train and test (got '{split}')")
    images_path, labels_path = _locate(data_dir, task["dataset"], split)
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = x.reshape(len(x), -1, task["input"]["size"])
    return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, side: int = 28) -> torch.Tensor:
    """Images (any view of N side x side images) moved by per-image (dy, dx) pixels, down and
    across for positive offsets, with zero fill; the view is kept."""
    import torch

    n = x.shape[0]
    most = int(max(dy.abs().max(), dx.abs().max())) if n else 0
    img = torch.nn.functional.pad(x.reshape(n, side, side), (most, most, most, most))
    span = torch.arange(side)
    rows, cols = (most - dy[:, None] + span)[:, :, None], (most - dx[:, None] + span)[:, None, :]
    return img[torch.arange(n)[:, None, None], rows, cols].reshape(x.shape)


def random_shift(batch: Split, generator: torch.Generator, most: int, side: int = 28) -> Split:
    """Each image of the batch moved by its own random (dy, dx) in -most..most (`translate`)."""
    import torch

    dy, dx = most - torch.randint(0, 2 * most + 1, (2, len(batch)), generator=generator)
    return Split(translate(batch.x, dy, dx, side), batch.y, batch.dt, batch.mask, batch.extra)


def view_converter(source: dict[str, Any], target: dict[str, Any]):
    """Rows <-> pixels of the same images (same files, same order, same scale): a reshape."""
    same = (
        _FOLDER[source["dataset"]] == _FOLDER[target["dataset"]]
        and source["preprocessing"]["scale"] == target["preprocessing"]["scale"]
    )
    size = target["input"]["size"]
    return (lambda x: x.reshape(len(x), -1, size)) if same else None


def load(cfg) -> Dataset:
    task = task_record(cfg.dataset)
    directory = cfg.resolved_data_dir()
    train = load_split(task, "train", directory, limit=cfg.max_samples)
    test = load_split(task, "test", directory)
    files = [str(p) for split in FILES for p in _locate(directory, cfg.dataset, split)]
    shift = getattr(cfg, "shift", 0)
    augment = (lambda batch, gen: random_shift(batch, gen, shift)) if shift else None
    return Dataset(task=task, splits={"train": train, "test": test}, files=files, augment=augment)
