"""Training data: an `.npz` shaped like an eval set, or a JSON spec of windows built from the payload.

A windows spec (`format: "lvm-windows/1"`) names the training articles and the context length;
its vectors are read from the payload by key in batches, so 400,000 windows never sit in RAM as
copies (they would be 7 GiB at D=768).

    {"format": "lvm-windows/1", "context_length": 5, "articles": [3, 17, ...],
     "provenance": {"embedder": ..., "dim": ..., "norm": ..., "metric": ..., "payload_hash": ...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.blocks import take_rows
from lvmcore.errors import ArtifactError
from lvmcore.artifacts.evalset import load_eval_set
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.validate import read_json, require_file, require_int, require_object, shown
from lvmcore.artifacts.windows import build_windows
from lvmcore.files import write_json_atomic

WINDOWS_FORMAT = "lvm-windows/1"
MAX_CONTEXT_LENGTH = 4096  # chunks per window; far beyond any model's context, small enough to build windows safely


@dataclass
class TrainingData:
    """Training windows with the key of every vector; vectors come from arrays or from the payload."""

    path: Path
    context_keys: np.ndarray  # (W, C, 2) int64
    truth_keys: np.ndarray  # (W, 2) int64
    provenance: dict[str, Any] = field(default_factory=dict)
    contexts: np.ndarray | None = None  # (W, C, D) when stored as arrays
    targets: np.ndarray | None = None  # (W, D) when stored as arrays
    payload: Payload | None = None  # the bank windows are read from, when built by key
    context_rows: np.ndarray | None = None  # (W, C) payload rows, when built by key
    target_rows: np.ndarray | None = None  # (W,) payload rows, when built by key
    recovered_context_keys: Any = None  # when the file had no context_keys: what key recovery found (lvmcore.plumbing.key_recovery.ContextKeys)

    @property
    def count(self) -> int:
        return int(self.truth_keys.shape[0])

    @property
    def context_length(self) -> int:
        return int(self.context_keys.shape[1])

    @property
    def articles(self) -> np.ndarray:
        return np.unique(np.concatenate([self.truth_keys[:, 0], self.context_keys[..., 0].reshape(-1)]))

    @property
    def built_from_payload(self) -> bool:
        return self.payload is not None

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contexts (B, C, D) and targets (B, D) of the given window rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.payload is None:
            assert self.contexts is not None and self.targets is not None
            return np.asarray(self.contexts[rows]), np.asarray(self.targets[rows])
        assert self.context_rows is not None and self.target_rows is not None
        needed = np.concatenate([self.context_rows[rows].reshape(-1), self.target_rows[rows]])
        unique_rows, inverse = np.unique(needed, return_inverse=True)
        block = take_rows(self.payload.vectors, unique_rows)[inverse]
        c = self.context_length
        contexts = block[: len(rows) * c].reshape(len(rows), c, -1)
        return contexts, block[len(rows) * c :]


def windows_from_payload(payload: Payload, articles: np.ndarray, context_length: int, path: Path, provenance: dict[str, Any]) -> TrainingData:
    """Training windows of the given articles, read from the payload by key."""
    context_rows, target_rows = build_windows(payload.keys, context_length, articles)
    return TrainingData(
        path=path,
        context_keys=payload.keys[context_rows] if len(context_rows) else np.zeros((0, context_length, 2), np.int64),
        truth_keys=payload.keys[target_rows] if len(target_rows) else np.zeros((0, 2), np.int64),
        provenance=provenance,
        payload=payload,
        context_rows=context_rows,
        target_rows=target_rows,
    )


def write_windows_spec(path: str | Path, articles: np.ndarray, context_length: int, provenance: dict[str, Any]) -> Path:
    path = Path(path)
    spec = {
        "format": WINDOWS_FORMAT,
        "context_length": int(context_length),
        "articles": sorted(int(a) for a in np.unique(articles)),
        "provenance": provenance,
    }
    return write_json_atomic(path, spec)


def load_training_data(path: str | Path, payload: Payload) -> TrainingData:
    """Load training data: an `.npz` (eval-set layout) or a windows spec resolved against `payload`."""
    path = Path(path)
    require_file(path)
    if path.suffix == ".npz":
        rows = load_eval_set(path, expected_dim=payload.dim)
        if rows.context_keys is None:
            raise ArtifactError(path, "training data needs 'context_keys' so contexts can be matched to the payload by key")
        return TrainingData(
            path=path,
            context_keys=rows.context_keys,
            truth_keys=rows.truth_keys,
            provenance=rows.provenance,
            contexts=rows.contexts,
            targets=rows.targets,
        )
    spec = read_json(path, "training data file")
    if not isinstance(spec, dict) or spec.get("format") != WINDOWS_FORMAT:
        raise ArtifactError(path, f"is not a training windows spec (expected \"format\": \"{WINDOWS_FORMAT}\")")
    for name in ("context_length", "articles"):
        if name not in spec:
            raise ArtifactError(path, f"is missing field '{name}'")
    context_length = require_int(path, "'context_length'", spec["context_length"], minimum=1, maximum=MAX_CONTEXT_LENGTH)
    articles = spec_articles(path, spec["articles"])
    provenance = require_object(path, "'provenance'", spec.get("provenance", {}))
    unknown = np.setdiff1d(articles, payload.keys[:, 0])
    if unknown.size:
        raise ArtifactError(path, f"names {unknown.size} article(s) absent from the payload {payload.path} (first: {int(unknown[0])})")
    data = windows_from_payload(payload, articles, context_length, path, dict(provenance))
    if data.count == 0:
        longest = int(np.max(np.unique(payload.keys[np.isin(payload.keys[:, 0], articles), 0], return_counts=True)[1]))
        raise ArtifactError(
            path, f"yields 0 windows: context length {context_length} needs {context_length + 1} consecutive chunks, and the longest of its {len(articles)} article(s) has {longest}"
        )
    return data


def spec_articles(path: Path, value: object) -> np.ndarray:
    """The spec's article ids: a non-empty list of integers >= 0 (no strings, floats or bools)."""
    if not isinstance(value, list) or not value:
        raise ArtifactError(path, f"'articles' is {shown(value)}, expected a non-empty list of article ids")
    for position, article in enumerate(value):
        require_int(path, f"'articles'[{position}]", article, minimum=0, maximum=2**31 - 1)
    return np.asarray(value, dtype=np.int64)
