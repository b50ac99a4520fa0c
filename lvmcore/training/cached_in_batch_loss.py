"""In-batch InfoNCE with a trainable payload tower, by gradient caching: `two_tower_step`.

The same loss and negatives as `in_batch_loss.py`:

    L = -1/B * sum_i log( exp(cos(p_i, e(t_i)) / tau) / sum_j exp(cos(p_i, e(t_j)) / tau) )

with e = `model.encode_bank`, the payload tower, so the target columns carry gradients too; each
positive sees `B * (1 + k) - 1` negatives (every target and hard negative of the effective batch
over all ranks, but its own target).

Inputs: contexts (B, C, D), targets (B, D) raw payload vectors, hard_negatives (B, k, D) or None;
`gather` must pass gradients back to the rank that owns each row (train.ddp.all_gather_rows does).

Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup", arXiv:2101.06983), the scheme of sentence-transformers'
`CachedMultipleNegativesRankingLoss`, gives the big-batch gradient in micro-batch memory; its three
steps are in `grad_cache.py`: (1) embed without a graph, (2) the full-batch loss on the cached
embeddings, backpropagated only as far as them, (3) re-embed with a graph under the replayed RNG
state and backpropagate the cached gradients into the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from lvmcore.training.loss_common import DEFAULT_TEMPERATURE, Gather, StepLoss, local_gather
from lvmcore.training.grad_cache import backprop_cached, embed_without_graph
from lvmcore.training.in_batch_loss import info_nce, target_columns


def two_tower_step(
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
    """Backpropagate InfoNCE of one effective batch when targets go through `model.encode_bank`, by gradient caching.

    contexts (B, C, D), targets (B, D), hard_negatives (B, k, D) or None; `gather` must pass
    gradients back to the rank that owns each row (train.ddp.all_gather_rows does).
    """
    count, dim = targets.shape
    bank_inputs = targets if hard_negatives is None else torch.cat([targets, hard_negatives.reshape(-1, dim)])  # (B*(1+k), D)
    # (1) embed everything without a graph
    predictions, prediction_replays = embed_without_graph(model, contexts, micro_batch_size, autocast)  # (B, D)
    encoded, bank_replays = embed_without_graph(model.encode_bank, bank_inputs, micro_batch_size, autocast)  # (B*(1+k), D)
    # (2) full-batch loss on the cached embeddings, gradients stop at the embeddings
    predictions.requires_grad_(True)
    encoded.requires_grad_(True)
    negatives = encoded[count:] if hard_negatives is not None else None
    columns, offset = target_columns(encoded[:count], negatives, gather)  # (N, D)
    labels = torch.arange(count, device=columns.device) + offset  # (B,)
    loss = info_nce(predictions, columns, labels, temperature)
    loss.backward()
    assert predictions.grad is not None and encoded.grad is not None
    # (3) re-embed with a graph and push the cached gradients into the weights
    backprop_cached(model, contexts, predictions.grad, prediction_replays, autocast)
    backprop_cached(model.encode_bank, bank_inputs, encoded.grad, bank_replays, autocast)
    return StepLoss(
        loss=float(loss.detach()), positives=count, negatives_per_positive=int(columns.shape[0]) - 1, bank_size=int(columns.shape[0])
    )
