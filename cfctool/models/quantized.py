"""The folded CfC engine on integer kernels: int8 products with int32 accumulation.

Built from a checkpoint whose weights are stored int8/int4 (symmetric, per row or per
tensor; see `cfctool.ops.quantize`), the engine runs the folded step of
`cfctool.models.inference` with the stored integers themselves. The y-space rewrite of
the folded engine only scales whole columns or rows of a weight matrix, so it changes
scales, never the integers:

- the state half of the first product: ``y_q @ q_state`` with ``y_q = round(127 y)``
  (y lives in [0, 1]: a fixed scale 1/127), output column j scaled by
  ``2a * s_j / 127``; the input half and the biases stay in the float lookup table;
- backbone layers: ``z_q @ q`` with z quantized at a calibrated scale (static) or at
  ``max|z| / 127`` per step (dynamic); for ReLU, relu + quantize is one clamp;
- the heads as one int8 matrix (rows of ff1/ff2 scaled by 2c, NCP masks applied to the
  integers), then sigmoid and lerp in float as in the float engine. With a constant dt
  the gate's two heads become one, ``time_a * dt + time_b``, summed from the stored
  integers and requantized per row when the engine is built (the one place the engine
  runs integers that are not the stored ones; its error is in the state MSE and the
  accuracy, both measured through this engine).

One rescale per product (``bias + acc * column scale``). Unfused (``fuse=False``, the
seed's "static" column) every Linear output is also rounded to int8 at its calibrated
scale before its activation (each backbone layer, each of the four heads; the gate heads
are not folded), as an engine without Linear + activation fusing would have it.
`simulate=True` computes the same
integers with float matrix products (exact: the sums stay below 2^24), for tests and
for the calibration observers.
"""

from __future__ import annotations

import torch
from torch import nn

from cfctool import encodings, records
from cfctool.models import HEADS
from cfctool.models.inference import Folded, FoldedCfC, _constant, supports, update

Y_LEVELS = 127.0  # y in [0, 1] -> int8 0..127


def int_weight(ckpt, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(int8 values, per-row scales) of a symmetric integer-encoded tensor (dense or sparse), else None."""
    spec = ckpt.encodings.get(name)
    return None if spec is None else encodings.integer_codes(spec, ckpt.parts[name])


def product_weights(model) -> list[str]:
    """The weights of a folded model's products (backbone layers and heads, per cell)."""
    names = []
    for k, cell in enumerate(model.rnn.cells):
        names += [f"rnn.cells.{k}.backbone.{j}.weight" for j in range(len(cell.backbone))]
        names += [f"rnn.cells.{k}.{h}.weight" for h in HEADS]
    return names


def float_layers(ckpt) -> list[str]:
    """Weights a quantized checkpoint keeps in float32 (the per-layer fallback of quantize)."""
    return records.float_layers(ckpt.record)


def supports_integer(ckpt, model) -> bool:
    """A 'default'-mode folded model whose products' weights are integer-encoded, except those
    the quantization record keeps in float32 (then those products run in float)."""
    if not supports(model) or any(c.head_basis is not None for c in model.rnn.cells):
        return False  # rank-factored heads: no integer path for the factor yet (the float engine runs them)
    kept = set(float_layers(ckpt))
    names = product_weights(model)
    encoded = [n for n in names if int_weight(ckpt, n) is not None]
    return bool(encoded) and all(n in encoded or n in kept for n in names)


def _weight(ckpt, module: nn.Linear, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(stored integers, row scales) of an encoded product, or (float32 weight, ones) of one
    kept in float: the same formulas serve both, the float one with a float product."""
    stored = int_weight(ckpt, name)
    if stored is not None:
        return stored
    w = module.weight.detach().float()
    return w, torch.ones(w.shape[0])


class _Matmul:
    """int8 x int8 -> int32 (or the same integers in float32 when simulating)."""

    def __init__(self, simulate: bool):
        self.simulate = simulate

    def __call__(self, a_q: torch.Tensor, w_q_t: torch.Tensor) -> torch.Tensor:
        if self.simulate or w_q_t.is_floating_point():  # a product kept in float32: float sums
            return a_q.float() @ w_q_t.float()
        return torch._int_mm(a_q, w_q_t)  # int32: addcmul promotes it, no float copy


def quantize_dynamic(z: torch.Tensor, relu: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, scale) of an activation at the scale max |z| / 127 of this step.
    ReLU outputs use 0..127 (round half up); others -127..127 (round half to even)."""
    s = (z.amax() if relu else z.abs().amax()).clamp_min(1e-12) / 127.0
    if relu:
        return z.div(s).add_(0.5).clamp_(0, 127).to(torch.int8), s
    return torch.round(z / s).clamp_(-127, 127).to(torch.int8), s


_HALF = torch.tensor(0.5)


def fold_gate(t: torch.Tensor, h: int, dt: float) -> torch.Tensor:
    """Columns [ff1, ff2, time_a, time_b] -> [ff1, ff2, time_a * dt + time_b] (last dim)."""
    return torch.cat([t[..., : 2 * h], dt * t[..., 2 * h : 3 * h] + t[..., 3 * h :]], -1)


def quantize_y(y: torch.Tensor) -> torch.Tensor:
    """y in [0, 1] -> round(127 y) as int8 (round half up)."""
    return torch.add(_HALF, y, alpha=Y_LEVELS).to(torch.int8)


class _QCell:
    """One cell's integer matrices and scales for a given dt (None: dt varies per step).

    Fast path (ReLU backbone, static scales): relu + quantize of a backbone output is
    ``clamp(bias' + acc * scale', 0, 127)`` with 1/s_z and the rounding offset folded into
    bias' and scale' (for cell 0 into the token table, see QuantFolded)."""

    def __init__(
        self,
        ckpt,
        cell,
        k: int,
        folded_cell,
        act_scales: dict,
        dynamic: bool,
        mm: _Matmul,
        prev_scale: float,
        dt: float | None,
        fuse: bool = True,
    ):
        h, n_in = cell.hidden, cell.n_in
        a, c = cell.head_scale, cell.head_slope
        self.h, self.mm, self.dt = h, mm, dt
        self.relu = isinstance(cell.act, nn.ReLU)
        self.act = cell.act
        prefix = f"rnn.cells.{k}"
        mask = cell.sparsity_mask
        heads = []
        for head in HEADS:
            q, s = _weight(ckpt, getattr(cell, head), f"{prefix}.{head}.weight")
            if mask is not None and head in ("ff1", "ff2"):
                q = q * mask.to(q.dtype)
            heads.append((q, s * (2 * c if head.startswith("ff") else 1.0)))
        if any(q.is_floating_point() for q, _ in heads):  # the fused heads in float: one float product
            heads = [(q.float() * s.unsqueeze(1), torch.ones_like(s)) for q, s in heads]
        biases = [2 * c * cell.ff1.bias, 2 * c * cell.ff2.bias, cell.time_a.bias, cell.time_b.bias]
        if dt is not None:  # constant dt: one gate head time_a * dt + time_b, requantized per row
            (qa, sa), (qb, sb) = heads[2], heads[3]
            gate = dt * qa.float() * sa.unsqueeze(1) + qb.float() * sb.unsqueeze(1)
            if qa.is_floating_point():  # float heads: the folded gate stays float
                heads[2:] = [(gate, torch.ones_like(sa))]
            else:
                sg = gate.abs().amax(1).clamp_min(1e-12) / 127.0
                heads[2:] = [(torch.round(gate / sg.unsqueeze(1)).clamp_(-127, 127).to(torch.int8), sg)]
            biases[2:] = [dt * cell.time_a.bias + cell.time_b.bias]
        self.gate_folded = dt is not None
        heads_q = torch.cat([q for q, _ in heads])
        heads_s = torch.cat([s for _, s in heads])
        heads_b = torch.cat(biases).detach()
        widths = [layer.out_features for layer in cell.backbone]
        names = [f"cells.{k}.backbone.{j}" for j in range(len(widths))]
        scales = [None if dynamic else float(act_scales[n]) for n in names]
        self.fast = bool(widths) and self.relu and not dynamic and fuse
        self.linear_points = None  # unfused: (1/s, s) of each backbone pre-activation and the heads' columns
        if not fuse:
            head_s = torch.cat([torch.full((h,), float(act_scales[f"cells.{k}.heads.{n}"])) for n in HEADS])
            self.linear_points = (
                [(1.0 / act_scales[f"{n}.linear"], act_scales[f"{n}.linear"]) for n in names],
                (1.0 / head_s, head_s),
            )
        self.in_scale = scales[0] if self.fast else None  # cell 0's table is divided by it (QuantFolded)
        self.heads: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
        if widths:
            q1, s1 = _weight(ckpt, cell.backbone[0], f"{prefix}.backbone.0.weight")
            layers = [_weight(ckpt, cell.backbone[j], f"{prefix}.backbone.{j}.weight") for j in range(1, len(widths))]
            biases = [layer.bias.detach() for layer in cell.backbone[1:]]
            self.layers = []
            for (q, s), b, s_in, s_out in zip(layers, biases, scales[:-1], scales[1:]):
                if self.fast:  # next z_q = clamp(b / s_out + 0.5 + acc * (s * s_in / s_out), 0, 127)
                    self.layers.append((q.t().contiguous(), s * s_in / s_out, b / s_out + 0.5, s_out))
                else:
                    self.layers.append((q.t().contiguous(), s, b, s_out))
            self.static = not dynamic
            if self.static and not self.fast:  # products of scales and inverse scales, once
                self.layers = [(q_t, s * s_in, b, s_out) for (q_t, s, b, s_out), s_in in zip(self.layers, scales)]
                self.inv_scales = [1.0 / sc for sc in scales if sc is not None]  # static: all set
            s_last = scales[-1]
            self.heads = (heads_q.t().contiguous(), heads_s * s_last if self.static else heads_s, heads_b)
            self.scales = scales
        else:  # NCP cells: the heads read [input; state]
            q1, s1 = heads_q, heads_s
            self.layers, self.heads, self.scales, self.static = [], None, [], not dynamic
        # first product: the state half (and, after cell 0, the previous cell's y) in y-space
        div = 1.0 if self.in_scale is None else self.in_scale
        self.state_q = q1[:, n_in:].t().contiguous()
        self.state_s = s1 * (2 * a / Y_LEVELS) / div
        b1 = folded_cell.b1
        if not widths and self.gate_folded:
            assert dt is not None  # the gate is folded at a constant dt only
            b1 = fold_gate(folded_cell.b1, h, dt)
        self.b1 = b1 / div + (0.5 if self.fast else 0.0)
        self.folds_input = not widths and self.gate_folded  # NCP: the input part has 4 heads to fold
        if k > 0:
            self.in_q = q1[:, :n_in].t().contiguous()
            self.in_s = s1 * (2 * prev_scale / Y_LEVELS) / div

    def _activate(self, z: torch.Tensor) -> torch.Tensor:
        if self.relu:
            return z.relu_()
        if isinstance(self.act, nn.SiLU):
            return torch.nn.functional.silu(z, inplace=True)
        return self.act(z)

    @staticmethod
    def _round_trip(z: torch.Tensor, inv_scale, scale) -> torch.Tensor:
        """z rounded to int8 at `scale` and back (in place): an unfused Linear output."""
        return z.mul_(inv_scale).round_().clamp_(-127, 127).mul_(scale)

    def _quantize(self, z: torch.Tensor, inv_scale: float) -> torch.Tensor:
        """round(z / s) into [-127, 127] (or [0, 127] after a ReLU), in place on z."""
        return z.mul_(inv_scale).round_().clamp_(0 if self.relu else -127, 127).to(torch.int8)

    def step(
        self, pre_float: torch.Tensor | None, y_q: torch.Tensor, prev_q: torch.Tensor | None, dt: torch.Tensor | None
    ) -> torch.Tensor:
        """New y from the input part `pre_float` (cell 0: the table row; else None)."""
        h = self.h
        pre = torch.addcmul(pre_float if pre_float is not None else self.b1, self.mm(y_q, self.state_q), self.state_s)
        if prev_q is not None:
            pre = pre.addcmul_(self.mm(prev_q, self.in_q), self.in_s)
        if self.heads is not None:
            if self.fast:  # pre is already z / s_z + 0.5
                z_q = pre.clamp_(0, 127).to(torch.int8)
                for q_t, s, b, _ in self.layers:
                    z_q = torch.addcmul(b, self.mm(z_q, q_t), s).clamp_(0, 127).to(torch.int8)
                q_t, s_h, b_h = self.heads
                pre = torch.addcmul(b_h, self.mm(z_q, q_t), s_h)
            elif self.static:  # static scales, non-ReLU (or unfused): products of scales precomputed
                points = self.linear_points[0] if self.linear_points else None
                if points:
                    pre = self._round_trip(pre, *points[0])
                z_q = self._quantize(self._activate(pre), self.inv_scales[0])
                for j, ((q_t, s_mult, b, _), inv) in enumerate(zip(self.layers, self.inv_scales[1:]), 1):
                    z = torch.addcmul(b, self.mm(z_q, q_t), s_mult)
                    if points:
                        z = self._round_trip(z, *points[j])
                    z_q = self._quantize(self._activate(z), inv)
                q_t, s_h, b_h = self.heads
                pre = torch.addcmul(b_h, self.mm(z_q, q_t), s_h)
            else:  # dynamic: a scale per step
                z = self._activate(pre)
                z_q, s_z = quantize_dynamic(z, self.relu)
                for q_t, s, b, _ in self.layers:
                    z = self._activate(torch.addcmul(b, self.mm(z_q, q_t), s * s_z))
                    z_q, s_z = quantize_dynamic(z, self.relu)
                q_t, s_h, b_h = self.heads
                pre = torch.addcmul(b_h, self.mm(z_q, q_t), s_h * s_z)
        if self.linear_points:
            pre = self._round_trip(pre, *self.linear_points[1])
        return update(pre, h, self.gate_folded, dt)


class QuantFolded(Folded):
    """`Folded` with integer products; the same time-major input, initial state and readout."""

    def __init__(self, model, dt, ckpt, act_scales: dict, dynamic: bool, simulate: bool, fuse: bool = True):
        super().__init__(model, None)  # the float table and biases in y-space, 4 heads
        mm = _Matmul(simulate)
        cells = model.rnn.cells
        with torch.no_grad():  # unfused: the gate heads stay apart (each output has its own scale)
            self.qcells = [
                _QCell(
                    ckpt,
                    cell,
                    k,
                    self.cells[k],
                    act_scales,
                    dynamic,
                    mm,
                    cells[k - 1].head_scale if k else 1.0,
                    dt if fuse else None,
                    fuse,
                )
                for k, cell in enumerate(cells)
            ]
            self.dt_tensor = None if dt is None else torch.tensor(float(dt))
            first = self.qcells[0]
            self.dt_value = dt
            if first.folds_input and self.table is not None:
                self.table = fold_gate(self.table, first.h, dt)
            if first.fast and self.table is not None:  # the table row becomes z / s_z + 0.5
                self.table = self.table / first.in_scale + 0.5
        self.constant_dt = dt is not None

    def time_major(self, x, dt, mask):
        u, dts, masks = super().time_major(x, dt, mask)
        first = self.qcells[0]
        if first.folds_input and self.table is None:
            u = fold_gate(u, first.h, self.dt_value)
        if first.fast and self.table is None:
            u = u / first.in_scale + 0.5
        return u, dts, masks

    def step(self, ys, u_t, dt_t, mask_t):
        out, prev_q = [], None
        for k, qc in enumerate(self.qcells):
            dt_k = dt_t if dt_t is not None else (None if qc.gate_folded else self.dt_tensor)
            new = qc.step(u_t if k == 0 else None, quantize_y(ys[k]), prev_q, dt_k)
            new = new if mask_t is None else torch.where(mask_t, new, ys[k])
            out.append(new)
            prev_q = quantize_y(new) if k + 1 < len(self.qcells) else None
        return out


class QuantFoldedCfC(FoldedCfC):
    """The folded engine with int8 products (see module docstring); packing as FoldedCfC."""

    def __init__(
        self,
        model: nn.Module,
        ckpt,
        act_scales: dict | None = None,
        dynamic: bool = False,
        simulate: bool = False,
        pack: bool = True,
        fuse: bool = True,
    ):
        super().__init__(model, pack=pack)
        self.ckpt, self.act_scales, self.dynamic, self.simulate = ckpt, act_scales or {}, dynamic, simulate
        self.fuse = fuse

    def folded(self, dt):
        if dt in self._cache:
            return self._cache[dt]
        f = QuantFolded(self.model, dt, self.ckpt, self.act_scales, self.dynamic, self.simulate, self.fuse)
        if dt in (None, 1.0):
            self._cache[dt] = f
        return f

    def states(self, x, dt=None, mask=None) -> list[torch.Tensor]:
        """Every cell's per-step state x = a (2y - 1), (batch, time, hidden), as the loop
        keeps them (for the state error of calibration)."""
        with torch.inference_mode():
            f = self.folded(1.0 if dt is None else _constant(dt))
            u, dts, masks = f.time_major(x, dt, mask)
            ys = f.initial(u)
            trace: list[list[torch.Tensor]] = [[] for _ in ys]
            for t in range(u.shape[0]):
                ys = f.step(ys, u[t], None if dts is None else dts[t], None if masks is None else masks[t])
                for k, y in enumerate(ys):
                    trace[k].append(y)
        scales = [c.head_scale for c in self.model.rnn.cells]
        return [a * (2 * torch.stack(tr, 1) - 1) for a, tr in zip(scales, trace)]
