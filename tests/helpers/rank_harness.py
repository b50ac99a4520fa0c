"""The DDP test harness (tests' helper): spawn ranks on a free local port with one thread each, and read rank 0's file;
or simulate two ranks in one process (`rank_gather`), for the loss tests."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable

import torch
import torch.multiprocessing as mp

from lvmcore.training.loss_common import Gather


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_ranks(worker: Callable[..., None], world: int, out: Path, *args: Any) -> dict:
    """Run worker(rank, port, str(out), *args) on `world` spawned ranks with OMP_NUM_THREADS=1; return what rank 0 saved to `out`."""
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # spawned ranks inherit it: two ranks on two cores, not four threads each
    try:
        mp.spawn(worker, args=(free_port(), str(out), *args), nprocs=world, join=True)
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    return torch.load(out, weights_only=True)


def rank_gather(rank: int, others: list[torch.Tensor | Callable[[], torch.Tensor]]) -> Gather:
    """Rank `rank`'s `Gather` in a world of two, simulated in one process: call i returns rank 0's rows then
    rank 1's rows, this rank's being the ones passed in and the other's `others[i]` (a tensor, or a callable
    that computes one), and this rank's offset."""
    queue = list(others)

    def gather(rows: torch.Tensor) -> tuple[torch.Tensor, int]:
        other = queue.pop(0)
        other = other() if callable(other) else other
        return torch.cat([rows, other] if rank == 0 else [other, rows]), rank * rows.shape[0]

    return gather
