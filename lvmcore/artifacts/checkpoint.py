"""Checkpoints: a plain dict of tensors and JSON-able values, written atomically, read with weights_only.

Layout (`format: "lvm-checkpoint/1"`), every value loadable by `torch.load(path, weights_only=True)`:
    model_config, model_state, optimizer_state, scheduler_state, rng_state, epoch, step, metrics,
    provenance {embedder, dim, norm, metric, payload_hash, train_data, validation_data},
    training_articles, validation_articles, negatives_per_positive, train_config
    (and `resume`, the loop's position inside an epoch, in `last.pt`).

Never a pickled Python object: a checkpoint is an artifact somebody hands us, and loading it must
not run code from the file.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvmcore.errors import ArtifactError

CHECKPOINT_FORMAT = "lvm-checkpoint/1"
REQUIRED_FIELDS = ("model_config", "model_state")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, on CPU) and everything stored beside it."""

    path: Path
    model: nn.Module
    model_config: dict[str, Any]
    epoch: int
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    training_articles: list[int] = field(default_factory=list)
    validation_articles: list[int] = field(default_factory=list)
    negatives_per_positive: int | None = None
    train_config: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    scheduler_state: dict[str, Any] | None = field(default=None, repr=False)
    rng_state: dict[str, Any] | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int | None:
        value = self.provenance.get("dim", self.model_config.get("dim"))
        return None if value is None else int(value)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | Path, content: dict[str, Any]) -> Path:
    """Write `content` to `path` atomically: a temp file in the same directory, fsync, then os.replace.

    A reader (or a crash) sees the previous file or the whole new one, never half of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"format": CHECKPOINT_FORMAT, **content}
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            torch.save(content, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes 0600; give it a normal file's mode
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    """torch.load(weights_only=True) of a checkpoint file, every failure one `ArtifactError` line."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "checkpoint file not found")
    with path.open("rb") as handle:
        magic = handle.read(4)
    is_zip_start = magic == b"PK\x03\x04"
    if is_zip_start and not zipfile.is_zipfile(path):
        raise ArtifactError(path, f"is truncated or corrupt: a torch zip archive without its central directory ({path.stat().st_size} bytes)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in first or "Unsupported global" in str(exc):
            raise ArtifactError(path, "is not a checkpoint: it holds pickled Python objects that torch.load(weights_only=True) refuses to run") from None
        raise ArtifactError(path, f"is not a checkpoint: cannot be unpickled ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if is_zip_start or isinstance(exc, EOFError):
            raise ArtifactError(path, f"is truncated or corrupt: {first}") from None
        raise ArtifactError(path, f"is not a checkpoint: {first}") from None
    if not isinstance(content, dict) or "format" not in content:
        kind = type(content).__name__ if not isinstance(content, dict) else "a dict without 'format'"
        raise ArtifactError(path, f"is not a checkpoint: holds {kind} (expected \"format\": \"{CHECKPOINT_FORMAT}\")")
    if content["format"] != CHECKPOINT_FORMAT:
        raise ArtifactError(path, f"has format {content['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    missing = [name for name in REQUIRED_FIELDS if name not in content]
    if missing:
        raise ArtifactError(path, f"is missing field(s) {', '.join(missing)}")
    return content


def first_state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """The first difference between a model's state dict and a checkpoint's, in words, or None."""
    for name, tensor in expected.items():
        if name not in found:
            return f"parameter '{name}' is missing"
        if tuple(found[name].shape) != tuple(tensor.shape):
            return f"parameter '{name}' has shape {tuple(found[name].shape)}, the model needs {tuple(tensor.shape)}"
    for name in found:
        if name not in expected:
            return f"has unexpected parameter '{name}'"
    return None


def load_checkpoint(path: str | Path, expected_dim: int | None = None) -> Checkpoint:
    """Load a checkpoint and rebuild its model in eval mode; problems raise one-line `ArtifactError`s.

    expected_dim: the payload's dimension; a checkpoint for another dimension is refused.
    """
    from lvmcore.models import build_model, model_config_from_dict

    path = Path(path)
    content = read_checkpoint_dict(path)
    config_dict = dict(content["model_config"])
    try:
        model = build_model(model_config_from_dict(config_dict))
    except ArtifactError as exc:
        raise ArtifactError(path, f"model_config cannot be built: {exc.problem}") from None
    except (TypeError, KeyError, ValueError) as exc:
        raise ArtifactError(path, f"model_config cannot be built: {exc}") from None
    state = content["model_state"]
    if not isinstance(state, dict):
        raise ArtifactError(path, "model_state is not a state dict")
    mismatch = first_state_mismatch(model.state_dict(), state)
    if mismatch:
        raise ArtifactError(path, f"holds another model's weights for model_config kind {config_dict.get('kind')!r}: {mismatch}")
    model.load_state_dict(state)
    model.eval()
    checkpoint = Checkpoint(
        path=path,
        model=model,
        model_config=config_dict,
        epoch=int(content.get("epoch", 0)),
        step=int(content.get("step", 0)),
        metrics=dict(content.get("metrics", {})),
        provenance=dict(content.get("provenance", {})),
        training_articles=[int(a) for a in content.get("training_articles", [])],
        validation_articles=[int(a) for a in content.get("validation_articles", [])],
        negatives_per_positive=None if content.get("negatives_per_positive") is None else int(content["negatives_per_positive"]),
        train_config=dict(content.get("train_config", {})),
        optimizer_state=content.get("optimizer_state"),
        scheduler_state=content.get("scheduler_state"),
        rng_state=content.get("rng_state"),
        raw=content,
    )
    if expected_dim is not None and checkpoint.dim is not None and checkpoint.dim != expected_dim:
        raise ArtifactError(path, f"was trained on {checkpoint.dim}-D vectors but the payload has dimension {expected_dim}")
    return checkpoint
