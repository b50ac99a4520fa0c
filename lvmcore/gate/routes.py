"""Four ways to put a model in front of the gate, so that a model of any codebase can be judged.

| route | option | runs code? | what it gives |
|---|---|---|---|
| our checkpoint | `--checkpoint FILE.pt` | no (weights_only) | model, its record, `history.json` beside it |
| an adapter | `--checkpoint FILE --model-adapter module:function` | yes: the function you named | predictions of your own loader |
| an exported program | `--model-file FILE.pt2` (torch.export) or TorchScript `.pt`/`.ts` | the program's graph only | predictions |
| a predictions file | `--predictions FILE.npz` (`lvmcore.artifacts.predictions`) | no | stored predictions |

The contract for adapters and programs: contexts (B, C, D) float32 in, (B, D) or (B, C, D) out (the
last position is used); outputs are L2-normalised here, whatever the model did. An adapter's
function takes the checkpoint path and returns either a `torch.nn.Module` with that contract or a
plain function numpy (B, C, D) -> numpy (B, D).
"""

from __future__ import annotations

import importlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from lvmcore.artifacts.checkpoint import CheckpointRecord, load_checkpoint, read_foreign_record
from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.predictions import load_predictions
from lvmcore.artifacts.validate import require_file
from lvmcore.errors import ArtifactError, exception_reason
from lvmcore.gate.query_sets import BankFn, PredictFn
from lvmcore.gate.predict import batched, nonfinite_parameters, predictor
from lvmcore.vectors import l2_normalize

ROUTES = ("checkpoint", "adapter", "model_file", "predictions")
ROUTE_OPTION = {"checkpoint": "--checkpoint", "adapter": "--checkpoint", "model_file": "--model-file", "predictions": "--predictions"}  # the option that names a route's file
BATCH = 1024


@dataclass
class ModelUnderTest:
    """What the gate evaluates for one subject, whichever route it came by."""

    route: str
    record: CheckpointRecord  # what the subject records about its training (mostly empty off the checkpoint route)
    predict_fn: PredictFn | None  # None on the predictions route
    bank_fn: BankFn | None = None
    eval_predictions: np.ndarray | None = None  # the predictions route
    train_predictions: tuple[np.ndarray, np.ndarray] | None = None  # (window rows, predictions)
    nonfinite_weights: int | None = None  # None when there are no torch weights to read

    @property
    def has_training_record(self) -> bool:
        """Only our own checkpoints carry negatives and the LR trace in the form the training-record gates read."""
        return self.route in ("checkpoint", "adapter")


def module_predict_fn(module: Callable[[torch.Tensor], torch.Tensor], batch_size: int = BATCH) -> PredictFn:
    """numpy (M, C, D) -> unit numpy (M, D) through a torch callable with the (B, C, D) -> (B, D) | (B, C, D) contract."""

    def last_position(batch: torch.Tensor) -> torch.Tensor:  # (b, C, D) -> (b, D), the contract checked
        try:
            out = module(batch)
        except Exception as exc:  # an exported graph for other shapes, a damaged program: one line, the model's own words
            raise ArtifactError(None, f"the model failed on contexts of shape {tuple(batch.shape)}: {type(exc).__name__}: {exception_reason(exc, fallback='')}") from None
        out = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(out, torch.Tensor) or out.ndim not in (2, 3) or out.shape[0] != len(batch):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ArtifactError(None, f"the model returned {shape} for contexts of shape {tuple(batch.shape)}; expected (B, D) or (B, C, D)")
        return out[:, -1, :] if out.ndim == 3 else out

    def predict_fn(contexts: np.ndarray) -> np.ndarray:
        return l2_normalize(batched(last_position, contexts, batch_size, torch.device("cpu")))

    return predict_fn


@contextmanager
def quiet_logger(name: str):
    """Raise a library logger to ERROR for the duration (restored afterwards)."""
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(saved)


def from_checkpoint(path: Path, dim: int) -> ModelUnderTest:
    loaded = load_checkpoint(path, expected_dim=dim)
    predict_fn, bank_fn = predictor(loaded.model)
    return ModelUnderTest("checkpoint", loaded.record(), predict_fn, bank_fn, nonfinite_weights=nonfinite_parameters(loaded.model))


def resolve_adapter(spec: str) -> Callable[[str], Any]:
    """`module:function` -> the function, imported because the user named it (trusted code)."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ArtifactError(None, f"--model-adapter {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ArtifactError(None, f"--model-adapter {spec!r}: cannot import {module_name!r} ({exc}); put its folder on PYTHONPATH") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ArtifactError(None, f"--model-adapter {spec!r}: {module_name} has no function {function_name!r}")
    return function


def from_adapter(path: Path, spec: str) -> ModelUnderTest:
    loaded = resolve_adapter(spec)(str(path))
    record = read_foreign_record(path)
    if isinstance(loaded, nn.Module):
        loaded.eval()
        return ModelUnderTest("adapter", record, module_predict_fn(loaded), nonfinite_weights=nonfinite_parameters(loaded))
    if callable(loaded):
        def predict_fn(contexts: np.ndarray) -> np.ndarray:
            return l2_normalize(np.asarray(loaded(np.asarray(contexts, dtype=np.float32)), dtype=np.float32))

        return ModelUnderTest("adapter", record, predict_fn)
    raise ArtifactError(path, f"--model-adapter {spec} returned {type(loaded).__name__}; expected a torch.nn.Module or a function contexts -> predictions")


def from_model_file(path: Path) -> ModelUnderTest:
    """A `torch.export` program (.pt2) or TorchScript file: a graph, no Python code from the file is run."""
    require_file(path, "model file")  # missing, a directory, a symlink loop: each named
    try:
        if path.suffix == ".pt2":
            with quiet_logger("torch.export"):  # it logs a traceback of its own before raising; our one line says it
                module = torch.export.load(str(path)).module()
        else:
            module = torch.jit.load(str(path), map_location="cpu")
            module.eval()
    except Exception as exc:  # torch raises many types for a file that is not a program
        raise ArtifactError(path, f"cannot be loaded as a torch.export (.pt2) or TorchScript program: {exception_reason(exc, limit=None)}") from None
    weights = nonfinite_parameters(module) if isinstance(module, nn.Module) else None
    return ModelUnderTest("model_file", CheckpointRecord(path=path, model_config={}, epoch=None, step=None), module_predict_fn(module), nonfinite_weights=weights)


def from_predictions(path: Path, eval_set: EvalSet) -> ModelUnderTest:
    stored = load_predictions(path, eval_set)
    provenance = dict(stored.provenance)
    articles = provenance.pop("training_articles", [])
    record = CheckpointRecord(path=path, model_config={}, epoch=None, step=None, provenance=provenance, training_articles=[int(a) for a in articles])
    train = None if stored.train_predictions is None else (stored.train_rows, l2_normalize(stored.train_predictions))
    return ModelUnderTest("predictions", record, None, eval_predictions=l2_normalize(stored.eval_predictions), train_predictions=train)
