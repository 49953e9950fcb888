"""Liquid Time-Constant network (Hasani et al. 2021): the ODE-solved baseline CfC replaces.

Each step integrates the LTC ODE with a fused semi-implicit Euler solver, `ode_unfolds`
sub-steps per input step, as in the reference implementation (ncps ``LTCCell``). It is
deliberately the slow path: the CfC paper's speed claims are measured against it.
Conductances and capacitances stay positive through a softplus at run time (the
reference's default "implicit" constraints), so training needs no clipping step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cfctool.models.wiring import fully_connected_polarity

INIT_RANGES = {
    "gleak": (0.001, 1.0),
    "vleak": (-0.2, 0.2),
    "cm": (0.4, 0.6),
    "w": (0.001, 1.0),
    "sigma": (3, 8),
    "mu": (0.3, 0.8),
    "sensory_w": (0.001, 1.0),
    "sensory_sigma": (3, 8),
    "sensory_mu": (0.3, 0.8),
}


class LTC(nn.Module):
    def __init__(
        self, input_size: int, hidden: int, ode_unfolds: int = 6, polarity_seed: int = 1111, epsilon: float = 1e-8
    ):
        super().__init__()

        self.input_size, self.state_size, self.output_size = input_size, hidden, hidden
        self.ode_unfolds, self.epsilon = ode_unfolds, epsilon
        shapes = {
            "gleak": (hidden,),
            "vleak": (hidden,),
            "cm": (hidden,),
            "sigma": (hidden, hidden),
            "mu": (hidden, hidden),
            "w": (hidden, hidden),
            "sensory_sigma": (input_size, hidden),
            "sensory_mu": (input_size, hidden),
            "sensory_w": (input_size, hidden),
        }
        for name, shape in shapes.items():
            lo, hi = INIT_RANGES[name]
            setattr(self, name, nn.Parameter(torch.rand(*shape) * (hi - lo) + lo))
        sensory, internal = fully_connected_polarity(hidden, input_size, polarity_seed)
        self.erev = nn.Parameter(torch.tensor(internal, dtype=torch.float32))
        self.sensory_erev = nn.Parameter(torch.tensor(sensory, dtype=torch.float32))
        self.register_buffer("sparsity_mask", torch.tensor(np.abs(internal), dtype=torch.float32))
        self.register_buffer("sensory_sparsity_mask", torch.tensor(np.abs(sensory), dtype=torch.float32))
        self.input_w = nn.Parameter(torch.ones(input_size))
        self.input_b = nn.Parameter(torch.zeros(input_size))
        self.output_w = nn.Parameter(torch.ones(hidden))
        self.output_b = nn.Parameter(torch.zeros(hidden))

    def forward(self, x, dt=None, mask=None, return_sequences: bool = False, trace: dict | None = None):
        batch, steps, _ = x.shape
        x = x * self.input_w + self.input_b
        h = x.new_zeros(batch, self.state_size)
        softplus = torch.nn.functional.softplus
        w_masked = softplus(self.w) * self.sparsity_mask
        sensory_w = softplus(self.sensory_w) * self.sensory_sparsity_mask
        cm, gleak = softplus(self.cm), softplus(self.gleak)
        outputs = []
        for t in range(steps):
            inp = x[:, t]
            # synaptic input from the sensory neurons does not change within a step
            s_act = sensory_w * torch.sigmoid(self.sensory_sigma * (inp.unsqueeze(-1) - self.sensory_mu))
            num_sensory = (s_act * self.sensory_erev).sum(1)
            den_sensory = s_act.sum(1)
            elapsed = 1.0 if dt is None else dt[:, t : t + 1].to(x.dtype)
            cm_t = cm / (elapsed / self.ode_unfolds)
            v = h
            for _ in range(self.ode_unfolds):
                act = w_masked * torch.sigmoid(self.sigma * (v.unsqueeze(-1) - self.mu))
                numerator = cm_t * v + gleak * self.vleak + (act * self.erev).sum(1) + num_sensory
                denominator = cm_t + gleak + act.sum(1) + den_sensory
                v = numerator / (denominator + self.epsilon)
            h = v if mask is None else torch.where(mask[:, t : t + 1], v, h)
            if trace is not None:
                trace.setdefault("cells.0.state", []).append(h)
            if return_sequences:
                outputs.append(h * self.output_w + self.output_b)
        out = torch.stack(outputs, 1) if return_sequences else None
        return out, h * self.output_w + self.output_b
