"""The task-level model: optional token embedding -> recurrent core -> linear readout."""

from __future__ import annotations

import torch
from torch import nn


class SequenceModel(nn.Module):
    """Wraps a recurrent core for one of three outputs.

    - sequence classification / regression: readout of the state after the last valid step
    - per-step classification / regression: readout at every step (`per_step=True`)
    """

    def __init__(
        self,
        rnn: nn.Module,
        n_outputs: int,
        per_step: bool,
        vocab_size: int | None = None,
        embedding_dim: int | None = None,
        embedding_dropout: float = 0.0,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if vocab_size else None
        if self.embedding is not None:
            # small uniform init (Keras' default, the reference setting): with Adam's per-step
            # moves of ~lr, N(0, 1) rows would barely leave their random start
            nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        # whole-vector dropout on embedded tokens (the reference's `embed_dr`); identity in eval
        self.embedding_dropout = nn.Dropout(embedding_dropout) if embedding_dropout > 0 else None
        self.rnn = rnn
        self.head = nn.Linear(rnn.output_size, n_outputs)
        self.per_step = per_step
        self.family = ""  # the arch name; set by families.build.build_model

    def forward(
        self, x: torch.Tensor, dt: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x)
            if self.embedding_dropout is not None:
                x = self.embedding_dropout(x)
        outputs, last = self.rnn(x, dt, mask, return_sequences=self.per_step)
        return self.head(outputs if self.per_step else last)

    @torch.no_grad()
    def capture(
        self, x: torch.Tensor, dt: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-step internals for one batch, each (batch, time, units), computed by the same
        loop as `forward`: 'cells.K.state' (cell K's state after each step; carried over
        on masked steps), 'cells.K.heads' (the heads' outputs, columns [2c ff1, 2c ff2,
        time_a, time_b] as `CfCCell.head_params`) and, for cells with a backbone,
        'cells.K.backbone.J' (layer J's activations) and 'cells.K.backbone.J.linear' (its
        pre-activations); Neural ODEs add 'cells.0.nonlinearity' (f at each step's start) and,
        for images, 'cells.0.initial' (x(0), one step). The snapshots of POD, the activations of APoZ scores, the ranges
        of quantization."""
        was_training = self.training
        self.eval()
        trace: dict[str, list] = {}
        try:
            feats = self.embedding(x) if self.embedding is not None else x
            self.rnn(feats, dt, mask, trace=trace)
        finally:
            self.train(was_training)
        return {name: torch.stack(steps, 1) for name, steps in trace.items()}
