"""Deciding hits: by key (duplicate aware) or by equal vector, never by one payload row id."""

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


def first_hit_rank(hits: np.ndarray) -> np.ndarray:
    """1-based rank of the first hit per query, or 0 where there is none in the list."""
    hits = np.asarray(hits, dtype=bool)
    any_hit = hits.any(axis=1)
    return np.where(any_hit, hits.argmax(axis=1) + 1, 0)


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose first hit is at rank <= k (ranks from `first_hit_rank`)."""
    ranks = np.asarray(ranks)
    return float(((ranks > 0) & (ranks <= k)).mean()) if len(ranks) else 0.0


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    """MRR over the retrieved list; a query with no hit in the list contributes 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0).mean()) if len(ranks) else 0.0
