"""Where and how fast torch runs: device choice, thread count, seeding, and which process
of a torchrun world this is (read from the environment: who prints and writes)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cfctool.errors import CfcError, ConfigError
from cfctool.settings import MAX_THREADS


def check_threads(n: int | None) -> None:
    if n is not None and n < 1:
        raise ConfigError(f"--threads must be >= 1 (got {n})")
    if n is not None and n > MAX_THREADS:
        raise ConfigError(
            f"--threads must be from 1 to {MAX_THREADS} (got {n:,}); this machine has {os.cpu_count()} CPUs"
        )


def resolve_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda (got '{name}')")
    if name == "cuda" and not torch.cuda.is_available():
        raise CfcError("--device cuda was asked for but no CUDA GPU is available here; use --device cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def threads(n: int | None):
    """Run with `n` intra-op threads (None: leave torch's choice), restoring the previous count."""
    if n is None:
        yield
        return
    check_threads(n)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def machine() -> dict:
    """The CPU, core count and versions a measurement ran on: speed ratios differ between
    CPUs (AMX vs AVX-512 bf16, cache sizes), so every timing report carries this."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> World | None:
    """The world torchrun described in the environment, or None for a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    try:
        return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise ConfigError(
            "WORLD_SIZE > 1 but RANK is not set: start data-parallel runs with torchrun "
            "(torchrun --nproc-per-node N -m cfctool train ...)"
        ) from None


def is_main() -> bool:
    """True unless this is a non-zero rank of a torchrun world: who prints and writes."""
    world = launched()
    return world is None or world.main


def world_size() -> int:
    world = launched()
    return 1 if world is None else world.size
