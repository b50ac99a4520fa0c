"""Masked bank InfoNCE with a trainable payload tower, by gradient caching: `two_tower_bank_step`.

The same loss, mask and negatives as `bank_loss.py`, with every bank column b_j passed through
`model.encode_bank`:

    L = -1/B * sum_i log( exp(s_i,pos(i)) / sum_{j not in M_i} exp(s_ij) ),   s_ij = cos(p_i, e(b_j)) / tau

window i sees K - 1 - |M_i| negatives (at least K - 1 - C with unique payload keys). Papers: those
of `bank_loss.py` for the loss, Gao et al. 2021 (arXiv:2101.06983) for the caching (`grad_cache.py`):
(1) predictions and encoded columns without a graph, (2) the loss in blocks of `micro_batch_size`
rows on the cached embeddings, gradients stopping there, (3) re-embedding with a graph under the
replayed RNG states and backpropagating the cached gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from lvmcore.training.bank_loss import BankBatch, bank_info_nce, bank_labels_and_codes, bank_mask, mask_summary
from lvmcore.training.loss_common import DEFAULT_TEMPERATURE, Gather, StepLoss, local_gather, micro_slices
from lvmcore.training.grad_cache import backprop_cached, embed_without_graph


def two_tower_bank_step(
    model: nn.Module,
    contexts: Tensor,
    targets: Tensor,
    bank: BankBatch,
    *,
    micro_batch_size: int,
    temperature: float = DEFAULT_TEMPERATURE,
    gather: Gather = local_gather,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> StepLoss:
    """The masked bank InfoNCE when columns go through `model.encode_bank`, by gradient caching.

    The same three steps as `two_tower_step`, with the bank's K columns as the encoded side:
    (1) predictions and encoded columns without a graph, (2) the loss in blocks of
    `micro_batch_size` rows on the cached embeddings, gradients stopping there, (3) re-embedding
    with a graph under the replayed RNG states and backpropagating the cached gradients.
    """
    count = contexts.shape[0]
    labels, column_codes, _, _ = bank_labels_and_codes(bank, count, gather)
    bank_inputs = torch.cat([targets, bank.vectors]) if bank.sampled else bank.vectors  # (B + K_b, D) or (K_b, D)
    predictions, prediction_replays = embed_without_graph(model, contexts, micro_batch_size, autocast)  # (B, D)
    encoded, bank_replays = embed_without_graph(model.encode_bank, bank_inputs, micro_batch_size, autocast)  # (., D)
    predictions.requires_grad_(True)
    encoded.requires_grad_(True)
    if bank.sampled:
        gathered, _ = gather(encoded[:count])  # (W*B, D), gradient-correct across ranks
        columns = torch.cat([gathered, encoded[count:]])  # (K, D)
    else:
        columns = encoded  # (K, D)
    total, masks = 0.0, []
    for part in micro_slices(count, micro_batch_size):
        mask = bank_mask(column_codes, labels[part], bank.context_codes[part], bank.target_codes[part])  # (b, K)
        loss = bank_info_nce(predictions[part], columns, labels[part], mask, temperature) * ((part.stop - part.start) / count)
        loss.backward(retain_graph=True)  # the graph through the gather and the concatenation is shared by every block
        total += float(loss.detach())
        masks.append(mask)
    assert predictions.grad is not None and encoded.grad is not None
    backprop_cached(model, contexts, predictions.grad, prediction_replays, autocast)
    backprop_cached(model.encode_bank, bank_inputs, encoded.grad, bank_replays, autocast)
    fewest, masked = mask_summary(masks, int(columns.shape[0]))
    return StepLoss(loss=total, positives=count, negatives_per_positive=fewest, bank_size=int(columns.shape[0]), masked_per_positive=masked)
