"""Weight averaging for training: the kept weights can be a moving average of the iterates."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging). Adam's iterates
    rattle around a minimum at a distance set by the learning rate; their average sits
    nearer it, which is what a long recurrence (a 784-step ODE-RNN) needs to leave a plateau
    without lowering the lr. The decay ramps up as min(decay, (1 + n) / (10 + n)) so the
    first steps do not leave the average stuck at the starting weights."""

    def __init__(self, model: nn.Module, decay: float, updates: int = 0, shadow: dict[str, torch.Tensor] | None = None):
        self.decay, self.updates = decay, updates
        current = model.state_dict()
        if shadow is None:
            shadow = {k: v for k, v in current.items() if v.is_floating_point()}
        self.shadow = {k: v.detach().to(current[k].device, copy=True) for k, v in shadow.items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for k, avg in self.shadow.items():
            avg.lerp_(current[k].to(avg.dtype), 1.0 - keep)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """The model holds the averaged weights inside the block, its own ones again after."""
        current = model.state_dict()  # shares storage with the parameters: copy_ writes them
        backup = {k: current[k].clone() for k in self.shadow}
        with torch.no_grad():
            for k, avg in self.shadow.items():
                current[k].copy_(avg)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, saved in backup.items():
                    current[k].copy_(saved)
