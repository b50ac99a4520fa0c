"""Data-parallel training under `torchrun`: targets gathered across ranks, so negatives grow with world size.

Each rank scores its own predictions against the target columns of EVERY rank (`all_gather_rows`),
so with W ranks of effective batch B each positive sees W*B - 1 negatives. For the two-tower
model the gather must be gradient-correct: rank r's loss depends on rank s's target embeddings,
so the backward of the gather sums every rank's gradient for a row (all-reduce) and hands each
rank the slice it owns (as sentence-transformers' `all_gather_with_grad`, Gao et al. GradCache).

We average parameter gradients by hand (`average_gradients`) after the accumulation instead of
wrapping the model in DistributedDataParallel: gradient caching runs several forwards per
optimizer step (no-grad, then with grad), which DDP's reducer hooks would have to be told about
with `no_sync` and which buys nothing at C=5. Gloo on CPU, NCCL on CUDA.

Gradient bookkeeping (why the averaged gradient equals one process with the W-times batch): each
rank's loss is the mean over its B positives; the gather's backward sums d loss_r / d t over
ranks r, so rank s's gradient is d(sum_r loss_r)/d theta through its own rows; averaging over W
ranks gives d(mean over all W*B positives)/d theta. tests/test_ddp.py checks this on 2 processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lvmcore.errors import ArtifactError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single process.

    device: "auto" (CUDA if available), "cpu" or "cuda". Backend: NCCL on CUDA, gloo on CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and local_rank >= (torch.cuda.device_count() if torch.cuda.is_available() else 0):
        seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ArtifactError(None, f"--device {device}: this process (local rank {local_rank}) needs GPU {local_rank}, torch sees {seen} GPU(s); use --device cpu")
    target = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _AllGatherRows(torch.autograd.Function):
    """Concatenate every rank's (B, D) rows; backward sums each row's gradient over ranks and returns this rank's."""

    @staticmethod
    def forward(ctx, rows: Tensor) -> Tensor:  # (B, D) -> (W*B, D)
        world, rank = dist.get_world_size(), dist.get_rank()
        rows = rows.contiguous()
        parts = [torch.empty_like(rows) for _ in range(world)]
        dist.all_gather(parts, rows)
        ctx.rank, ctx.count = rank, rows.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # (W*B, D) -> (B, D)
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.count : (ctx.rank + 1) * ctx.count]


def all_gather_rows(rows: Tensor) -> tuple[Tensor, int]:
    """A `lvmcore.training.loss_common.Gather`: every rank's rows (gradient-correct) and this rank's row offset.

    Every rank must pass the same number of rows (the loop drops the last incomplete batch).
    Without a process group it returns the rows unchanged and offset 0.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows, 0
    return _AllGatherRows.apply(rows), dist.get_rank() * rows.shape[0]


def average_gradients(model: nn.Module) -> None:
    """Replace every parameter gradient by its mean over ranks (a no-op on one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad.div_(world)


def broadcast_parameters(model: nn.Module) -> None:
    """Start every rank from rank 0's weights."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of a Python number over ranks, for logging."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / dist.get_world_size()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
