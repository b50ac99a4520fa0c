"""A small healthy bank with learnable document structure, for fast tests of the library and suite.

Each document is a smooth walk on the unit sphere (next = normalize(prev + drift + noise)), so the
next chunk is predictable from the context. The real default bank lives in fixtures/data/default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lvmcore.artifacts.evalset import write_eval_set
from lvmcore.artifacts.payload import load_payload, write_payload
from lvmcore.artifacts.training_data import write_windows_spec
from lvmcore.artifacts.windows import build_windows, document_split

EMBEDDER = "synthetic/smooth-walk"


def smooth_walk_bank(articles: int = 60, dim: int = 32, seed: int = 0, min_len: int = 8, max_len: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (N, dim) float32 unit-norm and keys (N, 2): one smooth walk per article."""
    rng = np.random.default_rng(seed)
    vectors, keys = [], []
    for article in range(articles):
        length = int(rng.integers(min_len, max_len + 1))
        drift = rng.normal(size=dim)
        drift /= np.linalg.norm(drift)
        current = rng.normal(size=dim)
        current /= np.linalg.norm(current)
        for chunk in range(length):
            vectors.append(current.copy())
            keys.append((article, chunk))
            step = current + 0.35 * drift + 0.25 * rng.normal(size=dim) / np.sqrt(dim)
            current = step / np.linalg.norm(step)
    return np.asarray(vectors, dtype=np.float32), np.asarray(keys, dtype=np.int64)


def write_healthy_bank(directory: Path, articles: int = 60, dim: int = 32, context_length: int = 5, seed: int = 0) -> dict[str, Path]:
    """Write payload/, eval.npz, train.json and validation.json, split by document. Returns the paths."""
    directory = Path(directory)
    vectors, keys = smooth_walk_bank(articles, dim, seed)
    write_payload(directory / "payload", vectors, keys, embedder=EMBEDDER)
    payload = load_payload(directory / "payload")
    split = document_split(keys[:, 0], {"train": 0.7, "validation": 0.15, "eval": 0.15}, seed=seed)
    provenance = {"embedder": EMBEDDER, "dim": dim, "norm": "l2", "metric": "ip", "payload_hash": payload.content_hash}
    context_rows, target_rows = build_windows(keys, context_length, split["eval"])
    write_eval_set(
        directory / "eval.npz",
        contexts=vectors[context_rows],
        targets=vectors[target_rows],
        truth_keys=keys[target_rows],
        context_keys=keys[context_rows],
        provenance={**provenance, "split": "eval"},
    )
    write_windows_spec(directory / "train.json", split["train"], context_length, {**provenance, "split": "train"})
    write_windows_spec(directory / "validation.json", split["validation"], context_length, {**provenance, "split": "validation"})
    return {
        "payload": directory / "payload",
        "eval": directory / "eval.npz",
        "train": directory / "train.json",
        "validation": directory / "validation.json",
    }
