"""Array validation shared by every loader: each failure is an `ArtifactError` naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lvmcore.blocks import iter_blocks
from lvmcore.errors import ArtifactError


def require_shape(path: Path, name: str, array: np.ndarray, rank: int, last: int | None = None) -> None:
    """Reject an array of the wrong rank, or whose last dimension is not `last`."""
    if array.ndim != rank:
        raise ArtifactError(path, f"'{name}' has rank {array.ndim} (shape {array.shape}), expected rank {rank}")
    if last is not None and array.shape[-1] != last:
        raise ArtifactError(path, f"'{name}' has last dimension {array.shape[-1]} (shape {array.shape}), expected {last}")


def require_float32(path: Path, name: str, array: np.ndarray) -> None:
    if array.dtype != np.float32:
        raise ArtifactError(path, f"'{name}' has dtype {array.dtype}, expected float32 (convert it explicitly; we never cast silently)")


def require_integer(path: Path, name: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.integer):
        raise ArtifactError(path, f"'{name}' has dtype {array.dtype}, expected an integer type")


def nonfinite_rows(vectors: np.ndarray) -> np.ndarray:
    """Indices of rows (over the first axis) holding NaN or inf, scanned in blocks for memory maps."""
    bad: list[np.ndarray] = []
    flat = vectors.reshape(len(vectors), -1) if len(vectors) else vectors.reshape(0, 1)
    for start, block in iter_blocks(flat):
        rows = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if rows.size:
            bad.append(rows + start)
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def require_finite(path: Path, name: str, vectors: np.ndarray) -> None:
    bad = nonfinite_rows(vectors)
    if bad.size:
        shown = ", ".join(str(int(r)) for r in bad[:5])
        raise ArtifactError(path, f"'{name}' has {bad.size} row(s) with NaN or inf (first: {shown})")


def require_keys_valid(path: Path, name: str, keys: np.ndarray) -> None:
    """Keys must be non-negative integers that fit the packed key code."""
    require_integer(path, name, keys)
    if keys.size and keys.min() < 0:
        row = int(np.argwhere(keys < 0)[0][0])
        raise ArtifactError(path, f"'{name}' has a negative key at row {row}: {keys.reshape(-1, 2)[row].tolist() if keys.ndim == 2 else 'see file'}")
    if keys.size and (keys[..., 0].max() >= 2**31 or keys[..., 1].max() >= 2**32):
        raise ArtifactError(path, f"'{name}' has keys out of range (article must be < 2**31, chunk < 2**32)")


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """L2 norm of every row, computed blockwise in float64 so a memory map is read once."""
    out = np.empty(len(vectors), dtype=np.float64)
    for start, block in iter_blocks(vectors):
        block = block.astype(np.float64)
        out[start : start + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def duplicate_vector_counts(vectors: np.ndarray) -> tuple[int, int]:
    """(rows repeating an earlier row's exact bytes, most copies of one vector), in blocks.

    Rows are hashed by their bytes (64-bit siphash), so a memory-mapped bank is read once and no
    (N, D) sort is needed.
    """
    digest = np.empty(len(vectors), dtype=np.uint64)
    for start, block in iter_blocks(vectors):
        block = np.ascontiguousarray(block)
        digest[start : start + len(block)] = [hash(row.tobytes()) & 0xFFFFFFFFFFFFFFFF for row in block]
    _, counts = np.unique(digest, return_counts=True)
    return int(len(vectors) - len(counts)), int(counts.max(initial=0))
