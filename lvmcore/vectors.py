"""Row-wise vector maths every layer shares: unit rows, norms, cosines, NaN rows, duplicate rows.

Functions that scan a whole (possibly memory-mapped) array go through `lvmcore.blocks.iter_blocks`,
so a 1.7 GiB payload is read once and its pages handed back as each block is done.
"""

from __future__ import annotations

import numpy as np

from lvmcore.blocks import iter_blocks


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit rows; an all-zero row stays zero (no NaN)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (M, D) arrays; a zero row gives 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dots = np.einsum("ij,ij->i", a, b)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """L2 norm of every row, computed blockwise in float64 so a memory map is read once."""
    out = np.empty(len(vectors), dtype=np.float64)
    for start, block in iter_blocks(vectors):
        block = block.astype(np.float64)
        out[start : start + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def nonfinite_rows(vectors: np.ndarray) -> np.ndarray:
    """Indices of rows (over the first axis) holding NaN or inf, scanned in blocks for memory maps."""
    bad: list[np.ndarray] = []
    flat = vectors.reshape(len(vectors), -1) if len(vectors) else vectors.reshape(0, 1)
    for start, block in iter_blocks(flat):
        rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if rows.size:
            bad.append(rows + start)
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def row_digests(vectors: np.ndarray) -> np.ndarray:
    """(N,) uint64: a 64-bit hash (siphash) of every row's exact bytes, in blocks so a memory map is read once.

    Equal bytes give equal digests within one process (Python salts the hash per process, so never
    store them); unequal rows collide with probability about 2**-64, so compare bytes after a match.
    """
    digest = np.empty(len(vectors), dtype=np.uint64)
    for start, block in iter_blocks(vectors):
        block = np.ascontiguousarray(block).reshape(len(block), -1)
        digest[start : start + len(block)] = [hash(row.tobytes()) & 0xFFFFFFFFFFFFFFFF for row in block]
    return digest


def duplicate_vector_counts(vectors: np.ndarray) -> tuple[int, int]:
    """(rows repeating an earlier row's exact bytes, most copies of one vector), in blocks.

    Rows are hashed by their bytes (`row_digests`), so a memory-mapped bank is read once and no
    (N, D) sort is needed.
    """
    digest = row_digests(vectors)
    _, counts = np.unique(digest, return_counts=True)
    return int(len(vectors) - len(counts)), int(counts.max(initial=0))
