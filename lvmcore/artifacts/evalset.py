"""Eval sets and training data: contexts, targets and the key of every vector.

An eval set is an `.npz` holding
    contexts      (M, C, D) float32
    targets       (M, D) float32
    truth_keys    (M, 2) int64, the key of each target
    context_keys  (M, C, 2) int64, the key of every context vector (optional; checks that need it skip)
    provenance    a JSON string: embedder, dim, norm, metric, payload content hash, source, split
Training data has the same layout, or is a JSON spec of windows built from the payload by key
(see `lvmcore.artifacts.training_data`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.errors import ArtifactError
from lvmcore.artifacts.validate import read_npz, require_finite, require_float32, require_keys_valid, require_rows, require_shape
from lvmcore.files import write_atomic

REQUIRED_ARRAYS = ("contexts", "targets", "truth_keys")


@dataclass
class EvalSet:
    """Held-out (or training) rows: what the model sees, what it should predict, and their keys."""

    path: Path
    contexts: np.ndarray  # (M, C, D) float32
    targets: np.ndarray  # (M, D) float32
    truth_keys: np.ndarray  # (M, 2) int64
    context_keys: np.ndarray | None  # (M, C, 2) int64, or None in the public format
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.targets.shape[0])

    @property
    def context_length(self) -> int:
        return int(self.contexts.shape[1])

    @property
    def dim(self) -> int:
        return int(self.targets.shape[1])

    @property
    def articles(self) -> np.ndarray:
        """Every article id this set touches, in its contexts or its targets."""
        parts = [self.truth_keys[:, 0]]
        if self.context_keys is not None:
            parts.append(self.context_keys[..., 0].reshape(-1))
        return np.unique(np.concatenate(parts))


def parse_provenance(path: Path, raw: Any) -> dict[str, Any]:
    """'provenance': a 0-d string array holding a JSON object."""
    if not isinstance(raw, np.ndarray) or raw.shape != () or raw.dtype.kind not in "US":
        shape = getattr(raw, "shape", None)
        raise ArtifactError(path, f"'provenance' must be one JSON string (a 0-d string array), not an array of dtype {getattr(raw, 'dtype', '?')} and shape {shape}")
    text = raw.item()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArtifactError(path, f"'provenance' is not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise ArtifactError(path, "'provenance' is not a JSON string: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(path, f"'provenance' is not a JSON string: {exc}") from None
    if not isinstance(value, dict):
        raise ArtifactError(path, "'provenance' must be a JSON object")
    return value


def load_eval_set(path: str | Path, expected_dim: int | None = None, check_finite: bool = True) -> EvalSet:
    """Load and validate an eval-set `.npz`; problems raise one-line `ArtifactError`s naming the file.

    check_finite=False leaves NaN/inf rows in place for a check to count and report.
    """
    path = Path(path)
    arrays = read_npz(path, "file")
    missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if missing:
        raise ArtifactError(path, f"is missing array(s) {', '.join(missing)} (has: {', '.join(arrays) or 'nothing'})")
    provenance = parse_provenance(path, arrays["provenance"]) if "provenance" in arrays else {}
    return eval_set_from_arrays(path, arrays, provenance, expected_dim=expected_dim, check_finite=check_finite)


def eval_set_from_arrays(path: Path, arrays: dict[str, Any], provenance: dict[str, Any], expected_dim: int | None = None, check_finite: bool = True) -> EvalSet:
    """Validate `contexts`, `targets`, `truth_keys` (and `context_keys`, when present) read from any layout.

    The one validation of eval rows: our `.npz` (`load_eval_set`) and every other layout
    (`lvmcore.artifacts.layout_rows`) go through it. Vectors must be float32 and are never cast;
    keys are checked, then widened to int64 (an int32 key names the same payload row).
    """
    contexts, targets, truth_keys = arrays["contexts"], arrays["targets"], arrays["truth_keys"]
    require_shape(path, "contexts", contexts, rank=3)
    require_shape(path, "targets", targets, rank=2)
    require_shape(path, "truth_keys", truth_keys, rank=2, last=2)
    require_float32(path, "contexts", contexts)
    require_float32(path, "targets", targets)
    require_keys_valid(path, "truth_keys", truth_keys)
    m, c, d = contexts.shape
    require_rows(path, "contexts", contexts, "an eval set with no rows measures nothing; every check on it would pass on nothing")
    if c == 0:
        raise ArtifactError(path, f"'contexts' has context length 0 (shape {contexts.shape}): every row needs at least one context vector")
    if d == 0:
        raise ArtifactError(path, f"'contexts' has dimension 0 (shape {contexts.shape})")
    if targets.shape != (m, d):
        raise ArtifactError(path, f"'targets' has shape {targets.shape}, expected {(m, d)} to match 'contexts' {contexts.shape}")
    if len(truth_keys) != m:
        raise ArtifactError(path, f"'truth_keys' has {len(truth_keys)} rows for {m} contexts")
    if expected_dim is not None and d != expected_dim:
        raise ArtifactError(path, f"vectors have dimension {d} but the payload has dimension {expected_dim}")
    context_keys = arrays.get("context_keys")
    if context_keys is not None:
        if context_keys.shape != (m, c, 2):
            raise ArtifactError(path, f"'context_keys' has shape {context_keys.shape}, expected {(m, c, 2)}")
        require_keys_valid(path, "context_keys", context_keys)
        context_keys = context_keys.astype(np.int64, copy=False)
    if check_finite:
        require_finite(path, "contexts", contexts)
        require_finite(path, "targets", targets)
    return EvalSet(
        path=path,
        contexts=contexts,
        targets=targets,
        truth_keys=truth_keys.astype(np.int64, copy=False),
        context_keys=context_keys,
        provenance=provenance,
    )


def write_eval_set(
    path: str | Path,
    contexts: np.ndarray,
    targets: np.ndarray,
    truth_keys: np.ndarray,
    context_keys: np.ndarray | None,
    provenance: dict[str, Any],
) -> Path:
    """Write an eval set (or training data) `.npz` in our format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "contexts": np.asarray(contexts, dtype=np.float32),
        "targets": np.asarray(targets, dtype=np.float32),
        "truth_keys": np.asarray(truth_keys, dtype=np.int64),
        "provenance": np.array(json.dumps(provenance, sort_keys=True)),
    }
    if context_keys is not None:
        arrays["context_keys"] = np.asarray(context_keys, dtype=np.int64)
    write_atomic(path, lambda out: np.savez(out, **arrays))
    return path
