"""Your own data's recorded preprocessing applied to arrays: what `own` (in memory) and
`stream` (a batch at a time) both hand the model, computed in one place.

x is (N, T, F) float32 with NaN where a value is missing (or (N, T, 1) token ids), dt and
mask (N, T), y the targets as the file holds them (labels, numbers; per sequence or per step).
"""

from __future__ import annotations

from cfctool.data import tables
from cfctool.data.base import Split
from cfctool.errors import DataError


def split(task: dict, tensors: dict, x, dt, mask, y, where: str) -> Split:
    """The tensors a model reads, preprocessed with the recorded training statistics."""
    import numpy as np
    import torch

    p = task["preprocessing"]
    if task["input"]["kind"] == "tokens":
        x_tokens = x[..., 0]
        outside = (x_tokens >= task["input"]["vocab_size"]) & mask
        if outside.any():
            i, j = (int(v[0]) for v in np.nonzero(outside))
            raise DataError(
                f"{where}: token id {int(x_tokens[i, j])} at sequence {i}, step {j} is outside the model's "
                f"vocabulary (0 .. {task['input']['vocab_size'] - 1})"
            )
        return Split(
            torch.from_numpy(x_tokens.copy()),
            targets(task, y, mask, where),
            torch.from_numpy(dt),
            torch.from_numpy(mask),
        )
    mean, std = tensors["x_mean"].numpy(), tensors["x_std"].numpy()
    observed = ~np.isnan(x) & mask[..., None]
    x = np.nan_to_num(x.astype(np.float32), nan=0.0)  # one copy, then in place (these are the largest arrays)
    x -= mean
    x /= std
    x[~observed] = 0.0
    if p.get("forecast"):  # read the steps up to T-1, predict each one's next step
        step = mask[:, :-1] & mask[:, 1:]
        return Split(
            torch.from_numpy(x[:, :-1].copy()),
            torch.from_numpy(x[:, 1:].copy()),
            torch.from_numpy(np.ascontiguousarray(dt[:, :-1])),
            torch.from_numpy(step),
        )
    if p.get("missing") == "indicator":  # one 0/1 input per feature: observed at this step
        x = np.concatenate([x, observed.astype(np.float32)], -1)
    return Split(torch.from_numpy(x), targets(task, y, mask, where), torch.from_numpy(dt), torch.from_numpy(mask))


def targets(task: dict, y, mask, where: str):
    """The targets a model is trained on: class indices, or standardised numbers shaped as the
    model's outputs."""
    import numpy as np
    import torch

    p = task["preprocessing"]
    if task["output"]["kind"] == "classification":
        index = {c: i for i, c in enumerate(p["classes"])}
        labels = [tables.label_text(v) for v in y.reshape(-1).tolist()]
        valid = mask.reshape(-1).tolist() if y.ndim == 2 else [True] * len(labels)
        unseen = next((v for v, ok in zip(labels, valid) if ok and v not in index), None)
        if unseen is not None:
            raise DataError(
                f"{where}: label {unseen!r} was not among the training labels ({', '.join(p['classes'][:10])})"
            )
        return torch.tensor([index.get(v, 0) for v in labels], dtype=torch.int64).reshape(y.shape)
    # (N, 1) per sequence, (N, T, 1) per step, (N, T, K): as the model's outputs are shaped
    target = torch.from_numpy(
        ((y.astype(np.float64) - np.asarray(p["y_mean"])) / np.asarray(p["y_std"])).astype(np.float32)
    )
    return target if y.ndim == 3 else target.unsqueeze(-1)
