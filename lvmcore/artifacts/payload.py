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

from lvmcore.blocks import take_rows, update_digest
from lvmcore.errors import ArtifactError, exception_reason
from lvmcore.files import write_atomic, write_json_atomic
from lvmcore.keys import KeyIndex
from lvmcore.artifacts.validate import (
    decode_utf8,
    npy_header,
    read_bytes,
    read_json,
    require_file,
    require_finite,
    require_float32,
    require_int,
    require_keys_valid,
    require_rows,
    require_shape,
    require_str,
)

REQUIRED_MANIFEST_FIELDS = ("embedder", "dim", "norm", "metric", "count")
HASH_BLOCK_BYTES = 64 << 20


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    """np.load without pickle; the header is checked against the file's size first, so a truncated
    or lying file is one `ArtifactError` line and allocates nothing."""
    size = require_file(path).st_size
    try:
        with path.open("rb") as handle:
            _, _, dtype, _ = npy_header(path, handle, size)
    except OSError as exc:
        raise ArtifactError(path, f"cannot be read: {exc.strerror or exc}") from None
    if dtype.hasobject:
        raise ArtifactError(path, "cannot be read as .npy: holds Python objects (pickled); refusing to load it (a payload array is plain numbers)")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:  # a header numpy reads differently from ours
        raise ArtifactError(path, f"cannot be read as .npy: {exception_reason(exc, limit=None)}") from None
    except (OSError, EOFError, MemoryError) as exc:
        raise ArtifactError(path, f"cannot be read as .npy (truncated or corrupt?): {exc}") from None


def content_hash(vectors: np.ndarray, keys: np.ndarray) -> str:
    """blake2b of the vectors' and keys' bytes, streamed so a memory-mapped bank is read once."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{vectors.shape}|{vectors.dtype}|{keys.shape}|{keys.dtype}".encode())
    update_digest(digest, vectors, block_rows=max(1, HASH_BLOCK_BYTES // max(1, vectors[:1].nbytes)))
    update_digest(digest, keys)
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
    """manifest.json: a JSON object with every required field, each of its type (`dim` an integer >= 1, ...)."""
    if not path.exists() and not path.is_symlink():
        raise ArtifactError(path, "file not found (a payload directory needs manifest.json; see README 'Artifact formats')")
    manifest = read_json(path, "manifest file")
    if not isinstance(manifest, dict):
        raise ArtifactError(path, f"must hold a JSON object, not a {type(manifest).__name__}")
    missing = [name for name in REQUIRED_MANIFEST_FIELDS if name not in manifest]
    if missing:
        raise ArtifactError(path, f"is missing field(s) {', '.join(missing)}")
    require_int(path, "'dim'", manifest["dim"], minimum=1)
    require_int(path, "'count'", manifest["count"], minimum=0)
    for name in ("embedder", "norm", "metric"):
        require_str(path, f"'{name}'", manifest[name])
    if manifest.get("content_hash") is not None:
        require_str(path, "'content_hash'", manifest["content_hash"])
    return manifest


def load_texts(path: Path, count: int) -> list[str] | None:
    """texts.jsonl (optional): one {"text": str} per payload row, UTF-8."""
    if not path.exists() and not path.is_symlink():
        return None
    texts = []
    for number, line in enumerate(read_bytes(path, "texts file").splitlines(), 1):
        try:
            record = json.loads(decode_utf8(path, line, where=f" (line {number})"))
        except (json.JSONDecodeError, RecursionError):
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ArtifactError(path, f"line {number} is not a JSON object with a string 'text' field")
        texts.append(record["text"])
    if len(texts) != count:
        raise ArtifactError(path, f"has {len(texts)} texts for {count} vectors")
    return texts


def load_payload(directory: str | Path, check_finite: bool = True) -> Payload:
    """Load and validate a payload directory; every problem is one `ArtifactError` naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        if directory.suffix == ".npz":
            raise ArtifactError(directory, "is an .npz file; import it first with `python -m lvmcore.artifacts.importers payload` (public format)")
        if directory.exists() or directory.is_symlink():
            require_file(directory, "payload directory or public .npz")  # names a loop, a dangling link, a device
            raise ArtifactError(directory, "is a file, not a payload directory (a public-format payload is an .npz)")
        raise ArtifactError(directory, "payload directory not found")
    manifest = load_manifest(directory / "manifest.json")
    vectors = load_npy(directory / "vectors.npy", mmap=True)
    keys = load_npy(directory / "keys.npy", mmap=False)
    vpath, kpath = directory / "vectors.npy", directory / "keys.npy"
    require_shape(vpath, "vectors", vectors, rank=2)
    require_float32(vpath, "vectors", vectors)
    require_rows(vpath, "vectors", vectors, "an empty payload has nothing to retrieve")
    if vectors.shape[1] == 0:
        raise ArtifactError(vpath, f"'vectors' has dimension 0 (shape {vectors.shape})")
    require_shape(kpath, "keys", keys, rank=2, last=2)
    require_keys_valid(kpath, "keys", keys)
    keys = keys.astype(np.int64, copy=False)
    if len(keys) != len(vectors):
        raise ArtifactError(kpath, f"has {len(keys)} keys for {len(vectors)} vectors in vectors.npy")
    if manifest["dim"] != vectors.shape[1]:
        raise ArtifactError(directory / "manifest.json", f"says dim {manifest['dim']} but vectors.npy has dimension {vectors.shape[1]}")
    if manifest["count"] != len(vectors):
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
    """Write a payload directory in our format, with its manifest and content hash.

    Every file is written atomically (`lvmcore.files`), the manifest last: a crash leaves the old
    manifest, whose hash then disagrees with the new arrays (a plumbing check says so).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors)
    keys = np.asarray(keys, dtype=np.int64)
    if vectors.dtype != np.float32:
        raise ValueError(f"vectors must be float32, got {vectors.dtype}")
    if texts is not None and len(texts) != len(vectors):
        raise ValueError(f"{len(texts)} texts for {len(vectors)} vectors")
    write_atomic(directory / "vectors.npy", lambda out: np.save(out, vectors))
    write_atomic(directory / "keys.npy", lambda out: np.save(out, keys))
    if texts is not None:
        lines = "".join(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in texts).encode("utf-8")
        write_atomic(directory / "texts.jsonl", lambda out: out.write(lines))
    manifest = {
        "embedder": embedder,
        "dim": int(vectors.shape[1]),
        "norm": norm,
        "metric": metric,
        "count": int(vectors.shape[0]),
        "content_hash": content_hash(vectors, keys),
        **(extra or {}),
    }
    write_json_atomic(directory / "manifest.json", manifest)
    return directory

