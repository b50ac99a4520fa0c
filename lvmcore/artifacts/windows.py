"""Windows of C consecutive chunks of one document and the chunk that follows, built from keys."""

from __future__ import annotations

import hashlib

import numpy as np

from lvmcore.keys import pack_keys


def build_windows(keys: np.ndarray, context_length: int, articles: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Payload rows of every window (C consecutive chunks, then the next) inside one article.

    keys: (N, 2) payload keys. articles: restrict to these article ids (None: all).
    Returns context_rows (W, C) and target_rows (W,), int64 payload row indices. A window is made
    only where chunk indices c, c+1, ..., c+C all exist in the same article (gaps break windows);
    duplicate keys use their first row.
    """
    keys = np.asarray(keys, dtype=np.int64)
    rows = np.arange(len(keys), dtype=np.int64)
    if articles is not None:
        keep = np.isin(keys[:, 0], np.asarray(articles, dtype=np.int64))
        keys, rows = keys[keep], rows[keep]
    codes = pack_keys(keys)
    codes, first = np.unique(codes, return_index=True)  # sorted by (article, chunk), duplicates dropped
    rows = rows[first]
    span = context_length + 1
    if len(codes) < span:
        return np.zeros((0, context_length), np.int64), np.zeros(0, np.int64)
    # A window starting at sorted position i is valid when position i+C is exactly C chunks later in the same article.
    valid = codes[span - 1 :] - codes[: len(codes) - span + 1] == context_length
    starts = np.flatnonzero(valid)
    window_rows = rows[starts[:, None] + np.arange(span)]  # (W, C+1)
    return window_rows[:, :context_length], window_rows[:, context_length]


def document_split(article_ids: np.ndarray, fractions: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Split article ids into named parts by a seeded hash of each id, so the split is stable.

    fractions: e.g. {"train": 0.8, "validation": 0.1, "eval": 0.1}, summing to 1. The same id and
    seed always land in the same part, whatever other ids are present.
    """
    if not np.isclose(sum(fractions.values()), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    ids = np.unique(np.asarray(article_ids, dtype=np.int64))
    unit = np.array(
        [int.from_bytes(hashlib.blake2b(f"{seed}:{a}".encode(), digest_size=8).digest(), "big") / 2**64 for a in ids]
    )
    edges = np.cumsum(list(fractions.values()))
    part = np.searchsorted(edges, unit, side="right")
    part = np.minimum(part, len(fractions) - 1)
    return {name: ids[part == i] for i, name in enumerate(fractions)}
