"""The plumbing figure `ivf_exact_top10_agreement`: does the IVF index return the rows exact search returns?

Row ids, not keys: this measures the index against exact search over the same rows. The gate's
`ivf_exact_agreement` is another figure (truth hits, not rows) and lives in `lvmcore.gate.metrics`.
"""

from __future__ import annotations

import faiss
import numpy as np

from lvmcore.sampling import sample_rows
from lvmcore.search.exact import exact_search
from lvmcore.search.ivf import index_search
from lvmcore.vectors import l2_normalize

AGREEMENT_QUERIES = 1_000  # a seeded sample: the share is an estimate, and each query costs a pass over N
AGREEMENT_K = 10


def agreement_queries(contexts: np.ndarray, count: int = AGREEMENT_QUERIES, seed: int = 11) -> np.ndarray:
    """Unit mean-of-context vectors of a seeded sample of `count` windows (M, C, D): queries that land
    between chunks, as a model's predictions do, rather than on a stored row."""
    sample = sample_rows(len(contexts), count, seed)
    return l2_normalize(np.asarray(contexts[sample], dtype=np.float32).mean(axis=1))  # (count, D)


def top_k_row_agreement(index: faiss.Index, payload_vectors: np.ndarray, queries: np.ndarray, k: int, nprobe: int | None = None) -> float:
    """Mean share of each query's exact top-k rows that the index also returns in its top-k.

    A duplicate vector found under another row id counts as a miss (rare; the bank check bounds it).
    """
    _, exact_rows = exact_search(payload_vectors, queries, k)
    _, index_rows = index_search(index, queries, k, nprobe)
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(exact_rows, index_rows)]))
