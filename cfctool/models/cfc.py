"""Closed-form Continuous-time cells (Hasani et al. 2022) and the sequence loop that runs them.

Math and parameter layout follow the reference PyTorch code (ncps): a backbone MLP on
``[input; state]``, heads ``ff1``, ``ff2``, ``time_a``, ``time_b`` and

    gate = sigmoid(time_a(z) * dt + time_b(z))
    default: x' = tanh(ff1(z)) * (1 - gate) + gate * tanh(ff2(z))
    no_gate: x' = tanh(ff1(z)) + gate * tanh(ff2(z))
    pure:    x' = -A * exp(-dt * (|w_tau| + |ff1(z)|)) * ff1(z) + A

The loop is the hot path of training and inference, so per step it does only what
depends on the state: the input half of the first matrix product is computed for all
steps at once, and the four heads run as one product of their concatenated weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cfctool.models import HEADS


class LeCunTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU, "lecun_tanh": LeCunTanh}
# the ff1/ff2 heads' activation as a * tanh(c * x) = a * (2 * sigmoid(2c * x) - 1): (a, c)
HEAD_ACTIVATIONS = {"tanh": (1.0, 1.0), "lecun_tanh": (1.7159, 0.666)}


class CfCCell(nn.Module):
    """One CfC layer: state size `hidden`, fed by `input_size` features per step.

    `backbone_widths` gives each backbone layer's width (empty: the heads read
    ``[input; state]`` directly), so a structurally pruned backbone is just other numbers.

    `sparsity_mask` (hidden x (input_size + hidden), 0/1) fixes the wiring of the ff1/ff2
    heads, as in the NCP-wired CfC; it is a buffer, so it travels in the checkpoint.

    `head_rank` K factors the stacked heads through a shared K-wide linear map of the
    backbone output (`head_basis`, no bias or activation): the form a rank-K SVD truncation
    of the heads takes (`cfctool reduce --method svd`), cheaper when K (U + 4h) < 4h U.
    """

    def __init__(
        self,
        input_size: int,
        hidden: int,
        mode: str = "default",
        backbone_widths: tuple[int, ...] | list[int] = (64,),
        activation: str = "lecun_tanh",
        dropout: float = 0.0,
        sparsity_mask: torch.Tensor | None = None,
        head_activation: str = "tanh",
        input_projected: bool = False,
        head_rank: int | None = None,
    ):
        super().__init__()
        if mode not in ("default", "no_gate", "pure"):
            raise ValueError(f"unknown CfC mode {mode}")
        self.input_size, self.hidden, self.mode = input_size, hidden, mode
        # ff1/ff2 activation a * tanh(c * x): tanh as in ncps's torch CfC (a = c = 1), or
        # LeCun's 1.7159 * tanh(0.666 * x) as in the reference TF code
        self.head_activation = head_activation
        self.head_scale, self.head_slope = HEAD_ACTIVATIONS[head_activation]
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        # input_projected: the input already is the first backbone layer's input product (a
        # folded embedding, E W_in^T), so that layer reads only the state (plus its bias)
        self.input_projected = input_projected
        if input_projected and (not backbone_widths or backbone_widths[0] != input_size):
            raise ValueError("a projected input must have the first backbone layer's width")
        self.n_in = 0 if input_projected else input_size  # input columns of the first product
        widths = [self.n_in + hidden, *backbone_widths]  # one entry per backbone layer
        self.backbone = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        head_in = widths[-1]
        self.head_basis = None
        if head_rank:
            if not backbone_widths:
                raise ValueError("rank-factored heads need a backbone (the factor reads its output)")
            self.head_basis = nn.Linear(head_in, head_rank, bias=False)
            head_in = head_rank
        self.ff1 = nn.Linear(head_in, hidden)
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(1, hidden))
            self.A = nn.Parameter(torch.ones(1, hidden))
        else:
            self.ff2 = nn.Linear(head_in, hidden)
            self.time_a = nn.Linear(head_in, hidden)
            self.time_b = nn.Linear(head_in, hidden)
        if sparsity_mask is not None:
            if tuple(sparsity_mask.shape) != (hidden, input_size + hidden):
                raise ValueError("sparsity mask must be hidden x (input + hidden)")
            self.register_buffer("sparsity_mask", sparsity_mask.float())
        else:
            self.sparsity_mask = None
        # quantization-aware training: {"acts": [scale per backbone layer]} makes the loop
        # quantize what the int8 engine quantizes (see `fake_quant_state`, `fake_quant_act`)
        self.fake_quant: dict | None = None
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)

    @property
    def n_heads(self) -> int:
        return 1 if self.mode == "pure" else 4

    def head_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads as one (n_heads*hidden, head_in) matrix, wiring mask applied.

        The ff1/ff2 rows are scaled by 2c: `combine` evaluates a * tanh(c * v) as
        a * (2 * sigmoid(2c * v) - 1), because torch's CPU tanh is ~3x slower than its sigmoid.
        """
        ff1_w, ff1_b = self.ff1.weight, self.ff1.bias
        if self.mode == "pure":
            return (ff1_w * self.sparsity_mask if self.sparsity_mask is not None else ff1_w), ff1_b
        ff2_w = self.ff2.weight
        if self.sparsity_mask is not None:
            ff1_w, ff2_w = ff1_w * self.sparsity_mask, ff2_w * self.sparsity_mask
        k = 2.0 * self.head_slope
        w = torch.cat([k * ff1_w, k * ff2_w, self.time_a.weight, self.time_b.weight])
        b = torch.cat([k * ff1_b, k * self.ff2.bias, self.time_a.bias, self.time_b.bias])
        return w, b

    def first_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_input, W_state, bias) of the first product on [input; state]."""
        if len(self.backbone):
            w, b = self.backbone[0].weight, self.backbone[0].bias
        else:
            w, b = self.head_params()
        if self.input_projected:
            return None, w, b
        return w[:, : self.input_size], w[:, self.input_size :], b

    def combine(self, heads: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """New state from the fused head output (batch, n_heads*hidden) and dt (batch, 1)."""
        if self.mode == "pure":
            return -self.A * torch.exp(-dt * (torch.abs(self.w_tau) + torch.abs(heads))) * heads + self.A
        h = self.hidden
        ff, t_a, t_b = heads.split([2 * h, h, h], 1)
        s1, s2 = torch.sigmoid(ff).split([h, h], 1)  # act(ff_k) = a * (2 * s_k - 1)
        a = self.head_scale
        # in-place steps are safe for autograd: addcmul and lerp do not keep their outputs
        gate = torch.addcmul(t_b, t_a, dt).sigmoid_()
        if self.mode == "no_gate":  # act(ff1) + gate * act(ff2)
            return torch.addcmul(2.0 * a * s1 - a, gate, 2.0 * a * s2 - a)
        # act(ff1) * (1 - gate) + gate * act(ff2) = a * (2 * lerp(s1, s2, gate) - 1)
        return torch.lerp(s1, s2, gate.to(s1.dtype)).mul_(2.0 * a).sub_(a)


def fake_quant_state(x: torch.Tensor, a: float) -> torch.Tensor:
    """x on the int8 engine's state grid, y = (x / a + 1) / 2 in steps of 1/127, with a
    straight-through gradient."""
    y = (x / a + 1.0) * 0.5
    q = a * (2.0 * torch.floor(y * 127.0 + 0.5) / 127.0 - 1.0)
    return x + (q - x).detach()


def fake_quant_act(z: torch.Tensor, scale: float, relu: bool) -> torch.Tensor:
    """z on an int8 grid of step `scale` ([0, 127] after a ReLU), straight-through."""
    q = torch.clamp(torch.round(z / scale), 0 if relu else -127, 127) * scale
    return z + (q - z).detach()


class LSTMMemory(nn.Module):
    """The mixed-memory LSTM that runs before the CfC update at every step (ncps layout)."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.input_map = nn.Linear(input_size, 4 * hidden)
        self.recurrent_map = nn.Linear(hidden, 4 * hidden, bias=False)
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.uniform_(self.input_map.bias, -0.1, 0.1)
        nn.init.orthogonal_(self.recurrent_map.weight)

    def step(self, pre: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`pre` is input_map(x_t), computed for all steps up front."""
        z = torch.addmm(pre, h, self.recurrent_map.weight.t())
        i, ig, fg, og = z.chunk(4, 1)
        c = c * torch.sigmoid(fg + 1.0) + torch.tanh(i) * torch.sigmoid(ig)
        return torch.tanh(c) * torch.sigmoid(og), c


class CfC(nn.Module):
    """A stack of CfC cells run over a sequence; cell k>0 reads cell k-1's new state.

    A plain CfC is one cell with a backbone; the NCP-wired CfC is three wired cells
    (inter, command, motor) without backbone. The output is the last cell's state.
    """

    def __init__(self, cells: list[CfCCell], mixed_memory: bool = False):
        super().__init__()
        self.cells = nn.ModuleList(cells)
        self.sizes = [c.hidden for c in cells]
        self.state_size = sum(self.sizes)
        self.output_size = self.sizes[-1]
        self.input_size = cells[0].input_size
        self.lstm = LSTMMemory(self.input_size, self.state_size) if mixed_memory else None

    def input_linears(self) -> list[tuple[nn.Linear, int, torch.Tensor | None]]:
        """Every Linear that reads the inputs: (it, how many of its first columns do, the wiring
        mask its weight is multiplied by, if any): the first cell's first product (its backbone's
        first layer, or a wired cell's heads) and the mixed memory's input map. (Rewriting these
        rewrites what the model takes as input.)"""
        cell = self.cells[0]
        if len(cell.backbone):
            found = [(cell.backbone[0], cell.n_in, None)]
        else:  # wired heads: ff1 and ff2 through the sparsity mask
            found = [
                (getattr(cell, n), cell.n_in, cell.sparsity_mask if n in ("ff1", "ff2") else None)
                for n in HEADS
                if hasattr(cell, n)
            ]
        return found + ([(self.lstm.input_map, self.input_size, None)] if self.lstm is not None else [])

    def forward(
        self,
        x: torch.Tensor,
        dt: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_sequences: bool = False,
        trace: dict[str, list] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """x: (batch, time, features); dt, mask: (batch, time). Returns (outputs, final state).

        Where mask is False the state is carried over unchanged, so the final state is the
        state after the last valid step. outputs is (batch, time, out) or None. `trace`
        (a dict) collects per step every cell's state and backbone activations (see
        `SequenceModel.capture`).
        """
        batch, steps, _ = x.shape
        # Per-step views come from unbind(): indexing a hoisted tensor inside the loop would
        # make autograd materialise a full-size zero gradient at every step (O(T^2)).
        dts = (
            torch.ones(steps, batch, 1, dtype=x.dtype, device=x.device).unbind(0)
            if dt is None
            else dt.to(x.dtype).t().unsqueeze(-1).contiguous().unbind(0)
        )
        masks = None if mask is None else mask.t().unsqueeze(-1).contiguous().unbind(0)

        w_in, w_rec0, b0 = self.cells[0].first_params()
        # the input half of cell 0 for all steps in one product; per-step slices are strided
        # views (addmm reads them as they are; a time-major copy would cost more than it saves)
        u0 = (x + b0 if w_in is None else F.linear(x, w_in, b0)).unbind(1)
        plan = []  # per cell: (w_input^T, w_state^T, bias, backbone (W^T, b) list, heads (W^T, b)), contiguous
        for k, cell in enumerate(self.cells):
            wi, wr, b = (None, w_rec0, None) if k == 0 else cell.first_params()
            rest = [(layer.weight.t().contiguous(), layer.bias) for layer in cell.backbone[1:]]
            heads = cell.head_params() if len(cell.backbone) else None
            basis = None if cell.head_basis is None else cell.head_basis.weight.t().contiguous()
            plan.append(
                (
                    None if wi is None else wi.t().contiguous(),
                    wr.t().contiguous(),
                    b,
                    rest,
                    None if heads is None else (heads[0].t().contiguous(), heads[1], basis),
                )
            )
        lstm_pre: tuple[torch.Tensor, ...] = ()
        if self.lstm is not None:
            lstm_pre = F.linear(x, self.lstm.input_map.weight, self.lstm.input_map.bias).unbind(1)

        states = [x.new_zeros(batch, n) for n in self.sizes]
        c = x.new_zeros(batch, self.state_size) if self.lstm else None
        outputs = []
        for t in range(steps):
            dt_t = dts[t]
            if self.lstm is not None:
                assert c is not None
                h_all, c_new = self.lstm.step(lstm_pre[t], torch.cat(states, 1), c)
                c = c_new if masks is None else torch.where(masks[t], c_new, c)
                states = list(h_all.split(self.sizes, 1))
            inp = None
            for k, (cell, (wi_t, wr_t, b, rest, heads)) in enumerate(zip(self.cells, plan)):
                fq = cell.fake_quant
                state_in = states[k] if fq is None else fake_quant_state(states[k], cell.head_scale)
                if k == 0:
                    pre = torch.addmm(u0[t], state_in, wr_t)
                else:
                    inp_in = inp if fq is None else fake_quant_state(inp, self.cells[k - 1].head_scale)
                    pre = torch.addmm(torch.addmm(b, inp_in, wi_t), state_in, wr_t)
                if heads is not None:  # backbone: activation, further layers, then the fused heads
                    if trace is not None:
                        trace.setdefault(f"cells.{k}.backbone.0.linear", []).append(pre)
                    z = cell.act(pre)
                    if fq is not None:
                        z = fake_quant_act(z, fq["acts"][0], isinstance(cell.act, nn.ReLU))
                    if trace is not None:
                        trace.setdefault(f"cells.{k}.backbone.0", []).append(z)
                    for j, (w_t, bias) in enumerate(rest, 1):
                        z = torch.addmm(bias, z, w_t)
                        if trace is not None:
                            trace.setdefault(f"cells.{k}.backbone.{j}.linear", []).append(z)
                        z = cell.act(z)
                        if fq is not None:
                            z = fake_quant_act(z, fq["acts"][j], isinstance(cell.act, nn.ReLU))
                        if cell.dropout is not None:
                            z = cell.dropout(z)
                        if trace is not None:
                            trace.setdefault(f"cells.{k}.backbone.{j}", []).append(z)
                    if heads[2] is not None:  # rank-factored heads: the shared factor first
                        z = z.mm(heads[2])
                    pre = torch.addmm(heads[1], z, heads[0])
                if trace is not None:
                    trace.setdefault(f"cells.{k}.heads", []).append(pre)
                new = cell.combine(pre, dt_t)
                if masks is not None:
                    new = torch.where(masks[t], new, states[k])
                states[k] = new
                inp = new
                if trace is not None:
                    trace.setdefault(f"cells.{k}.state", []).append(new)
            if return_sequences:
                outputs.append(states[-1])
        out = torch.stack(outputs, 1) if return_sequences else None
        return out, states[-1]
