"""The one row sampler: every seeded subset of rows in the project (IVF training points, agreement
queries, oracle queries, training windows checked or evaluated, report examples) is drawn here,
sorted, so that a memory-mapped array is read in file order."""

from __future__ import annotations

import numpy as np


def sample_rows(count: int, size: int, seed: int) -> np.ndarray:
    """A sorted seeded sample of min(size, count) distinct row indices of range(count), int64."""
    if count <= size:
        return np.arange(count, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False)).astype(np.int64)
