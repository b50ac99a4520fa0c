"""Writers of the files a real LVM pipeline writes (the public one FAILURE_MODES.md comes from), small.

Each writer reproduces one layout exactly: array names, dtypes, scalar arrays, the one-element
unicode or object `provenance`, the pickled-dict payload `.npy`. `write_public_pipeline` writes a
healthy set in every layout from one smooth-walk bank (`tests/helpers/synthetic.py`), split by document;
`write_row2_failure` writes its eval set with contexts through "another encoder" (a random
rotation) and targets still payload vectors, in the same layout: FAILURE_MODES row 2.

Provenance names the payload as their writers do, `payload_build_id: "<name>@sha256:<first 16 hex
digits of the payload file's sha256>"`; `write_hardcoded_build_id` rewrites an eval file with the
constant build id their eval builder writes, whose prefix is no payload's sha256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.artifacts.windows import build_windows, document_split

from helpers.synthetic import smooth_walk_bank

EMBEDDER_ID = "sentence-transformers/gtr-t5-base"
CONTEXT_LENGTH = 5
EVAL_LAYOUTS = ("sequences v1", "eval v3", "eval v2")


BUILD_ID_DIGITS = 16  # their writers keep the first 16 hex digits of the sha256
HARDCODED_BUILD_ID = "wikipedia_584k_payload@sha256:3f9c2e7a1b5d8c04"  # their eval builder's constant


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_id_of(path: Path) -> str:
    """`<name>@sha256:<first 16 hex digits>`, the payload identity their writers record."""
    return f"{Path(path).stem}@sha256:{sha256_of(path)[:BUILD_ID_DIGITS]}"


def row_texts(keys: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    texts = [f"Article {a}, passage {c}: some words of chunk {c}." for a, c in keys]
    titles = [f"Article number {a}" for a, _ in keys]
    cpe_ids = [f"cpe-{a:05d}-{c:04d}" for a, c in keys]
    return texts, titles, cpe_ids


def write_source_vectors(path: Path, vectors: np.ndarray, keys: np.ndarray) -> Path:
    """Compressed .npz: vectors f32 (N, D), article_indices/chunk_indices int32 (N,), unicode text arrays."""
    texts, titles, cpe_ids = row_texts(keys)
    np.savez_compressed(
        path,
        vectors=np.asarray(vectors, dtype=np.float32),
        article_indices=keys[:, 0].astype(np.int32),
        chunk_indices=keys[:, 1].astype(np.int32),
        concept_texts=np.array(texts),
        article_titles=np.array(titles),
        cpe_ids=np.array(cpe_ids),
    )
    return path


def write_payload_pickle(path: Path, vectors: np.ndarray, keys: np.ndarray) -> Path:
    """.npy holding a pickled dict {row: (text, {"article_index", "chunk_index", "cpe_id"}, vec f32 (D,))}."""
    texts, _, cpe_ids = row_texts(keys)
    bank = {
        row: (texts[row], {"article_index": int(keys[row, 0]), "chunk_index": int(keys[row, 1]), "cpe_id": cpe_ids[row]},
              np.array(vectors[row], dtype=np.float32))
        for row in range(len(vectors))
    }
    np.save(path, bank, allow_pickle=True)  # a 0-d object array: the dict, pickled
    return path


def write_sequences_v1(path: Path, contexts: np.ndarray, targets: np.ndarray, truth_keys: np.ndarray, provenance: dict[str, Any]) -> Path:
    """Training / validation / clean eval: context_sequences, target_vectors, truth_keys int32, scalar arrays, JSON provenance."""
    np.savez_compressed(
        path,
        context_sequences=np.asarray(contexts, dtype=np.float32),
        target_vectors=np.asarray(targets, dtype=np.float32),
        truth_keys=np.asarray(truth_keys).astype(np.int32),
        context_length=np.array(contexts.shape[1]),
        num_sequences=np.array(len(contexts)),
        vector_dim=np.array(contexts.shape[2]),
        provenance=np.array([json.dumps(provenance)]),  # one-element unicode array holding JSON
    )
    return path


def write_eval_v3(path: Path, contexts: np.ndarray, targets: np.ndarray, truth_keys: np.ndarray, provenance: dict[str, Any]) -> Path:
    """contexts, targets, truth_keys int64, provenance as a one-element object array (a pickle)."""
    holder = np.empty(1, dtype=object)
    holder[0] = dict(provenance)
    np.savez(path, contexts=np.asarray(contexts, np.float32), targets=np.asarray(targets, np.float32),
             truth_keys=np.asarray(truth_keys).astype(np.int64), provenance=holder)
    return path


def write_eval_v2(path: Path, contexts: np.ndarray, targets: np.ndarray, truth_keys: np.ndarray, provenance: dict[str, Any]) -> Path:
    """Eval v3 plus last_meta (an object array of dicts, one per row) and alignment_stats; provenance as JSON in an object array."""
    holder = np.empty(1, dtype=object)
    holder[0] = json.dumps(provenance)
    last_meta = np.empty(len(contexts), dtype=object)
    for row, (a, c) in enumerate(np.asarray(truth_keys)):
        last_meta[row] = {"article_index": int(a), "chunk_index": int(c) - 1, "text": f"passage {int(c) - 1}"}
    stats = np.empty(1, dtype=object)
    stats[0] = {"aligned": len(contexts), "dropped": 0, "mean_cos": 1.0}
    np.savez(path, contexts=np.asarray(contexts, np.float32), targets=np.asarray(targets, np.float32),
             truth_keys=np.asarray(truth_keys).astype(np.int64), provenance=holder, last_meta=last_meta, alignment_stats=stats)
    return path


EVAL_WRITERS = {"sequences v1": write_sequences_v1, "eval v3": write_eval_v3, "eval v2": write_eval_v2}
EVAL_FILES = {"sequences v1": "eval_clean.npz", "eval v3": "eval_v3.npz", "eval v2": "eval_v2.npz"}


def write_public_pipeline(directory: Path, articles: int = 40, dim: int = 768, seed: int = 0) -> dict[str, Path]:
    """A healthy set in every layout: source vectors, payload pickle, train/val/clean eval (v1), eval v3, eval v2."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vectors, keys = smooth_walk_bank(articles, dim, seed)
    paths = {
        "source_vectors": write_source_vectors(directory / "source_vectors.npz", vectors, keys),
        "payload_pickle": write_payload_pickle(directory / "payload.npy", vectors, keys),
    }
    provenance = {"embedder_id": EMBEDDER_ID, "payload_build_id": build_id_of(paths["payload_pickle"]), "norm": "l2_once",
                  "context_length": CONTEXT_LENGTH}
    split = document_split(keys[:, 0], {"train": 0.7, "validation": 0.15, "eval": 0.15}, seed=seed)
    for name, part in (("train", "train"), ("val", "validation")):
        context_rows, target_rows = build_windows(keys, CONTEXT_LENGTH, split[part])
        paths[name] = write_sequences_v1(directory / f"{name}.npz", vectors[context_rows], vectors[target_rows], keys[target_rows],
                                         {**provenance, "split": part})
    context_rows, target_rows = build_windows(keys, CONTEXT_LENGTH, split["eval"])
    for layout, writer in EVAL_WRITERS.items():
        paths[layout] = writer(directory / EVAL_FILES[layout], vectors[context_rows], vectors[target_rows], keys[target_rows],
                               {**provenance, "split": "eval"})
    return paths


def another_encoder(vectors: np.ndarray, seed: int = 99) -> np.ndarray:
    """The same rows as if from another encoder: a random rotation, renormalized (float32)."""
    dim = vectors.shape[-1]
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    moved = vectors @ rotation.astype(np.float32)
    return (moved / np.linalg.norm(moved, axis=-1, keepdims=True)).astype(np.float32)


def read_eval_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """The writer's own arrays back (test data we wrote ourselves, so reading its pickles here is safe)."""
    with np.load(path, allow_pickle=True) as archive:
        if "context_sequences" in archive.files:
            contexts, targets = archive["context_sequences"], archive["target_vectors"]
            provenance = json.loads(str(archive["provenance"][0]))
        else:
            contexts, targets = archive["contexts"], archive["targets"]
            value = archive["provenance"][0]
            provenance = json.loads(value) if isinstance(value, str) else dict(value)
        return contexts, targets, archive["truth_keys"], provenance


def write_row2_failure(healthy: dict[str, Path], layout: str, out: Path) -> Path:
    """Row 2 in the pipeline's own layout: contexts from another encoder, targets still payload vectors."""
    contexts, targets, truth_keys, provenance = read_eval_arrays(healthy[layout])
    return EVAL_WRITERS[layout](Path(out), another_encoder(contexts), targets, truth_keys, provenance)


def write_hardcoded_build_id(healthy: dict[str, Path], layout: str, out: Path, build_id: object = HARDCODED_BUILD_ID) -> Path:
    """Their eval builder's defect: the same rows, provenance naming the payload by a constant build id."""
    contexts, targets, truth_keys, provenance = read_eval_arrays(healthy[layout])
    return EVAL_WRITERS[layout](Path(out), contexts, targets, truth_keys, {**provenance, "payload_build_id": build_id})
