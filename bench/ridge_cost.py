"""What the ridge baseline's fit (lvmcore.gate.baselines.fit_ridge) costs at seed scale, against the plain float64 fit.

The gate fits the ridge on up to RIDGE_MAX_WINDOWS training windows (20,000; C*D = 3,840 features
and a bias, D = 768 targets): the Gram products X^T X and X^T Y over batches, then six solves (five
alphas on the fit rows, one refit on all rows). The library takes the products in float32 on
shifted rows and solves by Cholesky; the plain fit, run here alternately in the same process, takes
them in float64 and solves by LU (np.linalg.solve), as the library did before. Prints the medians
of `--repeat` fits of each, their ratio, how far the two fits' results are apart, and with
`--phases` each phase alone (reading the windows, the Gram, one solve):

    python bench/ridge_cost.py --bank /work/seed/584545x768
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

if __package__ in (None, ""):  # run as `python bench/ridge_cost.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvmcore.artifacts.evalset import load_eval_set
from lvmcore.artifacts.payload import load_payload
from lvmcore.artifacts.training_data import load_training_data
from lvmcore.gate import baselines
from lvmcore.gate.evaluate import RIDGE_MAX_WINDOWS
from lvmcore.sampling import sample_rows
from lvmcore.vectors import cosine_rows


def gram_float64(batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, int]:
    """X^T X and X^T Y with a bias column, products and sums in float64 (the library before its fast path)."""
    xtx = xty = None
    n = 0
    for contexts, targets in batches:
        x = np.asarray(contexts, dtype=np.float64).reshape(len(contexts), -1)  # (B, F)
        x = np.hstack([x, np.ones((len(x), 1))])  # (B, F + 1)
        y = np.asarray(targets, dtype=np.float64)  # (B, D)
        xtx = x.T @ x if xtx is None else xtx + x.T @ x
        xty = x.T @ y if xty is None else xty + x.T @ y
        n += len(x)
    return xtx, xty, n


def solve_lu(xtx: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
    """The same regularised system as baselines._solve, by LU."""
    features = xtx.shape[0] - 1
    reg = np.full(xtx.shape[0], alpha * np.trace(xtx[:features, :features]) / max(1, features))
    reg[-1] = 0.0
    return np.linalg.solve(xtx + np.diag(reg), xty)  # (F + 1, D)


@contextmanager
def plain_float64() -> Iterator[None]:
    """fit_ridge with its float64 Gram and LU solve: the same selection and refit code, the old arithmetic."""
    fast = baselines._gram, baselines._solve
    baselines._gram, baselines._solve = gram_float64, solve_lu
    try:
        yield
    finally:
        baselines._gram, baselines._solve = fast


def seconds(run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def print_phases(training, rows: np.ndarray) -> None:
    batches, read = seconds(lambda: [training.batch(rows[i : i + 4096]) for i in range(0, len(rows), 4096)])
    (xtx, xty, _), gram64 = seconds(lambda: gram_float64(batches))
    _, gram32 = seconds(lambda: baselines._gram(batches))
    _, lu = seconds(lambda: solve_lu(xtx, xty, 1e-4))
    _, cholesky = seconds(lambda: baselines._solve(xtx, xty, 1e-4))
    print(f"phases: read windows {read:.2f} s; Gram float64 {gram64:.2f} s, library {gram32:.2f} s; one solve LU {lu:.2f} s, Cholesky {cholesky:.2f} s (x6 per fit)")


def print_difference(a: baselines.RidgeBaseline, b: baselines.RidgeBaseline, eval_set) -> None:
    weights = np.abs(b.weights.astype(np.float64) - a.weights).max() / np.abs(a.weights).max()
    cosine = cosine_rows(b(eval_set.contexts), a(eval_set.contexts))
    print(f"alpha: float64 {a.alpha}, library {b.alpha}; weights max |diff| / max |w| {weights:.2e}; "
          f"{eval_set.count:,} eval predictions: min cosine 1 - {1 - cosine.min():.1e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, required=True, help="a seed bank folder (bench/make_seed_bank.py): payload/, train.json, eval.npz")
    parser.add_argument("--windows", type=int, default=RIDGE_MAX_WINDOWS)
    parser.add_argument("--repeat", type=int, default=3, help="fits of each kind, alternating")
    parser.add_argument("--phases", action="store_true", help="also time each phase alone (about one fit more)")
    args = parser.parse_args(argv)
    payload = load_payload(args.bank / "payload", check_finite=False)
    training = load_training_data(args.bank / "train.json", payload)
    eval_set = load_eval_set(args.bank / "eval.npz", expected_dim=payload.dim)
    rows = sample_rows(training.count, args.windows, 0)
    print(f"ridge fit on {len(rows):,} windows of {args.bank} (C*D = {training.context_length * payload.dim:,} features, D = {payload.dim})")

    times: dict[str, list[float]] = {"plain": [], "fast": []}
    fits: dict[str, baselines.RidgeBaseline] = {}
    for _ in range(args.repeat):
        with plain_float64():
            fits["plain"], took = seconds(lambda: baselines.fit_ridge(training.batch, rows))
        times["plain"].append(took)
        fits["fast"], took = seconds(lambda: baselines.fit_ridge(training.batch, rows))
        times["fast"].append(took)
    plain, fast = statistics.median(times["plain"]), statistics.median(times["fast"])
    print(f"fit_ridge, float64 Gram + LU:  median {plain:.2f} s  {[round(t, 2) for t in times['plain']]}")
    print(f"fit_ridge, library (float32 products, Cholesky): median {fast:.2f} s  {[round(t, 2) for t in times['fast']]}")
    print(f"ratio {plain / fast:.2f}x")

    if args.phases:
        print_phases(training, rows)
    print_difference(fits["plain"], fits["fast"], eval_set)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
