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
    Build it for weights that no longer change (evaluation, benchmarks)."""

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

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, dt: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        model, core = self.model, self.model.rnn
        feats = model.embedding(x) if model.embedding is not None else x
        # [u_t, 1] time-major: contiguous steps
        u = torch.cat([feats, feats.new_ones(*feats.shape[:2], 1)], 2).transpose(0, 1).contiguous().unbind(0)
        masks = None if mask is None else mask.t().unsqueeze(-1).contiguous().unbind(0)
        z = feats.new_zeros(feats.shape[0], core.state_size)
        outputs = []
        for t, u_t in enumerate(u):
            p = torch.addmm(self.bias, z, self.first) if self.second is None else \
                torch.addmm(self.bias, z.mm(self.first), self.second)
            s = p.sigmoid_()
            new = torch.addmm(z, u_t, self.input_w)
            new = new.add_(s, alpha=2.0 * self.dt) if self.n_t is None else new.addmm_(s, self.n_t)
            z = new if masks is None else torch.where(masks[t], new, z)
            if model.per_step:
                outputs.append(z)
        return model.head(torch.stack(outputs, 1) if model.per_step else z)
