"""Payload banks in the layouts other pipelines write, read as a `Payload` (in memory) with their texts.

Two layouts are detected (`lvmcore.artifacts.layouts`):

- source vectors, an `.npz`: `vectors` f32 (N, D), `article_indices` and `chunk_indices` (N,) integers,
  and unicode `concept_texts`, `article_titles`, `cpe_ids`; or any `.npz` mapped with `--field`;
- a payload pickle, an `.npy` holding a pickled dict `{row: (text, {"article_index": a, "chunk_index": c,
  "cpe_id": ...}, vector f32 (D,))}` (or the older dict of the three source-vector arrays). A pickle
  can run code when read, so it is read only with `allow_pickle` (`--allow-pickle`), and then through
  the restricted unpickler (`lvmcore.artifacts.safe_pickle`), never numpy's `allow_pickle=True`.

Vectors must be float32 and are never cast or renormalized. Integer keys are widened to int64 (see
`lvmcore.artifacts.layout_rows` for why that is safe). The manifest records the norm we measured:
"l2" when every row has |norm - 1| <= 1e-3, else "none (measured MIN..MAX)".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.artifacts.layouts import missing_fields_problem, resolve_fields
from lvmcore.artifacts.npz_members import PICKLE_FLAG, load_pickled_member, load_plain_members, npy_member, npz_members, refuse_pickle
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.validate import require_finite, require_float32, require_int, require_integer, require_keys_valid, require_shape, shown
from lvmcore.errors import ArtifactError
from lvmcore.vectors import row_norms

SOURCE_ARRAYS = ("vectors", "article_indices", "chunk_indices")
NORM_TOLERANCE = 1e-3
CONVERT = "python -m lvmcore.artifacts.importers payload"


class PickleWarning(UserWarning):
    """A pickled artifact is being read (through the restricted unpickler)."""


@dataclass
class PayloadColumns:
    """What a payload file holds, column by column, before it becomes a `Payload` or our directory."""

    path: Path
    layout: str
    vectors: np.ndarray  # (N, D) float32
    keys: np.ndarray  # (N, 2) int64
    texts: list[str] | None = None
    titles: list[str] | None = None
    cpe_ids: list[str] | None = None


def measured_norm(vectors: np.ndarray) -> str:
    """"l2" when every row is unit norm within 1e-3, else "none (measured MIN..MAX)" (NaN rows ignored)."""
    norms = row_norms(vectors)
    finite = norms[np.isfinite(norms)]
    if finite.size == 0:
        return "none (measured: no finite row)"
    if np.all(np.abs(finite - 1.0) <= NORM_TOLERANCE):
        return "l2"
    return f"none (measured {finite.min():.4g}..{finite.max():.4g})"


def read_layout_payload(
    path: str | Path,
    fields: dict[str, str] | None = None,
    allow_pickle: bool = False,
    check_finite: bool = True,
    converting: bool = False,
) -> Payload:
    """A payload file of a known (or mapped) layout as an in-memory `Payload`; one `ArtifactError` line per problem.

    converting: the caller is the converter itself, so the pickle warning does not suggest running it.
    """
    columns = read_payload_columns(path, fields, allow_pickle, converting)
    if check_finite:
        require_finite(columns.path, "vectors", columns.vectors)
    manifest = {
        "embedder": "unknown (public format)",
        "dim": int(columns.vectors.shape[1]),
        "norm": measured_norm(columns.vectors),
        "metric": "ip",
        "count": int(len(columns.vectors)),
        "layout": columns.layout,
        "imported_from": str(columns.path),
    }
    return Payload(path=columns.path, vectors=columns.vectors, keys=columns.keys, manifest=manifest, texts=columns.texts)


def read_payload_columns(path: str | Path, fields: dict[str, str] | None = None, allow_pickle: bool = False, converting: bool = False) -> PayloadColumns:
    path = Path(path)
    if path.suffix == ".npy":
        return read_payload_pickle(path, allow_pickle, converting)
    return read_payload_npz(path, fields, allow_pickle)


# ---- source vectors (.npz) ------------------------------------------------------------------------

def read_payload_npz(path: Path, fields: dict[str, str] | None, allow_pickle: bool) -> PayloadColumns:
    members = npz_members(path)
    resolved = resolve_fields("payload", members, fields)
    problem = missing_fields_problem("payload", resolved, members, fields)
    if problem:
        raise ArtifactError(path, problem)
    sources = {name: source for name, source in resolved.sources.items() if source}
    pickled = [(name, source) for name, source in sources.items() if members[source].pickled]
    if pickled:  # text columns written as object arrays: pickles, read only under the flag
        name, source = pickled[0]
        if name in SOURCE_ARRAYS:
            raise ArtifactError(path, f"'{source}' (our {name}) is an object array; it must be a numeric array")
        if not allow_pickle:
            raise refuse_pickle(path, source, leave_out=name)
    arrays = load_plain_members(path, [source for name, source in sources.items() if not members[source].pickled])
    for name, source in pickled:
        arrays[source] = load_pickled_member(path, source)
    column = {name: arrays[source] for name, source in sources.items()}
    vectors, keys = vectors_and_keys(path, column["vectors"], column["article_indices"], column["chunk_indices"])
    texts = {name: text_column(path, sources[name], column[name], len(vectors)) for name in ("texts", "titles", "cpe_ids") if name in column}
    return PayloadColumns(path, resolved.layout, vectors, keys, texts.get("texts"), texts.get("titles"), texts.get("cpe_ids"))


def vectors_and_keys(path: Path, vectors: Any, articles: Any, chunks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated (N, D) float32 vectors and (N, 2) int64 keys from the two key columns."""
    vectors, articles, chunks = np.asarray(vectors), np.asarray(articles), np.asarray(chunks)
    require_shape(path, "vectors", vectors, rank=2)
    require_float32(path, "vectors", vectors)
    if vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ArtifactError(path, f"'vectors' has shape {vectors.shape}: an empty payload has nothing to retrieve")
    for name, values in (("article_indices", articles), ("chunk_indices", chunks)):
        require_shape(path, name, values, rank=1)
        require_integer(path, name, values)  # before stacking: np.stack would promote a bool column silently
        if len(values) != len(vectors):
            raise ArtifactError(path, f"'{name}' has {len(values)} entries for {len(vectors)} vectors")
    keys = np.stack([articles, chunks], axis=1)
    require_keys_valid(path, "article_indices/chunk_indices", keys)
    return vectors, keys.astype(np.int64, copy=False)


def text_column(path: Path, name: str, values: Any, count: int) -> list[str]:
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != count:
        raise ArtifactError(path, f"'{name}' has shape {values.shape}, expected ({count},): one text per vector")
    if values.dtype.kind not in "UO":
        raise ArtifactError(path, f"'{name}' has dtype {values.dtype}, expected unicode text")
    return [str(value) for value in values.tolist()]


# ---- payload pickle (.npy) ------------------------------------------------------------------------

def pickle_warning(path: Path, converting: bool) -> str:
    if converting:
        return (f"{path}: reading a pickled payload with the restricted unpickler (no code from the file runs); the directory "
                f"written needs no {PICKLE_FLAG}")
    return (f"{path}: reading a pickled payload with the restricted unpickler under {PICKLE_FLAG}; convert it once "
            f"(`{CONVERT} {path} OUT_DIR {PICKLE_FLAG}`) and pass OUT_DIR to need no flag")


def read_payload_pickle(path: Path, allow_pickle: bool, converting: bool) -> PayloadColumns:
    member = npy_member(path)
    if not member.pickled:
        raise ArtifactError(path, f"is a plain .npy array ({member.dtype}, shape {member.shape}), not a payload: pass a payload "
                                  "directory, a source-vectors .npz, or a pickled payload dict")
    if not allow_pickle:
        raise ArtifactError(path, f"holds a pickled Python object (a payload dict); reading a pickle can run code from the file, so it "
                                  f"is read only with {PICKLE_FLAG} (restricted unpickler: plain data and numpy arrays, nothing else)")
    warnings.warn(pickle_warning(path, converting), PickleWarning, stacklevel=3)
    from lvmcore.artifacts.safe_pickle import load_npy_restricted  # the one reader of pickles

    loaded = load_npy_restricted(path)
    value = loaded.reshape(-1)[0] if isinstance(loaded, np.ndarray) and loaded.size == 1 else loaded
    if not isinstance(value, dict):
        raise ArtifactError(path, f"holds a pickled {type(value).__name__}, expected a dict {{row: (text, metadata, vector)}}")
    if value and all(name in value for name in SOURCE_ARRAYS):
        vectors, keys = vectors_and_keys(path, value["vectors"], value["article_indices"], value["chunk_indices"])
        texts = text_column(path, "concept_texts", value["concept_texts"], len(vectors)) if "concept_texts" in value else None
        return PayloadColumns(path, "payload pickle (arrays)", vectors, keys, texts)
    return rows_from_dict(path, value)


def rows_from_dict(path: Path, rows: dict[Any, Any]) -> PayloadColumns:
    """{row: (text, {"article_index", "chunk_index", "cpe_id"}, vector)} in row order; each bad entry one line."""
    if not rows:
        raise ArtifactError(path, "holds an empty dict: an empty payload has nothing to retrieve")
    bad_row = next((row for row in rows if isinstance(row, bool) or not isinstance(row, (int, np.integer))), None)
    if bad_row is not None:
        raise ArtifactError(path, f"has row id {shown(bad_row)} ({type(bad_row).__name__}); row ids must be integers")
    order = sorted(rows)
    texts, articles, chunks, cpe_ids, vectors = [], [], [], [], []
    dim = None
    for row in order:
        entry = rows[row]
        if not isinstance(entry, (tuple, list)) or len(entry) != 3:
            raise ArtifactError(path, f"row {row}: expected (text, metadata dict, vector), got {shown(entry)}")
        text, meta, vector = entry
        if not isinstance(text, str):
            raise ArtifactError(path, f"row {row}: text is {shown(text)} ({type(text).__name__}), expected a string")
        if not isinstance(meta, dict):
            raise ArtifactError(path, f"row {row}: metadata is {shown(meta)} ({type(meta).__name__}), expected a dict")
        for name in ("article_index", "chunk_index"):
            if name not in meta:
                raise ArtifactError(path, f"row {row}: metadata has no '{name}' (has: {', '.join(map(str, meta)) or 'nothing'})")
        articles.append(require_int(path, f"row {row}: 'article_index'", meta["article_index"], minimum=0))
        chunks.append(require_int(path, f"row {row}: 'chunk_index'", meta["chunk_index"], minimum=0))
        if not isinstance(vector, np.ndarray) or vector.ndim != 1:
            raise ArtifactError(path, f"row {row}: vector is {shown(vector)}, expected a 1-D numpy array")
        if vector.dtype != np.float32:
            raise ArtifactError(path, f"row {row}: vector has dtype {vector.dtype}, expected float32 (convert it explicitly; we never cast silently)")
        if dim is None:
            dim = len(vector)
        elif len(vector) != dim:
            raise ArtifactError(path, f"row {row}: vector has dimension {len(vector)}, the rows before it {dim}")
        texts.append(text)
        cpe_ids.append(str(meta.get("cpe_id", "")))
        vectors.append(vector)
    stacked, keys = vectors_and_keys(path, np.stack(vectors), np.asarray(articles, np.int64), np.asarray(chunks, np.int64))
    return PayloadColumns(path, "payload pickle", stacked, keys, texts, None, cpe_ids)
