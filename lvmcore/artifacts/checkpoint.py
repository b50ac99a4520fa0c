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

import pathlib
import pickle
import re
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvmcore.errors import ArtifactError
from lvmcore.files import write_atomic

CHECKPOINT_FORMAT = "lvm-checkpoint/1"
SAFE_PATH_TYPES = (pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath)
FOREIGN_STATE_KEYS = {"model_state_dict", "state_dict", "model"}  # how other training scripts name their weights
REQUIRED_FIELDS = ("model_config", "model_state")


@dataclass
class CheckpointRecord:
    """What a checkpoint records about its training, without its weights: what the gates read."""

    path: Path
    model_config: dict[str, Any]
    epoch: int | None  # None: a foreign checkpoint that does not say
    step: int | None
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    training_articles: list[int] = field(default_factory=list)
    validation_articles: list[int] = field(default_factory=list)
    negatives_per_positive: int | None = None
    train_config: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int | None:
        value = self.provenance.get("dim", self.model_config.get("dim"))
        return None if value is None else int(value)

    @property
    def history_path(self) -> Path:
        """Where training wrote this run's `history.json`: beside the checkpoint."""
        return self.path.parent / "history.json"


@dataclass
class Checkpoint(CheckpointRecord):
    """A loaded checkpoint: the record, the model (eval mode, on CPU) and the optimizer's states."""

    model: nn.Module | None = None
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    scheduler_state: dict[str, Any] | None = field(default=None, repr=False)
    rng_state: dict[str, Any] | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def record(self) -> CheckpointRecord:
        """The record alone, so a caller can drop the weights and keep the facts."""
        return CheckpointRecord(**{f.name: getattr(self, f.name) for f in fields(CheckpointRecord)})


def save_checkpoint(path: str | Path, content: dict[str, Any]) -> Path:
    """Write `content` to `path` atomically (`lvmcore.files.write_atomic`): the old file or the whole new one."""
    content = {"format": CHECKPOINT_FORMAT, **content}
    return write_atomic(path, lambda out: torch.save(content, out))


def peek_epoch_step(path: str | Path) -> tuple[Any, Any] | None:
    """(epoch, step) of a checkpoint without reading its weights (`torch.load(mmap=True)`), None if unreadable.

    Used to tell a `last.pt`/`best.pt` that duplicates an `epoch_NNN.pt` from one that does not.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable here: the caller keeps the file and the full reader reports it properly
        return None
    if not isinstance(state, dict):
        return None
    return state.get("epoch"), state.get("step")


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
        with torch.serialization.safe_globals(list(SAFE_PATH_TYPES)):  # paths in a training script's args: data, not code
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in first or "Unsupported global" in str(exc):
            named = _refused_global(str(exc))
            raise ArtifactError(path, f"is not a checkpoint we can read safely: it holds pickled Python objects{named} that torch.load(weights_only=True) refuses to run; "
                                f"to gate it, load it in your own trusted code with --model-adapter module:function, or pass --model-file / --predictions (README: Gate any model)") from None
        raise ArtifactError(path, f"is not a checkpoint: cannot be unpickled ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if is_zip_start or isinstance(exc, EOFError):
            raise ArtifactError(path, f"is truncated or corrupt: {first}") from None
        raise ArtifactError(path, f"is not a checkpoint: {first}") from None
    if isinstance(content, dict) and "format" not in content and FOREIGN_STATE_KEYS & set(content):
        keys = ", ".join(sorted(str(k) for k in content)[:8])
        raise ArtifactError(path, f"is a training checkpoint of another codebase (keys {keys}): lvm-checks cannot rebuild its model class; "
                            f"gate it with --model-adapter module:function (your loader), --model-file (an exported program) or --predictions (README: Gate any model)")
    if not isinstance(content, dict) or "format" not in content:
        kind = type(content).__name__ if not isinstance(content, dict) else "a dict without 'format'"
        raise ArtifactError(path, f"is not a checkpoint: holds {kind} (expected \"format\": \"{CHECKPOINT_FORMAT}\")")
    if content["format"] != CHECKPOINT_FORMAT:
        raise ArtifactError(path, f"has format {content['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    missing = [name for name in REQUIRED_FIELDS if name not in content]
    if missing:
        raise ArtifactError(path, f"is missing field(s) {', '.join(missing)}")
    return content


def _refused_global(message: str) -> str:
    """' (pathlib.PosixPath)' when torch's refusal names the global it would not run, else ''."""
    match = re.search(r"(?:Unsupported global: GLOBAL|global) ([\w.]+)", message)
    return f" ({match.group(1)})" if match else ""


def read_foreign_record(path: str | Path) -> CheckpointRecord:
    """What a checkpoint of another codebase says about itself (epoch, val_* figures), read without running code.

    Used with `--model-adapter`: the adapter rebuilds the model; this keeps the facts for the report.
    A file that cannot be read safely gives a record with only its path.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(list(SAFE_PATH_TYPES)):
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # the adapter loads it its own way; nothing here to report
        content = {}
    if not isinstance(content, dict):
        content = {}
    epoch, step = content.get("epoch"), content.get("step", content.get("global_step"))
    metrics = {k: v for k, v in content.items() if isinstance(k, str) and k.startswith(("val_", "train_")) and isinstance(v, (int, float))}
    return CheckpointRecord(
        path=path, model_config={}, epoch=epoch if isinstance(epoch, int) else None, step=step if isinstance(step, int) else None,
        metrics=metrics, provenance=dict(content.get("provenance", {})) if isinstance(content.get("provenance"), dict) else {},
        training_articles=[int(a) for a in content.get("training_articles", [])] if isinstance(content.get("training_articles"), list) else [],
    )


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
