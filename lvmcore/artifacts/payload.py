"""The payload bank: every chunk vector with its key, memory-mapped, plus a manifest.

Layout of a payload directory:
    vectors.npy    (N, D) float32, opened memory-mapped (never copied into RAM by the loader)
    keys.npy       (N, 2) int64 (article_index, chunk_index)
    manifest.json  {"embedder", "dim", "norm", "metric", "count", "content_hash", ...}
    texts.jsonl    optional, one {"text": ...} per row, for reports
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.blocks import iter_blocks, take_rows
from lvmcore.errors import ArtifactError
from lvmcore.keys import KeyIndex
from lvmcore.artifacts.validate import require_finite, require_float32, require_keys_valid, require_shape

REQUIRED_MANIFEST_FIELDS = ("embedder", "dim", "norm", "metric", "count")
HASH_BLOCK_BYTES = 64 << 20


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    """np.load without pickle, turning a missing or truncated file into one `ArtifactError` line."""
    if not path.is_file():
        raise ArtifactError(path, "file not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:  # truncated data, object arrays, or not a .npy at all
        reason = str(exc).splitlines()[0]
        if "pickle" in reason:
            reason = "holds Python objects (pickled); refusing to load it without --allow-pickle"
        raise ArtifactError(path, f"cannot be read as .npy: {reason}") from None
    except (OSError, EOFError) as exc:
        raise ArtifactError(path, f"cannot be read as .npy (truncated or corrupt?): {exc}") from None


def content_hash(vectors: np.ndarray, keys: np.ndarray) -> str:
    """blake2b of the vectors' and keys' bytes, streamed so a memory-mapped bank is read once."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{vectors.shape}|{vectors.dtype}|{keys.shape}|{keys.dtype}".encode())
    rows_per_block = max(1, HASH_BLOCK_BYTES // max(1, vectors[:1].nbytes))
    for _, block in iter_blocks(vectors, rows_per_block):
        digest.update(np.ascontiguousarray(block).tobytes())
    digest.update(np.ascontiguousarray(keys).tobytes())
    return digest.hexdigest()


@dataclass
class Payload:
    """A loaded payload bank. `vectors` is a read-only memory map; nothing here renormalizes it."""

    path: Path
    vectors: np.ndarray  # (N, D) float32, memory-mapped
    keys: np.ndarray  # (N, 2) int64
    manifest: dict[str, Any]
    texts: list[str] | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def embedder(self) -> str:
        return str(self.manifest.get("embedder", "unknown"))

    @cached_property
    def key_index(self) -> KeyIndex:
        return KeyIndex.from_keys(self.keys)

    @cached_property
    def content_hash(self) -> str:
        return content_hash(self.vectors, self.keys)

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Payload row of each key (first if duplicated), -1 if absent."""
        return self.key_index.first_row(keys)

    def vectors_of(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of the given keys and a found-mask; rows of missing keys are zero."""
        keys = np.asarray(keys)
        rows = self.rows_of(keys).reshape(-1)
        found = rows >= 0
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        if found.any():
            wanted = rows[found]
            order = np.argsort(wanted)
            gathered = np.empty((len(wanted), self.dim), dtype=np.float32)
            gathered[order] = take_rows(self.vectors, wanted[order])  # sorted reads are kind to a memory map
            out[found] = gathered
        return out.reshape(*keys.shape[:-1], self.dim), found.reshape(keys.shape[:-1])


def load_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(path, "file not found (a payload directory needs manifest.json; see README 'Artifact formats')")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(path, f"is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(path, "must hold a JSON object")
    missing = [name for name in REQUIRED_MANIFEST_FIELDS if name not in manifest]
    if missing:
        raise ArtifactError(path, f"is missing field(s) {', '.join(missing)}")
    return manifest


def load_texts(path: Path, count: int) -> list[str] | None:
    if not path.is_file():
        return None
    texts = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                texts.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ArtifactError(path, f"line {number} is not a JSON object with a 'text' field") from None
    if len(texts) != count:
        raise ArtifactError(path, f"has {len(texts)} texts for {count} vectors")
    return texts


def load_payload(directory: str | Path, check_finite: bool = True) -> Payload:
    """Load and validate a payload directory; every problem is one `ArtifactError` naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        if directory.suffix == ".npz":
            raise ArtifactError(directory, "is an .npz file; import it first with `python -m lvmcore.artifacts.importers payload` (public format)")
        raise ArtifactError(directory, "payload directory not found")
    manifest = load_manifest(directory / "manifest.json")
    vectors = load_npy(directory / "vectors.npy", mmap=True)
    keys = load_npy(directory / "keys.npy", mmap=False)
    vpath, kpath = directory / "vectors.npy", directory / "keys.npy"
    require_shape(vpath, "vectors", vectors, rank=2)
    require_float32(vpath, "vectors", vectors)
    require_shape(kpath, "keys", keys, rank=2, last=2)
    require_keys_valid(kpath, "keys", keys)
    keys = keys.astype(np.int64, copy=False)
    if len(keys) != len(vectors):
        raise ArtifactError(kpath, f"has {len(keys)} keys for {len(vectors)} vectors in vectors.npy")
    if int(manifest["dim"]) != vectors.shape[1]:
        raise ArtifactError(directory / "manifest.json", f"says dim {manifest['dim']} but vectors.npy has dimension {vectors.shape[1]}")
    if int(manifest["count"]) != len(vectors):
        raise ArtifactError(directory / "manifest.json", f"says count {manifest['count']} but vectors.npy has {len(vectors)} rows")
    if check_finite:
        require_finite(vpath, "vectors", vectors)
    texts = load_texts(directory / "texts.jsonl", len(vectors))
    return Payload(path=directory, vectors=vectors, keys=keys, manifest=manifest, texts=texts)


def write_payload(
    directory: str | Path,
    vectors: np.ndarray,
    keys: np.ndarray,
    *,
    embedder: str,
    norm: str = "l2",
    metric: str = "ip",
    texts: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a payload directory in our format, with its manifest and content hash."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors)
    keys = np.asarray(keys, dtype=np.int64)
    if vectors.dtype != np.float32:
        raise ValueError(f"vectors must be float32, got {vectors.dtype}")
    np.save(directory / "vectors.npy", vectors)
    np.save(directory / "keys.npy", keys)
    if texts is not None:
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts for {len(vectors)} vectors")
        with (directory / "texts.jsonl").open("w", encoding="utf-8") as out:
            for text in texts:
                out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    manifest = {
        "embedder": embedder,
        "dim": int(vectors.shape[1]),
        "norm": norm,
        "metric": metric,
        "count": int(vectors.shape[0]),
        "content_hash": content_hash(vectors, keys),
        **(extra or {}),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return directory

