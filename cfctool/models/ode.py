"""The Neural ODEs of the model-order-reduction study (the MOR paper) and their fixed-step solvers.

- `ConvODE` (MNIST): 3x3 conv + ReLU to 16 channels, 3x3 max-pool (28 -> 26 -> 8), an ODE
  block `x' = tanh(conv(x) + b)` of 16 3x3 kernels (padding 1) on t in [0, 1], then 3x3
  max-pool (8 -> 2) and the readout (the SequenceModel's head, 64 -> 10). The block runs as
  a convolution; `dense_block()` gives the same map as the seed's 1024 x 1024 matrix.
- `ODERNN` (pixel MNIST): the shifted antisymmetric ODE-RNN `x' = tanh(A x + b) + Z u` with
  `A = W - W^T - gamma I`, one solver step per input step from x(0) = 0; the readout reads
  the last state. Per step: one product, one tanh (Z u is computed for all steps at once).

Solvers (`euler`, `rk4`: the classic 4th-order method, not the 3/8 rule) are fixed-step,
shared by both, with the method and step recorded in the arch; no adjoint.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def step(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    dt: float,
    method: str,
    forcing: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fixed step of x' = f(x) (+ a forcing constant over the step). Returns (new x,
    f at the step's start: the nonlinearity snapshot DEIM needs)."""
    k1 = f(x)
    if method == "euler":  # one product and one tanh in f, then two adds
        return torch.add(x, k1 if forcing is None else k1 + forcing, alpha=dt), k1
    g = f if forcing is None else (lambda v: f(v) + forcing)
    s1 = k1 if forcing is None else k1 + forcing
    s2 = g(x + 0.5 * dt * s1)
    s3 = g(x + 0.5 * dt * s2)
    s4 = g(x + dt * s3)
    return x + (dt / 6.0) * (s1 + 2 * s2 + 2 * s3 + s4), k1


def run_sequence(
    f,
    x0: torch.Tensor,
    forcing: list[torch.Tensor],
    dt: float,
    method: str,
    mask: torch.Tensor | None,
    trace: dict | None,
    return_sequences: bool,
):
    """One solver step per input step (forcing: Z u per step); masked steps keep the state."""
    h, outputs = x0, []
    for t, zu_t in enumerate(forcing):
        new, fx = step(f, h, dt, method, zu_t)
        h = new if mask is None else torch.where(mask[:, t : t + 1], new, h)
        if trace is not None:
            trace.setdefault("cells.0.state", []).append(h)
            trace.setdefault("cells.0.nonlinearity", []).append(fx)
        if return_sequences:
            outputs.append(h)
    return (torch.stack(outputs, 1) if return_sequences else None), h


def solve(
    f, x: torch.Tensor, t_end: float, dt: float, method: str, trace: dict | None = None, prefix: str = "cells.0"
) -> torch.Tensor:
    """x(t_end) from x(0) with n = round(t_end / dt) fixed steps; `trace` collects the state
    after each step and f at each step's start."""
    n = max(1, round(t_end / dt))
    for _ in range(n):
        x, fx = step(f, x, dt, method)
        if trace is not None:
            trace.setdefault(f"{prefix}.state", []).append(x)
            trace.setdefault(f"{prefix}.nonlinearity", []).append(fx)
    return x


class ConvODE(nn.Module):
    """Image -> conv front -> ODE block -> pool -> 64 features (the head reads them)."""

    def __init__(self, channels: int = 16, side: int = 28, t_end: float = 1.0, dt: float = 0.1, solver: str = "rk4"):
        super().__init__()
        self.side, self.channels, self.t_end, self.dt, self.solver = side, channels, t_end, dt, solver
        self.front = nn.Conv2d(1, channels, 3)
        self.block = nn.Conv2d(channels, channels, 3, padding=1)
        self.grid = (side - 2) // 3  # after the front conv and the first 3x3 pool
        self.output_size = channels * (self.grid // 3) ** 2
        self.state_size = channels * self.grid**2
        self.input_size = side
        self.dense: tuple[torch.Tensor, torch.Tensor] | None = None  # (A, b): run the block as a matrix

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        img = x.reshape(x.shape[0], 1, self.side, self.side)
        return F.max_pool2d(F.relu(self.front(img)), 3)

    def f(self, h: torch.Tensor) -> torch.Tensor:
        """The block's right-hand side on the flat state (batch, channels * grid^2)."""
        if self.dense is not None:
            a, b = self.dense
            return torch.tanh(torch.addmm(b, h, a.t()))
        n = h.shape[0]
        img = h.reshape(n, self.channels, self.grid, self.grid)
        return torch.tanh(self.block(img)).reshape(n, -1)

    def dense_block(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, b) with tanh(A h + b) equal to the convolution form on the flat state: A is
        the convolution applied to the identity basis (the seed's 1024 x 1024 layer)."""
        with torch.no_grad():
            eye = torch.eye(self.state_size, dtype=self.block.weight.dtype)
            img = eye.reshape(self.state_size, self.channels, self.grid, self.grid)
            cols = F.conv2d(img, self.block.weight, None, padding=1).reshape(self.state_size, -1)
            bias = self.block.bias.repeat_interleave(self.grid * self.grid)
        return cols.t().contiguous(), bias

    def forward(self, x, dt=None, mask=None, return_sequences: bool = False, trace: dict | None = None):
        if return_sequences:
            raise ValueError("conv-ode classifies whole images: it has no per-step outputs")
        h = self.initial(x).reshape(x.shape[0], -1)
        if trace is not None:
            trace["cells.0.initial"] = [h]
        h = solve(self.f, h, self.t_end, self.dt, self.solver, trace)
        img = h.reshape(x.shape[0], self.channels, self.grid, self.grid)
        return None, F.max_pool2d(img, 3).reshape(x.shape[0], -1)


class ODERNN(nn.Module):
    """x' = tanh((W - W^T - gamma I) x + b) + Z u: one solver step of `dt` per input step."""

    def __init__(
        self,
        input_size: int,
        hidden: int = 512,
        gamma: float = 0.01,
        dt: float = 0.1,
        solver: str = "euler",
        init_std: float = 0.1,
    ):
        super().__init__()
        self.input_size, self.state_size, self.output_size = input_size, hidden, hidden
        self.gamma, self.dt, self.solver = gamma, dt, solver
        self.W = nn.Parameter(torch.empty(hidden, hidden))
        self.b = nn.Parameter(torch.zeros(hidden))
        self.Z = nn.Linear(input_size, hidden, bias=False)
        # A's eigenvalues are -gamma + i w with |w| up to ~2.8 init_std: Euler's step multiplies
        # a mode by |1 + i dt w| > 1, so a large init_std makes the 784-step gradients explode
        nn.init.normal_(self.W, std=init_std / hidden**0.5)

    def matrix(self) -> torch.Tensor:
        """A = W - W^T - gamma I: antisymmetric part shifted, eigenvalues -gamma + i w."""
        return self.W - self.W.t() - self.gamma * torch.eye(self.state_size, dtype=self.W.dtype, device=self.W.device)

    def forward(self, x, dt=None, mask=None, return_sequences: bool = False, trace: dict | None = None):
        zu = self.Z(x).unbind(1)  # the input term for every step at once
        a_t = self.matrix().t()
        f = lambda v: torch.tanh(torch.addmm(self.b, v, a_t))  # noqa: E731
        h0 = x.new_zeros(x.shape[0], self.state_size)
        return run_sequence(f, h0, zu, self.dt, self.solver, mask, trace, return_sequences)


class ReducedODE(nn.Module):
    """A reduced ODE block `z' = N f(M z + b) (+ Z u)` on a k-dimensional state z (the MOR paper).

    - POD-DEIM family: M = P^T A V (m x k), b = P^T b, N = V^T U (P^T U)^+ (k x m);
    - SVD truncation: z is the full state, M = R (rank r) then `M_out` = L (n x r): f reads
      L (R z) + b and N is the identity;
    - APoZ: z is the kept units, M = A restricted to them, N the identity.
    For images (`image` set) the block sits between the conv front, projected by V^T
    (`project`: n x k, or the kept units), and the pool, which reads the lifted V z. For
    sequences the input term is Z u (k x inputs) and the readout reads z (V folded into it).
    """

    def __init__(self, arch: dict, features: int):
        super().__init__()
        k, m, rank = int(arch["dim"]), int(arch["points"]), arch.get("rank")
        self.k, self.m, self.rank = k, m, rank
        self.dt, self.solver = float(arch["ode_dt"]), arch["solver"]
        self.t_end = float(arch.get("t_end", 1.0))
        self.image = arch["base"] == "conv-ode"
        self.M = nn.Parameter(torch.zeros(m if rank is None else rank, k))
        self.M_out = nn.Parameter(torch.zeros(m, rank)) if rank is not None else None
        self.b = nn.Parameter(torch.zeros(m))
        self.N = nn.Parameter(torch.zeros(k, m)) if arch.get("interpolated", True) else None
        if self.image:
            self.channels, self.side = int(arch["channels"]), int(arch["side"])
            self.front = nn.Conv2d(1, self.channels, 3)
            self.grid = (self.side - 2) // 3
            self.full = self.channels * self.grid**2
            # the projection V (n x k) after the front and the lift before the pool; absent = identity
            self.project = nn.Parameter(torch.zeros(self.full, k)) if arch.get("projected", True) else None
            self.output_size = self.channels * (self.grid // 3) ** 2
            self.input_size = self.side
        else:
            self.Z = nn.Linear(features, k, bias=False)
            self.input_size, self.output_size = features, k
        self.state_size = k

    def f(self, z: torch.Tensor) -> torch.Tensor:
        pre = z @ self.M.t()
        if self.M_out is not None:
            pre = pre @ self.M_out.t()
        fx = torch.tanh(pre + self.b)
        return fx if self.N is None else fx @ self.N.t()

    def forward(self, x, dt=None, mask=None, return_sequences: bool = False, trace: dict | None = None):
        if self.image:
            img = x.reshape(x.shape[0], 1, self.side, self.side)
            h0 = F.max_pool2d(F.relu(self.front(img)), 3).reshape(x.shape[0], -1)
            z = solve(
                self.f, h0 if self.project is None else h0 @ self.project, self.t_end, self.dt, self.solver, trace
            )
            h = z if self.project is None else z @ self.project.t()
            h = h.reshape(x.shape[0], self.channels, self.grid, self.grid)
            return None, F.max_pool2d(h, 3).reshape(x.shape[0], -1)
        z0 = x.new_zeros(x.shape[0], self.k)
        return run_sequence(self.f, z0, self.Z(x).unbind(1), self.dt, self.solver, mask, trace, return_sequences)
