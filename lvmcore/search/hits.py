"""Hits and ranks: the one home of deciding a hit and of every figure made from first-hit ranks.

A hit is decided by key (duplicate aware) or by equal vector, never by one payload row id. A query's
first-hit rank (1-based, 0 for none in the list) is all R@K, hits at K, MRR and the recall curve read,
so plumbing, the gate, its report, training's validation and the sharded search compute them here
and nowhere else: a one-line change to a figure changes it everywhere, and tests pin it once.
"""

from __future__ import annotations

import numpy as np

from lvmcore.blocks import take_rows
from lvmcore.keys import pack_keys


def key_hits(retrieved_rows: np.ndarray, payload_keys: np.ndarray, truth_keys: np.ndarray) -> np.ndarray:
    """(M, K) bool: does retrieved row j of query i carry query i's truth key?

    Every payload row with the truth key counts, so a duplicated key cannot hide a hit.
    Rows of -1 (fewer than K results) are misses.
    """
    retrieved_rows = np.asarray(retrieved_rows)
    valid = retrieved_rows >= 0
    retrieved_codes = pack_keys(np.asarray(payload_keys)[np.where(valid, retrieved_rows, 0)])
    truth_codes = pack_keys(truth_keys)[:, None]
    return valid & (retrieved_codes == truth_codes)


def equal_vector_hits(retrieved_rows: np.ndarray, payload_vectors: np.ndarray, truth_vectors: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """(M, K) bool: is retrieved row j of query i the same vector as query i's truth vector?"""
    retrieved_rows = np.asarray(retrieved_rows)
    valid = retrieved_rows >= 0
    flat = np.where(valid, retrieved_rows, 0).reshape(-1)
    order = np.argsort(flat)
    gathered = np.empty((len(flat), payload_vectors.shape[1]), dtype=np.float32)
    gathered[order] = take_rows(payload_vectors, flat[order])
    gathered = gathered.reshape(*retrieved_rows.shape, -1)
    same = np.abs(gathered - np.asarray(truth_vectors)[:, None, :]).max(axis=-1) <= atol
    return valid & same


# --------------------------------------------------------------------------- ranks and the figures made from them


def first_hit_rank(hits: np.ndarray) -> np.ndarray:
    """(M,) 1-based rank of the first hit per query, or 0 where there is none in the list."""
    hits = np.asarray(hits, dtype=bool)
    any_hit = hits.any(axis=1)
    return np.where(any_hit, hits.argmax(axis=1) + 1, 0)


def hits_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """(M,) 0/1 per query: first hit at rank <= k. The per-row values R@K is the mean of, and a paired comparison needs."""
    ranks = np.asarray(ranks)
    return ((ranks > 0) & (ranks <= k)).astype(np.float64)


def recall_at(ranks: np.ndarray, k: int) -> float:
    """R@K: the fraction of queries whose first hit is at rank <= k (0 for no queries)."""
    hits = hits_at(ranks, k)
    return float(hits.mean()) if len(hits) else 0.0


def reciprocal_ranks(ranks: np.ndarray) -> np.ndarray:
    """(M,) 1/rank of the first hit, 0 without one: the per-row values MRR is the mean of (and bootstrapped over)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks > 0, 1.0 / np.maximum(ranks, 1.0), 0.0)


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    """MRR over the retrieved list (MRR@K for lists of K); a query with no hit in the list contributes 0."""
    reciprocal = reciprocal_ranks(ranks)
    return float(reciprocal.mean()) if len(reciprocal) else 0.0


def recall_curve(ranks: np.ndarray, depth: int) -> list[float]:
    """[R@1, R@2, ..., R@depth]: the report's recall-at-k curve (empty for no queries)."""
    ranks = np.asarray(ranks)
    if len(ranks) == 0:
        return []
    return [recall_at(ranks, k) for k in range(1, depth + 1)]
