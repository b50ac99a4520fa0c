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

try:  # the Cholesky solve (scipy is a dependency; LU stands in if an environment lacks it)
    from scipy.linalg import cho_factor, cho_solve
except ImportError:  # pragma: no cover (the LU branch is tested by setting cho_factor to None)
    cho_factor = cho_solve = None

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
    """X^T X and X^T Y over batches, with a bias column, summed in float64; never holds all windows at once.

    Each batch's products are float32 (sgemm; `s.T @ s` is ssyrk, one triangle), 1.7x faster than
    float64 at seed scale (bench/ridge_cost.py); their sums across batches are float64. The
    products are taken on the rows less a shift (the first batch's means), so that their rounding
    is relative to the spread of the features, not to their means, which embeddings often share;
    the sums are shifted back in float64. With x = s + m (s the shifted row, m the shift):

        sum x x^T = sum s s^T + m (sum s)^T + (sum s) m^T + n m m^T
        sum x y^T = sum s t^T + m (sum t)^T + (sum s) my^T + n m my^T   (y = t + my)

    so the result is X^T X and X^T Y of the rows, as the float64 sums were, to float32 rounding of
    each batch's spread (bounded against float64 least squares in tests/test_metrics.py).
    """
    sxx = sxy = sx = sy = shift_x = shift_y = None
    n = 0
    for contexts, targets in batches:
        x = np.asarray(contexts, dtype=np.float32).reshape(len(contexts), -1)  # (B, F), F = C*D
        y = np.asarray(targets, dtype=np.float32)  # (B, D)
        if shift_x is None:
            shift_x = x.mean(axis=0, dtype=np.float64).astype(np.float32)  # (F,)
            shift_y = y.mean(axis=0, dtype=np.float64).astype(np.float32)  # (D,)
            sxx = np.zeros((x.shape[1], x.shape[1]))  # (F, F) float64
            sxy = np.zeros((x.shape[1], y.shape[1]))  # (F, D) float64
            sx, sy = np.zeros(x.shape[1]), np.zeros(y.shape[1])  # (F,), (D,) float64
        s = x - shift_x  # (B, F) float32
        t = y - shift_y  # (B, D) float32
        sxx += s.T @ s  # (F, F): a float32 product, a float64 sum
        sxy += s.T @ t  # (F, D)
        sx += s.sum(axis=0, dtype=np.float64)
        sy += t.sum(axis=0, dtype=np.float64)
        n += len(x)
    if shift_x is None:
        raise ValueError("no training windows to fit the ridge baseline on")
    m, my = shift_x.astype(np.float64), shift_y.astype(np.float64)  # (F,), (D,)
    features = len(m)
    half = sx + 0.5 * n * m  # (F,): m sx^T + sx m^T + n m m^T = m half^T + half m^T, one rank-2 product
    xtx = np.empty((features + 1, features + 1))  # (F + 1, F + 1): [X, 1]^T [X, 1]
    xtx[:features, :features] = sxx + np.stack([m, half], axis=1) @ np.stack([half, m])  # (F, 2) @ (2, F)
    xtx[:features, features] = xtx[features, :features] = sx + n * m  # X^T 1
    xtx[features, features] = n
    xty = np.empty((features + 1, len(my)))  # (F + 1, D): [X, 1]^T Y
    xty[:features] = sxy + np.stack([m, sx], axis=1) @ np.stack([sy + n * my, my])  # m (sy + n my)^T + sx my^T
    xty[features] = sy + n * my  # 1^T Y
    return xtx, xty, n


def _solve(xtx: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
    """W of (X^T X + reg) W = X^T Y, in float64; reg = alpha * mean(diag X^T X) on the features, 0 on the bias.

    The system is symmetric positive definite for alpha > 0 (and for alpha = 0 with X of full
    column rank), so it is solved by Cholesky: n^3/3 flops for the factor where LU takes 2n^3/3,
    1.7x faster at n = 3,841 with 768 right-hand sides (bench/ridge_cost.py). Without scipy, LU.
    """
    features = xtx.shape[0] - 1
    scale = np.trace(xtx[:features, :features]) / max(1, features)
    system = np.array(xtx.T, order="F")  # (F + 1, F + 1): xtx is symmetric (to rounding), so xtx.T as it lies is xtx in LAPACK's order
    system[np.arange(features), np.arange(features)] += alpha * scale  # never shrink the bias
    if cho_factor is None:
        return np.linalg.solve(system, xty)  # (F + 1, D)
    return cho_solve(cho_factor(system, overwrite_a=True, check_finite=False), xty, check_finite=False)  # (F + 1, D)


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
