"""Batched inference: predictions for contexts, and the payload tower's encoding of a bank."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from lvmcore.gate.query_sets import BankFn, PredictFn


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def batched(fn: Callable[[torch.Tensor], torch.Tensor], contexts: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """fn over contexts (M, C, D) in batches under inference mode -> (M, D) float32 numpy.

    Reads contexts batch by batch, so a memory-mapped (M, C, D) array is never copied whole.
    """
    parts: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(contexts), batch_size):
            batch = torch.from_numpy(np.array(contexts[start : start + batch_size], dtype=np.float32)).to(device)  # (b, C, D)
            parts.append(fn(batch).float().cpu().numpy())  # (b, D)
    if not parts:
        return np.zeros((0, contexts.shape[-1]), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def predict(model: nn.Module, contexts: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The model's predictions (M, D) float32 for contexts (M, C, D), in batches (`batched`).

    The model is put in eval mode (no dropout) and left there.
    """
    model.eval()
    return batched(model, contexts, batch_size, model_device(model))


def encode_bank(model: nn.Module, vectors: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """`model.encode_bank` over (N, D) vectors in batches: the bank a two-tower model's predictions are searched in.

    For a one-tower model this returns the vectors unchanged (as float32).
    """
    if int(getattr(model, "tower_count", 1)) == 1:
        return np.asarray(vectors, dtype=np.float32)
    model.eval()
    device = model_device(model)
    out = np.empty((len(vectors), vectors.shape[1]), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(vectors), batch_size):
            batch = torch.from_numpy(np.array(vectors[start : start + batch_size], dtype=np.float32)).to(device)  # (b, D)
            out[start : start + len(batch)] = model.encode_bank(batch).float().cpu().numpy()  # (b, D)
    return out


def predictor(model: nn.Module, batch_size: int = 1024) -> tuple[PredictFn, BankFn | None]:
    """The functions `lvmcore.gate.evaluate` takes: predict_fn, and bank_fn for a two-tower model (else None)."""

    def predict_fn(contexts: np.ndarray) -> np.ndarray:
        return predict(model, contexts, batch_size=batch_size)

    if int(getattr(model, "tower_count", 1)) != 2:
        return predict_fn, None

    def bank_fn(vectors: np.ndarray) -> np.ndarray:
        return encode_bank(model, vectors, batch_size=batch_size)

    return predict_fn, bank_fn


def nonfinite_parameters(model: nn.Module) -> int:
    """NaN or inf entries over the model's floating-point parameters and buffers."""
    with torch.no_grad():
        return int(sum(int((~torch.isfinite(t)).sum()) for t in model.state_dict().values() if torch.is_floating_point(t)))
