"""Parameter counts of small models, computed by hand."""

import torch

from cfctool.families.build import build_model
from cfctool.metrics import parameter_counts

TASK = {"dataset": "xor", "input": {"kind": "features", "size": 3},
        "output": {"kind": "classification", "size": 2, "per_step": False}}


def test_cfc_counts_by_hand():
    arch = dict(name="cfc", hidden=4, mode="default", backbone_units=5, backbone_layers=1,
                backbone_activation="relu", backbone_dropout=0.0, mixed_memory=False)
    counts = parameter_counts(build_model(arch, TASK))
    backbone = (3 + 4) * 5 + 5
    heads = 4 * (5 * 4 + 4)
    head = 4 * 2 + 2
    assert counts["rnn_params"] == backbone + heads
    assert counts["params"] == backbone + heads + head
    assert counts["nonzero_params"] == counts["params"]


def test_ncp_nonzeros_follow_the_wiring():
    arch = dict(name="cfc-ncp", hidden=10, mode="default", sparsity=0.5, wiring_seed=1, motor=2, mixed_memory=False)
    model = build_model(arch, TASK)
    counts = parameter_counts(model)
    masked_out = 0
    for cell in model.rnn.cells:
        masked_out += 2 * int((cell.sparsity_mask == 0).sum())  # ff1 and ff2 weights outside the wiring
    assert counts["nonzero_params"] == counts["params"] - masked_out
    assert masked_out > 0
    with torch.no_grad():
        model.head.weight.zero_()
    assert parameter_counts(model)["nonzero_params"] == counts["nonzero_params"] - 2 * 2
