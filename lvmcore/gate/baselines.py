"""Trivial next-chunk predictors computed from the CONTEXTS ONLY, to be beaten by any model worth training.

A baseline never sees the truth target of the row it predicts (an "oracle baseline" that queries
with the target itself scores 100% and proves nothing: FAILURE_MODES row 12). Three are standard:

- copy-last: predict the last context vector. On smooth documents neighbouring chunks are close,
  so this is strong (the public team's copy-last cosine was 0.47).
- mean of context: the normalized mean of the C context vectors.
- linear ridge: a closed-form ridge map from the FLATTENED context (C*D features) to the next
  vector, fitted on training windows. Flattened rather than last-vector only, because the
  flattened map contains the last-vector map as a special case (zero weights on earlier
  positions) and can also learn the drift from chunk t-1 to t; at C=5, D=768 it is a 3,840 x 3,840
  solve, seconds on a CPU. Ridge strength is chosen on a held-out tenth of the training windows,
  never on the eval set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from lvmcore.vectors import l2_normalize

RIDGE_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridge strength as a fraction of the mean feature variance
ContextBaseline = Callable[[np.ndarray], np.ndarray]  # contexts (M, C, D) -> predictions (M, D)


def copy_last(contexts: np.ndarray) -> np.ndarray:
    """(M, C, D) -> (M, D): the last context vector, normalized."""
    return l2_normalize(np.asarray(contexts)[:, -1, :])  # (M, D)


def mean_of_context(contexts: np.ndarray) -> np.ndarray:
    """(M, C, D) -> (M, D): the normalized mean of the context vectors."""
    return l2_normalize(np.asarray(contexts, dtype=np.float32).mean(axis=1))  # (M, D)


# The registry: every baseline computed from the contexts alone, by the name the reports and the gates use.
# A new one is a function here and a line below; the baselines cache (lvmcore.gate.fixed_sets) is keyed by
# `registry_identity()`, so a warm cache never hides it.
CONTEXT_BASELINES: dict[str, ContextBaseline] = {"copy_last": copy_last, "mean_context": mean_of_context}
FITTED_BASELINES = ("ridge",)  # fitted on training windows: only with training data


def registry_identity() -> str:
    """What the baselines cache must match: the registered names and this module's source (an edited baseline is a new one)."""
    source = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8).hexdigest()
    return f"{','.join([*CONTEXT_BASELINES, *FITTED_BASELINES])}@{source}"


@dataclass(frozen=True)
class RidgeBaseline:
    """y = [flatten(context), 1] @ weights, normalized; weights (C*D + 1, D)."""

    weights: np.ndarray  # (C*D + 1, D) float32
    alpha: float
    fitted_on: int  # training windows used

    def __call__(self, contexts: np.ndarray) -> np.ndarray:
        contexts = np.asarray(contexts, dtype=np.float32)
        flat = contexts.reshape(len(contexts), -1)  # (M, C*D)
        return l2_normalize(flat @ self.weights[:-1] + self.weights[-1])  # (M, D)


def _gram(batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, int]:
    """X^T X and X^T Y over batches, with a bias column, in float64; never holds all windows at once."""
    xtx = xty = None
    n = 0
    for contexts, targets in batches:
        x = np.asarray(contexts, dtype=np.float64).reshape(len(contexts), -1)  # (B, C*D)
        x = np.hstack([x, np.ones((len(x), 1))])  # (B, C*D + 1)
        y = np.asarray(targets, dtype=np.float64)  # (B, D)
        xtx = x.T @ x if xtx is None else xtx + x.T @ x
        xty = x.T @ y if xty is None else xty + x.T @ y
        n += len(x)
    if xtx is None:
        raise ValueError("no training windows to fit the ridge baseline on")
    return xtx, xty, n


def _solve(xtx: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
    features = xtx.shape[0] - 1
    scale = np.trace(xtx[:features, :features]) / max(1, features)
    reg = np.full(xtx.shape[0], alpha * scale)
    reg[-1] = 0.0  # never shrink the bias
    return np.linalg.solve(xtx + np.diag(reg), xty)  # symmetric positive definite for alpha > 0


def fit_ridge(
    batch_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    rows: np.ndarray,
    batch_size: int = 4096,
    alphas: tuple[float, ...] = RIDGE_ALPHAS,
) -> RidgeBaseline:
    """Fit the ridge map on training windows `rows`, read through `batch_of(rows) -> (contexts, targets)`.

    The last tenth of `rows` is held out to pick alpha by mean cosine; the final map is refitted on
    all rows with that alpha.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise ValueError("no training windows to fit the ridge baseline on")
    cut = len(rows) - max(1, len(rows) // 10) if len(rows) >= 20 else len(rows)
    fit_rows, hold_rows = rows[:cut], rows[cut:]

    def batches(subset: np.ndarray):
        for start in range(0, len(subset), batch_size):
            yield batch_of(subset[start : start + batch_size])

    xtx_fit, xty_fit, _ = _gram(batches(fit_rows))
    best_alpha = alphas[len(alphas) // 2]
    if len(hold_rows):
        hold_contexts, hold_targets = batch_of(hold_rows)
        best_cos = -np.inf
        for alpha in alphas:
            model = RidgeBaseline(_solve(xtx_fit, xty_fit, alpha).astype(np.float32), alpha, len(fit_rows))
            cos = float(np.einsum("md,md->m", model(hold_contexts), l2_normalize(hold_targets)).mean())
            if cos > best_cos:
                best_alpha, best_cos = alpha, cos
        xtx_hold, xty_hold, _ = _gram([(hold_contexts, hold_targets)])
        xtx_fit, xty_fit = xtx_fit + xtx_hold, xty_fit + xty_hold
    weights = _solve(xtx_fit, xty_fit, best_alpha).astype(np.float32)
    return RidgeBaseline(weights=weights, alpha=best_alpha, fitted_on=len(rows))


BASELINE_NAMES = ("copy_last", "mean_context", "ridge")
