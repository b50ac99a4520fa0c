"""What every loss step shares: the temperature, the gather over processes, the step's record, micro-batches.

`Gather` is how negatives grow with the world size: a callable that concatenates every rank's rows
(`train.ddp.all_gather_rows`, gradient-correct, so a two-tower step's gradients reach the rank that
owns each row) and says where this rank's block starts; `local_gather` is the one-process case.
Every step function returns a `StepLoss` whose counts are read from the tensors it scored, never
from the config (the run's guaranteed floor is `lvmcore.training.negatives`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

DEFAULT_TEMPERATURE = 0.07


Gather = Callable[[Tensor], tuple[Tensor, int]]  # rows of every rank, and the row offset of this rank's block


def local_gather(rows: Tensor) -> tuple[Tensor, int]:
    """The single-process `Gather`: this process's rows are all the rows, starting at 0."""
    return rows, 0


@dataclass(frozen=True)
class StepLoss:
    """What one optimizer step's loss saw, measured from the tensors it scored."""

    loss: float  # mean InfoNCE over this process's positives
    positives: int  # positives scored by this process in this step
    negatives_per_positive: int  # the fewest unmasked columns other than its positive that any positive saw
    bank_size: int = 0  # columns each positive was scored against (masked ones included)
    masked_per_positive: float = 0.0  # mean masked columns per positive (0 for the in-batch loss)


def micro_slices(count: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` rows covering `count` rows."""
    if size < 1:
        raise ValueError(f"micro-batch size must be >= 1, got {size}")
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]
