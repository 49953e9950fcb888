"""The nn.Modules of each family and their inference forms (torch-free to import: the
families read HEADS without loading torch)."""

# the heads of a CfC cell, in the order of its fused product (`CfCCell.head_params`): the folded
# and int8 engines, quantization ranges, pruning scopes and unit groups all read this one list
HEADS = ("ff1", "ff2", "time_a", "time_b")
