"""Validation after each epoch: InfoNCE, cosine, and retrieval R@1/R@5 over the WHOLE payload, hits by key.

`best.pt` is chosen the way the gate judges a model (BEST_BY): by how surely it beats copying, the
lower bound of the paired 95% interval of (model - copy-last) hit@5 over the validation windows,
each window's own context chunks excluded from its candidates (`val_excluded_over_copy_last_low`).
Raw R@5 rewards copying (copy-last's rank 1 is always its own last chunk) and picked the copier-like
first epoch of the default recipe; the excluded R@5 alone tied it with the next epoch. Cosine is
reported beside them, never used to choose (FAILURE_MODES row 15).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lvmcore.search.exact import exact_search
from lvmcore.training.in_batch_loss import info_nce
from lvmcore.gate.intervals import paired_difference
from lvmcore.gate.metrics import exclude_context, separation
from lvmcore.artifacts.payload import Payload
from lvmcore.gate.predict import encode_bank, predict
from lvmcore.search.hits import first_hit_rank, hits_at, key_hits, recall_at
from lvmcore.artifacts.training_data import TrainingData

RETRIEVAL_K = 5
BEST_BY = "val_excluded_over_copy_last_low"  # the figure best.pt is chosen by (recorded in history.json and the checkpoint)
EXCLUDE_MARGIN = 8  # extra results per window beyond K + C, for context keys held by several payload rows


def validation_rows(count: int, limit: int, seed: int) -> np.ndarray:
    """All window rows, or a seeded sorted sample of `limit` of them (the same every epoch)."""
    if limit <= 0 or count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, 0xFA1]).choice(count, size=limit, replace=False))


def validate(
    model: nn.Module,
    data: TrainingData,
    payload: Payload,
    *,
    batch_size: int,
    temperature: float,
    max_windows: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """val_loss, val_cosine, val_r_at_1, val_r_at_5, val_delta, val_auc and the number of windows behind them.

    All on held-out validation documents, never on training rows (FAILURE_MODES row 8: a
    separation of 0.37 and an AUC of 0.998 measured on rows the model had seen, next to 0% retrieval).
    val_delta is mean cos(pred, own target) minus mean cos(pred, other targets); val_auc the
    empirical AUC of those two score sets (`lvmcore.gate.metrics.separation`).

    val_loss is InfoNCE over consecutive blocks of `batch_size` validation windows (the training
    effective batch), so it is comparable to the training loss. Retrieval searches every payload
    row exactly (a two-tower model's payload tower encodes the bank first).
    """
    rows = validation_rows(data.count, max_windows, seed)
    contexts, targets = data.batch(rows)  # (M, C, D), (M, D)
    predictions = predict(model, contexts)  # (M, D)
    encoded_targets = encode_bank(model, targets)  # (M, D)
    unit_targets = encoded_targets / np.maximum(np.linalg.norm(encoded_targets, axis=1, keepdims=True), 1e-12)
    unit_predictions = predictions / np.maximum(np.linalg.norm(predictions, axis=1, keepdims=True), 1e-12)
    cosine = float(np.mean(np.sum(unit_predictions * unit_targets, axis=1)))

    losses, weights = [], []
    for start in range(0, len(rows), batch_size):
        block = slice(start, min(start + batch_size, len(rows)))
        if block.stop - block.start < 2:
            continue  # one window has no negative
        p = torch.from_numpy(predictions[block])
        t = torch.from_numpy(encoded_targets[block])
        losses.append(float(info_nce(p, t, torch.arange(block.stop - block.start), temperature)))
        weights.append(block.stop - block.start)
    loss = float(np.average(losses, weights=weights)) if losses else float("nan")

    bank = encode_bank(model, payload.vectors)  # (N, D); the payload itself for a one-tower model
    depth = RETRIEVAL_K + data.context_length + EXCLUDE_MARGIN  # deep enough to drop the window's own context and keep K
    _, retrieved = exact_search(bank, predictions, depth)  # (M, depth) payload rows
    truth = data.truth_keys[rows]
    ranks = first_hit_rank(key_hits(retrieved[:, :RETRIEVAL_K], payload.keys, truth))
    excluded = exclude_context(retrieved, payload.keys, data.context_keys[rows], k=RETRIEVAL_K)  # (M, K)
    excluded_ranks = first_hit_rank(key_hits(excluded, payload.keys, truth))
    copy_last = contexts[:, -1, :]  # (M, D): the baseline a next-chunk model must beat, searched in the raw payload
    _, copied = exact_search(payload.vectors, copy_last, depth)
    copy_ranks = first_hit_rank(key_hits(exclude_context(copied, payload.keys, data.context_keys[rows], k=RETRIEVAL_K), payload.keys, truth))
    over_copy = paired_difference(hits_at(excluded_ranks, RETRIEVAL_K), hits_at(copy_ranks, RETRIEVAL_K), seed=seed)
    split = separation(predictions, encoded_targets, seed=seed)
    return {
        "val_loss": loss,
        "val_cosine": cosine,
        "val_r_at_1": recall_at(ranks, 1),
        "val_r_at_5": recall_at(ranks, 5),
        "val_excluded_r_at_5": recall_at(excluded_ranks, 5),
        "val_copy_last_excluded_r_at_5": recall_at(copy_ranks, 5),
        "val_excluded_over_copy_last_low": over_copy.interval.low,
        "val_delta": split.delta,
        "val_auc": split.auc,
        "val_windows": int(len(rows)),
    }
