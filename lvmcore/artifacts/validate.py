"""Array validation shared by every loader: each failure is an `ArtifactError` naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lvmcore.errors import ArtifactError
from lvmcore.vectors import nonfinite_rows


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


