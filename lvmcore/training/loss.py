"""The one loss step the loop calls: `training_step` picks the loss for the model and `--loss`.

One loss per file (as sentence-transformers' `losses/` does), each docstring stating the maths, the
negatives each positive sees, and the papers:

| `--loss` | one tower (fixed payload vectors) | two towers (`model.encode_bank`, by gradient caching) |
|---|---|---|
| `in_batch` | `in_batch_loss.one_tower_step` | `cached_in_batch_loss.two_tower_step` |
| `bank` | `bank_loss.one_tower_bank_step` | `cached_bank_loss.two_tower_bank_step` |

Beside them: `grad_cache.py` (GradCache's three steps), `loss_common.py` (`StepLoss`, `Gather`,
`micro_slices`, the temperature) and `negatives.py` (bank sampling and the negatives every positive
is guaranteed, which a gate check re-reads from there).
"""

from __future__ import annotations

from torch import Tensor, nn

from lvmcore.training.bank_loss import BankBatch, one_tower_bank_step
from lvmcore.training.cached_bank_loss import two_tower_bank_step
from lvmcore.training.cached_in_batch_loss import two_tower_step
from lvmcore.training.in_batch_loss import one_tower_step
from lvmcore.training.loss_common import StepLoss

__all__ = ["training_step"]


def training_step(model: nn.Module, contexts: Tensor, targets: Tensor, *, bank: BankBatch | None = None, **kwargs) -> StepLoss:
    """The loss step for this model and loss: with a `bank`, the bank InfoNCE, else in-batch InfoNCE;
    gradient caching for a model with a trainable payload tower, plain micro-batching otherwise."""
    two_towers = int(getattr(model, "tower_count", 1)) == 2
    if bank is not None:
        if kwargs.pop("hard_negatives", None) is not None:
            raise ValueError("hard negatives are for the in-batch loss: the bank already holds every same-article chunk")
        step = two_tower_bank_step if two_towers else one_tower_bank_step
        return step(model, contexts, targets, bank, **kwargs)
    if two_towers:
        return two_tower_step(model, contexts, targets, **kwargs)
    return one_tower_step(model, contexts, targets, **kwargs)
