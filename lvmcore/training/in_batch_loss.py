"""In-batch InfoNCE over the EFFECTIVE batch, one tower (`--loss in_batch`): `info_nce`, `one_tower_step`.

The loss (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding",
arXiv:1807.03748; the in-batch form of Henderson et al. 2017, arXiv:1705.00652, section 4.4):

    L = -1/B * sum_i log( exp(cos(p_i, t_i) / tau) / sum_j exp(cos(p_i, t_j) / tau) )

p_i is the model's prediction for window i, t_i its true next chunk, and j runs over EVERY target
column of the effective batch: all B = batch_size x accumulation x world_size targets, plus k
same-document hard negatives per window when asked for.

Negatives: each positive sees `B * (1 + k) - 1`; with 256 x 4 accumulation on one process and no
hard negatives that is 1,023, not the 255 a per-micro-batch loss would give. The count returned in
`StepLoss` is read from the score matrix's real shape, never from the config.

Inputs: contexts (B, C, D), targets (B, D) fixed payload vectors, hard_negatives (B, k, D) or None.
One tower: all targets are known up front, so each micro-batch scores its predictions against ALL
target columns (labels offset by the micro-batch's position and this rank's block) and
backpropagates its share `len(micro) / B` of the mean; the sum of the micro-batch gradients is
exactly the big-batch gradient. The step calls `backward()` itself; the optimizer step, clipping
and gradient averaging belong to the loop. When targets pass through a trainable payload tower,
the same loss is `cached_in_batch_loss.two_tower_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lvmcore.training.loss_common import DEFAULT_TEMPERATURE, Gather, StepLoss, local_gather, micro_slices


def info_nce(predictions: Tensor, targets: Tensor, labels: Tensor, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Mean InfoNCE of predictions (B, D) against target columns (N, D); labels (B,) index the positive.

    Both sides are L2-normalized in float32 (an all-zero row stays zero: no NaN), so the score is
    the cosine over the temperature.
    """
    p = F.normalize(predictions.float(), dim=-1)  # (B, D)
    t = F.normalize(targets.float(), dim=-1)  # (N, D)
    logits = p @ t.T / temperature  # (B, N)
    return F.cross_entropy(logits, labels)


def target_columns(targets: Tensor, hard_negatives: Tensor | None, gather: Gather) -> tuple[Tensor, int]:
    """Every rank's targets, then every rank's hard negatives: (W*B*(1+k), D) and this rank's label offset."""
    all_targets, offset = gather(targets)  # (W*B, D)
    if hard_negatives is None or hard_negatives.shape[0] == 0:
        return all_targets, offset
    all_negatives, _ = gather(hard_negatives)  # (W*B*k, D)
    return torch.cat([all_targets, all_negatives]), offset


def one_tower_step(
    model: nn.Module,
    contexts: Tensor,
    targets: Tensor,
    *,
    micro_batch_size: int,
    temperature: float = DEFAULT_TEMPERATURE,
    hard_negatives: Tensor | None = None,
    gather: Gather = local_gather,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> StepLoss:
    """Backpropagate InfoNCE of one effective batch, micro-batch by micro-batch; targets are fixed vectors.

    contexts (B, C, D), targets (B, D), hard_negatives (B, k, D) or None. Every micro-batch is
    scored against all W*B*(1+k) target columns, so the gradients left on the model equal those of
    one batch of B (test_loss.py checks this to 1e-5).
    """
    count, dim = targets.shape
    with torch.no_grad():
        negatives = None if hard_negatives is None else hard_negatives.reshape(-1, dim)  # (B*k, D)
        columns, offset = target_columns(targets, negatives, gather)  # (N, D)
    total = 0.0
    for part in micro_slices(count, micro_batch_size):
        with autocast():
            predictions = model(contexts[part])  # (b, D)
        labels = torch.arange(part.start, part.stop, device=columns.device) + offset  # (b,)
        loss = info_nce(predictions, columns, labels, temperature) * ((part.stop - part.start) / count)
        loss.backward()
        total += float(loss.detach())
    return StepLoss(loss=total, positives=count, negatives_per_positive=int(columns.shape[0]) - 1, bank_size=int(columns.shape[0]))
