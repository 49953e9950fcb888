"""Inference-only form of the Euler sequence ODE blocks (`ode-rnn` and its reductions): the
weights refolded once so each of the 784 steps does less (outputs differ by rounding only).

The loop computes ``z + dt (N tanh(p) + Z u_t)`` with ``p = M z + b`` (N the identity for an
ODE-RNN, M = A; an SVD-truncated block has p = L (R z) + b). Folded:

- ``tanh(p) = 2 sigmoid(2p) - 1``: torch's CPU tanh costs ~5x its sigmoid (335 vs 60 us on
  128 x 512, 1 thread), a sixth of the ODE-RNN's step. The last product's weights and the
  bias are doubled once; the constant ``-N 1`` joins the input term.
- The input term with the constant: ``c_t = dt (Z u_t - N 1) = [u_t, 1] [dt Z^T; -dt 1^T N^T]``, one
  small product per step straight into the update ``z + c_t + (2 dt N) s`` (then one addmm
  where N is a matrix, an add where it is the identity). Precomputing c_t for all steps would
  write and read (steps x batch x units) floats, 205 MB for pixel MNIST: slower.
- An inner rank (the SVD factors) is zero-padded to a multiple of 8: the same function at a
  width the GEMM kernels run faster (rank 125 -> 128: ~10% on the pair of products).
- An SVD-truncated block read by a linear head at the last step runs in its latent
  coordinates: z enters the step only through R z, and the head only through H z, so the
  state is q = [R z, H z] (rank + outputs wide, padded to a multiple of 8) and ``q + c_t P^T + s (2 dt P^T)`` with
  P = [R; H] replaces the update of z. Each step then touches the full width only in the
  product L q and the sigmoid (no 512-wide update or input term); the readout is q's
  H-part plus the head's bias.

RK4 blocks and the image model are served by the loop (`supports`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cfctool.models.ode import ODERNN, ReducedODE


def supports(model: nn.Module) -> bool:
    core = getattr(model, "rnn", None)
    if isinstance(core, ODERNN):
        return core.solver == "euler"
    return isinstance(core, ReducedODE) and not core.image and core.solver == "euler"


def _pad_columns(w: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    extra = -w.shape[1] % multiple
    return F.pad(w, (0, extra)) if extra else w


class FoldedODE(nn.Module):
    """A `SequenceModel` with an Euler sequence ODE core, folded for inference (no gradients).
    Build it for a model that no longer changes (weights and per_step: evaluation, benchmarks)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not supports(model):
            raise ValueError("FoldedODE needs a SequenceModel with an Euler ode-rnn or sequence ode-reduced core")
        self.model = model.eval()
        core = model.rnn
        self.dt = float(core.dt)
        with torch.no_grad():
            if isinstance(core, ODERNN):
                self.first, self.second = 2.0 * core.matrix().t().contiguous(), None
                n = None
            else:
                m_t = core.M.t()
                if core.M_out is not None:  # z -> R z (rank, padded) -> L (R z)
                    self.first = _pad_columns(m_t).contiguous()
                    out_t = core.M_out.t()
                    self.second = 2.0 * F.pad(out_t, (0, 0, 0, self.first.shape[1] - out_t.shape[0])).contiguous()
                else:
                    self.first, self.second = 2.0 * m_t.contiguous(), None
                n = core.N
            self.bias = 2.0 * core.b.detach().clone()
            offset = n.sum(1) if n is not None else torch.ones_like(core.b)  # N 1
            self.input_w = (self.dt * torch.cat([core.Z.weight.t(), -offset.unsqueeze(0)])).contiguous()
            self.n_t = None if n is None else (2.0 * self.dt * n.t()).contiguous()
            self.state_size = core.state_size
            self._per_step = bool(model.per_step)
            self.latent = (
                isinstance(core, ReducedODE)
                and core.M_out is not None
                and n is None
                and not self._per_step
                and isinstance(model.head, nn.Linear)
            )
            if self.latent:  # q = z P^T with P = [R (padded); H]
                rank, outputs = self.first.shape[1], model.head.weight.shape[0]
                p_t = _pad_columns(torch.cat([self.first, model.head.weight.t()], 1))
                self.first = None
                self.second = F.pad(self.second, (0, 0, 0, p_t.shape[1] - rank)).contiguous()  # only R z is read
                self.input_w = (self.input_w @ p_t).contiguous()
                self.n_t = (2.0 * self.dt * p_t).contiguous()
                self.head_bias = model.head.bias.detach().clone()
                self.state_size = p_t.shape[1]
                self.head_columns = slice(rank, rank + outputs)

    @property
    def per_step(self) -> bool:
        return self._per_step

    # The step protocol of `models.inference.Folded`: the loop below and the ONNX export
    # (`ops.export._ScanGraph`, a Scan whose body is `step`) run the same function.
    def folded(self, dt: float | None) -> FoldedODE:
        """The data's dt plays no part (the solver step is the arch's): the same weights."""
        return self

    def time_major(self, x: torch.Tensor, dt: torch.Tensor | None, mask: torch.Tensor | None):
        """([u_t, 1] per step, no dt, mask), each (time, batch, ...)."""
        feats = self.model.embedding(x) if self.model.embedding is not None else x
        u = torch.cat([feats, torch.ones_like(feats[..., :1])], 2).transpose(0, 1)
        return u, None, None if mask is None else mask.t().unsqueeze(-1)

    def initial(self, u: torch.Tensor) -> list[torch.Tensor]:
        return [u.new_zeros(u.shape[1], self.state_size)]

    def step(
        self, ys: list[torch.Tensor], u_t: torch.Tensor, dt_t: torch.Tensor | None, mask_t: torch.Tensor | None
    ) -> list[torch.Tensor]:
        z = ys[0]
        if self.latent:
            p = torch.addmm(self.bias, z, self.second)
        else:
            p = (
                torch.addmm(self.bias, z, self.first)
                if self.second is None
                else torch.addmm(self.bias, z.mm(self.first), self.second)
            )
        s = p.sigmoid()
        new = torch.addmm(z, u_t, self.input_w)
        new = torch.add(new, s, alpha=2.0 * self.dt) if self.n_t is None else torch.addmm(new, s, self.n_t)
        return [new if mask_t is None else torch.where(mask_t, new, z)]

    def readout(self, y: torch.Tensor) -> torch.Tensor:
        if self.latent:  # y = [R z, H z]: the head's product is already in the state
            return y[:, self.head_columns] + self.head_bias
        return self.model.head(y)

    @torch.inference_mode()
    def forward(
        self, x: torch.Tensor, dt: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        u, _, masks = self.time_major(x, dt, mask)
        u = u.contiguous().unbind(0)
        masks = [None] * len(u) if masks is None else masks.contiguous().unbind(0)
        ys, outputs = self.initial(u[0].unsqueeze(0)), []
        for u_t, m_t in zip(u, masks):
            ys = self.step(ys, u_t, None, m_t)
            if self.per_step:
                outputs.append(ys[0])
        return self.readout(torch.stack(outputs, 1) if self.per_step else ys[0])
