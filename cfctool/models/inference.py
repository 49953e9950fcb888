"""Inference-only form of a CfC model: the trained weights refolded so each step does less.

The training loop (`cfc.CfC`) keeps the paper's parametrisation because autograd and the
optimiser need it. At inference the same function can be computed with fewer operations
per step, by exact algebra applied once to the weights (outputs differ by rounding only):

- Token embedding folded into the first input product: each token looks up its row of
  ``E @ W_in^T + b`` instead of a (batch x time x embedding) matrix product per batch. The
  lookup is done time-major, so per-step slices are contiguous for free.
- Constant dt (regular sequences: IMDB, pixel MNIST, XOR): the gate's two heads
  ``time_a * dt + time_b`` collapse into one head, so the head product is 3/4 the size and
  the per-step multiply-add disappears.
- State kept as ``y = (x / a + 1) / 2`` ('default' mode; a = 1 for tanh heads, 1.7159
  for LeCun-tanh heads): the update ``act(f1) * (1 - g) + g * act(f2)`` is
  ``a * (2 * lerp(s1, s2, g) - 1)`` with ``s_k = sigmoid(2c f_k)``, so in y-space it is a
  bare ``lerp``; the factor 2a and the offset -a move into every matrix that reads the
  state (recurrent, next cell, readout).

Per step that leaves: one product, the backbone activation, one head product, one sigmoid,
one lerp; end-padded batches are packed (padded steps skipped), and only masks with holes
need a per-step select. Other configurations (no_gate, pure,
mixed memory, LTC) are served by the model itself (the engine registry, `cfctool.engines`, picks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cfctool.models.cfc import CfC, CfCCell


def supports(model: nn.Module) -> bool:
    rnn = getattr(model, "rnn", None)
    return isinstance(rnn, CfC) and rnn.lstm is None and all(c.mode == "default" for c in rnn.cells)


def _to_y_space(w: torch.Tensor, b: torch.Tensor, cols: slice, a: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewrite `w @ x + b` for inputs x = a * (2y - 1) on `cols` as `w' @ y + b'` (a: the
    head activation's scale, 1 for tanh)."""
    w = w.clone()
    b = b - a * w[:, cols].sum(1)
    w[:, cols] *= 2.0 * a
    return w, b


def update(pre: torch.Tensor, h: int, gate_folded: bool, dt: torch.Tensor | None) -> torch.Tensor:
    """The new y from the heads' pre-activations: columns [2c ff1, 2c ff2, gate] (gate
    folded for a constant dt) or [2c ff1, 2c ff2, time_a, time_b] (dt per step)."""
    if gate_folded:
        s1, s2, gate = pre.sigmoid_().split(h, 1)
    else:
        s1, s2 = pre[:, : 2 * h].sigmoid().split(h, 1)
        gate = torch.addcmul(pre[:, 3 * h :], pre[:, 2 * h : 3 * h], dt).sigmoid_()
    return torch.lerp(s1, s2, gate)


class _Cell:
    """One cell's folded weights, for a given constant dt (None: dt varies per step)."""

    def __init__(self, cell: CfCCell, first: bool, dt: float | None, previous_scale: float = 1.0):
        h, n_in = cell.hidden, cell.n_in
        self.h = h
        self.scale = cell.head_scale
        self.relu = isinstance(cell.act, nn.ReLU)
        self.act = cell.act
        heads_w, heads_b = cell.head_params()  # rows: 2*ff1, 2*ff2, time_a, time_b
        self.gate_folded = dt is not None
        if self.gate_folded:
            heads_w = torch.cat([heads_w[: 2 * h], dt * heads_w[2 * h : 3 * h] + heads_w[3 * h :]])
            heads_b = torch.cat([heads_b[: 2 * h], dt * heads_b[2 * h : 3 * h] + heads_b[3 * h :]])
        self.heads: tuple[torch.Tensor, torch.Tensor] | None
        self.basis: torch.Tensor | None
        if len(cell.backbone):
            w1, b1 = cell.backbone[0].weight, cell.backbone[0].bias
            # plain tensors, not Parameters: the ONNX Scan body cannot capture Parameters
            self.rest = [(layer.weight.detach().t().contiguous(), layer.bias.detach()) for layer in cell.backbone[1:]]
            self.heads = (heads_w.t().contiguous(), heads_b)
            self.basis = None if cell.head_basis is None else cell.head_basis.weight.detach().t().contiguous()
        else:  # NCP cells: the heads read [input; state] directly
            w1, b1 = heads_w, heads_b
            self.rest, self.heads, self.basis = [], None, None
        w1, b1 = _to_y_space(w1, b1, slice(n_in, None), cell.head_scale)
        if not first:  # the input is the previous cell's state, also in y-space
            w1, b1 = _to_y_space(w1, b1, slice(0, n_in), previous_scale)
        self.b1 = b1
        self.w_in_t = w1[:, :n_in].t().contiguous()
        self.w_state_t = w1[:, n_in:].t().contiguous()

    def step(self, pre: torch.Tensor, dt: torch.Tensor | None) -> torch.Tensor:
        """New y from the first product's output `pre` (input half and bias already in)."""
        h = self.h
        if self.heads is not None:
            z = pre.relu_() if self.relu else self.act(pre)
            for w_t, b in self.rest:
                z = torch.addmm(b, z, w_t)
                z = z.relu_() if self.relu else self.act(z)
            if self.basis is not None:
                z = z.mm(self.basis)
            pre = torch.addmm(self.heads[1], z, self.heads[0])
        return update(pre, h, self.gate_folded, dt)


class Folded:
    """A model's weights folded for one choice of dt (a constant, or None: dt varies per step).

    The per-step function is `step`; `FoldedCfC` runs it in a Python loop and the ONNX
    export runs the same function as the body of a Scan, so both compute one thing.
    """

    def __init__(self, model: nn.Module, dt: float | None):
        with torch.no_grad():
            cells = model.rnn.cells
            self.cells = [_Cell(c, k == 0, dt, cells[k - 1].head_scale if k else 1.0) for k, c in enumerate(cells)]
            first = self.cells[0]
            self.table = None
            if model.embedding is not None:  # one row per token: E @ W_in^T + b
                self.table = (
                    model.embedding.weight + first.b1
                    if model.rnn.cells[0].input_projected
                    else torch.addmm(first.b1, model.embedding.weight, first.w_in_t)
                )
            self.head_w, self.head_b = _to_y_space(
                model.head.weight, model.head.bias, slice(None), cells[-1].head_scale
            )
        self.constant_dt = dt is not None
        self.per_step = bool(model.per_step)

    def time_major(self, x: torch.Tensor, dt: torch.Tensor | None, mask: torch.Tensor | None):
        """(first cell's input product, dt, mask), each (time, batch, ...); dt is None when constant."""
        first = self.cells[0]
        if self.table is not None:
            u = F.embedding(x.t(), self.table)  # time-major lookup: contiguous steps
        else:
            u = torch.matmul(x.transpose(0, 1), first.w_in_t) + first.b1
        if not self.constant_dt and dt is None:
            raise ValueError("this engine was built for a dt per step: pass dt")
        dts = None if dt is None or self.constant_dt else dt.to(u.dtype).t().unsqueeze(-1)
        masks = None if mask is None else mask.t().unsqueeze(-1)
        return u, dts, masks

    def initial(self, u: torch.Tensor) -> list[torch.Tensor]:
        return [u.new_full((u.shape[1], c.h), 0.5) for c in self.cells]  # x = 0 is y = 1/2

    def step(
        self, ys: list[torch.Tensor], u_t: torch.Tensor, dt_t: torch.Tensor | None, mask_t: torch.Tensor | None
    ) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for k, cell in enumerate(self.cells):
            if k == 0:
                pre = torch.addmm(u_t, ys[0], cell.w_state_t)
            else:
                pre = torch.addmm(torch.addmm(cell.b1, out[k - 1], cell.w_in_t), ys[k], cell.w_state_t)
            new = cell.step(pre, dt_t)
            out.append(new if mask_t is None else torch.where(mask_t, new, ys[k]))
        return out

    def readout(self, y: torch.Tensor) -> torch.Tensor:
        return F.linear(y, self.head_w, self.head_b)


class FoldedCfC(nn.Module):
    """A `SequenceModel` with a 'default'-mode CfC core, folded for inference (no gradients).

    Folded weights depend on dt only through whether it is constant; they are rebuilt per
    call for the value seen (a few small matrix products), and cached for dt = 1. Build it
    for weights that no longer change (evaluation, benchmarks, deployment): the cache is
    not invalidated when the wrapped model is trained further.
    """

    def __init__(self, model: nn.Module, pack: bool = True):
        super().__init__()
        if not supports(model):
            raise ValueError("FoldedCfC needs a SequenceModel with a 'default'-mode CfC core and no mixed memory")
        self.model = model.eval()
        self.pack = pack  # skip padded steps of end-padded batches (see `_packed`)
        self._cache: dict[float | None, Folded] = {}

    def folded(self, dt: float | None) -> Folded:
        if dt in self._cache:
            return self._cache[dt]
        folded = Folded(self.model, dt)
        if dt in (None, 1.0):
            self._cache[dt] = folded
        return folded

    @torch.inference_mode()
    def forward(
        self, x: torch.Tensor, dt: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        f = self.folded(1.0 if dt is None else _constant(dt))
        lengths = _prefix_lengths(mask) if self.pack else None
        if lengths is not None and not f.per_step:
            return self._packed(f, x, dt, lengths)
        u, dts, masks = f.time_major(x, dt, mask)
        ys = f.initial(u)
        u = u.unbind(0)
        dts = [None] * len(u) if dts is None else dts.contiguous().unbind(0)
        masks = [None] * len(u) if masks is None else masks.contiguous().unbind(0)
        outputs = []
        for u_t, dt_t, m_t in zip(u, dts, masks):
            ys = f.step(ys, u_t, dt_t, m_t)
            if f.per_step:
                outputs.append(ys[-1])
        return f.readout(torch.stack(outputs, 1) if f.per_step else ys[-1])

    def _packed(self, f: Folded, x: torch.Tensor, dt: torch.Tensor | None, lengths: torch.Tensor) -> torch.Tensor:
        """Variable lengths with padding at the end: rows sorted by length, and each step
        runs only the rows still going, so padded steps cost nothing (as packed sequences
        do in cuDNN). A row's final state is set aside when it ends; no per-step select."""
        order = torch.argsort(lengths, descending=True, stable=True)
        lengths = lengths[order].tolist()
        u, dts, _ = f.time_major(x[order], None if dt is None else dt[order], None)
        ys = f.initial(u)
        ended = []  # final states of the rows that ended, shortest first
        active = len(lengths)
        for t in range(u.shape[0]):
            still = active
            while still and lengths[still - 1] <= t:
                still -= 1
            if still < active:
                ended.append(ys[-1][still:active])
                ys = [y[:still] for y in ys]
                active = still
            if not active:
                break
            ys = f.step(ys, u[t, :active], None if dts is None else dts[t, :active], None)
        last = torch.cat([ys[-1], *reversed(ended)])  # ys holds the rows still active
        return f.readout(last[torch.argsort(order)])


def _prefix_lengths(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Per-row lengths when every row's valid steps come first (padding at the end), else None."""
    if mask is None:
        return None
    lengths = mask.sum(1)
    prefix = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)
    return lengths if torch.equal(prefix, mask.bool()) else None


def _constant(dt: torch.Tensor) -> float | None:
    """dt's single value when every entry is equal (regular sampling), else None."""
    lo, hi = torch.aminmax(dt)
    return float(lo) if bool(lo == hi) else None
