"""Data-parallel training under `torchrun` (torch.distributed): the process group, who
writes, and how a global batch is shared.

`torchrun --nproc-per-node N -m cfctool train ...` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous in their environment; `fit()` then joins the group (gloo on
CPU, nccl on CUDA), wraps the model in DistributedDataParallel and gives each rank its
share of every global batch. Every rank shuffles with the same seeded generator, so the
shares partition exactly the batches a one-process run would draw, and each local loss is
weighted by its share of the batch, so DDP's gradient average is the one-process gradient up
to float summation order. Only rank 0 reports progress and writes files (the training state
and the checkpoint). A plain `cfctool ...` run is a world of one and none of this applies.
"""

from __future__ import annotations

import atexit

import torch

from cfctool.runtime import World, launched


def join(device: torch.device | str = "cpu") -> World | None:
    """Join the process group once (idempotent); None when not launched by torchrun."""
    import torch.distributed as dist

    world = launched()
    if world is None:
        return None
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        atexit.register(leave)
    return world


def leave() -> None:
    """Destroy the process group while the interpreter is still whole. Left to interpreter
    teardown, gloo's worker threads can outlive Python and abort the process
    ("terminate called without an active exception", SIGABRT) after a successful run.
    Every rank runs the same collectives in the same order, so none is pending here."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(indices: torch.Tensor, world: World | None) -> torch.Tensor:
    """This rank's part of one global batch (every size-th index from its rank)."""
    return indices if world is None else indices[world.rank :: world.size]


def all_sum(values: list[float], world: World | None) -> list[float]:
    """Element-wise sum over the ranks (the epoch's loss and counts for the history)."""
    if world is None:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
