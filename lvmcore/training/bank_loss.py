"""Masked bank InfoNCE, one tower (`--loss bank`, the default): `bank_info_nce`, `one_tower_bank_step`.

Each prediction is scored against a BANK of payload chunks instead of the batch's targets, with
some columns masked:

    L = -1/B * sum_i log( exp(s_i,pos(i)) / sum_{j in bank, j not in M_i} exp(s_ij) ),   s_ij = cos(p_i, b_j) / tau

b_j is bank column j, pos(i) the column of window i's target row, and M_i the masked columns of
window i (`bank_mask`): every column whose key is one of window i's C context keys (the chunks the
model just read: the bank holds the last of them at cosine 1 to a copy-last prediction, so unmasked
they are the hardest "negatives" and push the prediction away from the context it should start
from), and every column other than pos(i) that holds the TARGET's key (a duplicated payload row of
the next chunk is not a negative). Masking is by key, the payload row's identity, never by vector
equality. A masked column gets logit -inf: it has no weight in the softmax and receives no
gradient. (The prototype measured on the embedded bank that the unmasked bank hurts, and that
adding the context chunks as extra negatives instead of masking them drops R@5 from 31.4% to 12.4%.)

The bank (`BankBatch`) is either
* the full bank (`bank_negatives` 0): every payload row of the training articles, one exact
  softmax over all K of them (7,285 columns on the embedded bank); or
* a sampled bank (`bank_negatives` S > 0, for banks that do not fit: 584,545 chunks at seed
  scale): the effective batch's own targets (gathered over ranks, so they are positives and each
  other's negatives as in the in-batch loss) followed by S payload rows drawn per step
  (`lvmcore.training.negatives.sample_bank_rows`). K = W*B + S.

Negatives: window i sees K - 1 - |M_i|. With unique payload keys |M_i| <= C, so every positive sees
at least K - 1 - C: 7,285 - 6 = 7,279 over the full embedded bank, and W*B + S - 1 - C with the
sampled bank (1,024 + 16,384 - 6 = 17,402 for 256 x 4 and S = 16,384).
`StepLoss.negatives_per_positive` is the minimum over the step's positives, read from the mask
itself, `masked_per_positive` the mean |M_i|, `bank_size` K; the floor a run's config guarantees is
`lvmcore.training.negatives.expected_negatives_per_positive`.

Papers: the sampled-softmax / "global negatives" family: Jean et al. 2015 ("On Using Very Large
Target Vocabulary for Neural Machine Translation", arXiv:1412.2007) for a softmax over a sampled
subset of a large output vocabulary, Xiong et al. 2021 (ANCE, arXiv:2007.00808) and Izacard et al.
2022 (Contriever, arXiv:2112.09118: a bank of negatives beyond the batch) for retrieval; the masking
of known false negatives follows Chen et al. 2022 ("Incremental False Negative Detection for
Contrastive Learning", arXiv:2106.03719) and the duplicate-aware hits of this project.

Inputs: contexts (B, C, D), targets (B, D) (columns of the sampled bank), a `BankBatch`. Every
micro-batch scores its predictions against all K columns and backpropagates its share of the mean,
so the gradient equals one batch of B. With a trainable payload tower the same loss is
`cached_bank_loss.two_tower_bank_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lvmcore.training.loss_common import DEFAULT_TEMPERATURE, Gather, StepLoss, local_gather, micro_slices


@dataclass(frozen=True)
class BankBatch:
    """One step's bank and what the mask needs about this process's windows.

    vectors (K_b, D): the bank's payload vectors, raw (a two-tower model encodes them); codes (K_b,)
    int64: their packed keys (`lvmcore.keys.pack_keys`). context_codes (B, C) and target_codes (B,):
    the keys of each window's context chunks and target. positive_columns (B,): the column of each
    window's target row in `vectors` (full bank), or None: the sampled bank, whose columns are the
    gathered batch targets followed by `vectors`, window i's positive being its own target.
    """

    vectors: Tensor  # (K_b, D)
    codes: Tensor  # (K_b,) int64
    context_codes: Tensor  # (B, C) int64
    target_codes: Tensor  # (B,) int64
    positive_columns: Tensor | None = None  # (B,) int64, full bank only

    @property
    def sampled(self) -> bool:
        return self.positive_columns is None


def bank_mask(column_codes: Tensor, positive_columns: Tensor, context_codes: Tensor, target_codes: Tensor) -> Tensor:
    """(B, K) bool, True where window i must not score column j: j holds one of i's context keys,
    or j holds i's target key and is not i's positive. The positive itself is never masked.

    column_codes (K,), positive_columns (B,), context_codes (B, C), target_codes (B,), all int64.
    Sorted search, not a (B, K, C) comparison, so it costs O((K + B C m) log K) for a key held by
    at most m columns, whatever the bank size.
    """
    count, columns = positive_columns.shape[0], column_codes.shape[0]
    order = torch.argsort(column_codes)  # (K,)
    sorted_codes = column_codes[order]  # (K,)
    queries = torch.cat([context_codes, target_codes[:, None]], dim=1)  # (B, C+1)
    low = torch.searchsorted(sorted_codes, queries)  # (B, C+1) first column with the key
    high = torch.searchsorted(sorted_codes, queries, right=True)  # (B, C+1) one past the last
    mask = torch.zeros(count, columns, dtype=torch.bool, device=column_codes.device)  # (B, K)
    windows = torch.arange(count, device=column_codes.device)[:, None].expand_as(low)  # (B, C+1)
    for offset in range(int((high - low).max()) if queries.numel() else 0):  # m passes; m = 1 for unique keys
        present = low + offset < high  # (B, C+1)
        hit_columns = order[(low + offset).clamp(max=columns - 1)]  # (B, C+1)
        mask[windows[present], hit_columns[present]] = True
    mask[torch.arange(count, device=mask.device), positive_columns] = False
    return mask


def bank_info_nce(
    predictions: Tensor, columns: Tensor, labels: Tensor, mask: Tensor, temperature: float = DEFAULT_TEMPERATURE
) -> Tensor:
    """Mean masked InfoNCE of predictions (B, D) against bank columns (K, D); labels (B,) index the positive.

    mask (B, K) bool: True columns are set to -inf before the softmax, so they neither count in
    the denominator nor receive a gradient. Cosine over the temperature, in float32.
    """
    p = F.normalize(predictions.float(), dim=-1)  # (B, D)
    t = F.normalize(columns.float(), dim=-1)  # (K, D)
    logits = (p @ t.T / temperature).masked_fill(mask, float("-inf"))  # (B, K)
    return F.cross_entropy(logits, labels)


def bank_labels_and_codes(bank: BankBatch, count: int, gather: Gather) -> tuple[Tensor, Tensor, Tensor | None, int]:
    """The positive column of each of this process's windows, every column's code, and (sampled bank)
    the gathered target codes and this process's offset among them."""
    if not bank.sampled:
        assert bank.positive_columns is not None
        return bank.positive_columns, bank.codes, None, 0
    all_target_codes, offset = gather(bank.target_codes)  # (W*B,)
    labels = torch.arange(count, device=bank.codes.device) + offset  # (B,)
    return labels, torch.cat([all_target_codes, bank.codes]), all_target_codes, offset


def mask_summary(masks: list[Tensor], columns: int) -> tuple[int, float]:
    """(fewest unmasked negatives of any positive, mean masked columns) over the micro-batches' masks."""
    masked = torch.cat([m.sum(dim=1) for m in masks])  # (B,)
    return int(columns - 1 - int(masked.max())), float(masked.float().mean())


def one_tower_bank_step(
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
    """Backpropagate the masked bank InfoNCE of one effective batch, micro-batch by micro-batch.

    contexts (B, C, D), targets (B, D) (columns of the sampled bank; unused by the full bank, whose
    positives are bank rows). Every micro-batch scores its predictions against all K columns and
    backpropagates its share of the mean, so the gradient equals one batch of B.
    """
    count = contexts.shape[0]
    labels, column_codes, _, _ = bank_labels_and_codes(bank, count, gather)
    with torch.no_grad():
        columns = torch.cat([gather(targets)[0], bank.vectors]) if bank.sampled else bank.vectors  # (K, D)
    total, masks = 0.0, []
    for part in micro_slices(count, micro_batch_size):
        mask = bank_mask(column_codes, labels[part], bank.context_codes[part], bank.target_codes[part])  # (b, K)
        with autocast():
            predictions = model(contexts[part])  # (b, D)
        loss = bank_info_nce(predictions, columns, labels[part], mask, temperature) * ((part.stop - part.start) / count)
        loss.backward()
        total += float(loss.detach())
        masks.append(mask)
    fewest, masked = mask_summary(masks, int(columns.shape[0]))
    return StepLoss(loss=total, positives=count, negatives_per_positive=fewest, bank_size=int(columns.shape[0]), masked_per_positive=masked)
