"""Confidence intervals for gate figures: Wilson for R@K, bootstrap for MRR, paired tests against baselines.

Why: on a 421-row eval set one hit moves R@5 by 0.24 points, so "R@5 = 5.2%" alone cannot say
whether a model beats a baseline, or whether the eval set could tell 'good' from 'strong' at all.
Everything here takes counts or per-row arrays (hit 0/1 at K, or reciprocal ranks) and returns
frozen dataclasses; numpy and the standard library only.

- `wilson_interval(hits, n)`: the Wilson score interval of a proportion (R@K).
- `bootstrap_mean_interval(values)`: percentile bootstrap of a mean over rows (MRR).
- `paired_difference(a, b)`: model minus baseline on the SAME rows: paired bootstrap of the mean
  difference, and the exact McNemar test on the discordant rows when the values are hits.
- `rows_to_resolve(rate, other)` / `resolvable(rate, other, n)`: how many eval rows it takes before
  a model observed at `rate` is told apart from `other`.

The eval-set size rule (a plumbing check): an eval set must have at least
`rows_to_resolve(good, strong)` and `rows_to_resolve(good, minimum)` rows, so that a model sitting
exactly at the 'good' R@5 level (5%) is told apart at 95% from both the 'minimum' (0%) and the
'strong' (10%) level. With the Wilson interval and hits = nearest integer to 0.05 n (halves up):

- 5% vs 10%: `rows_to_resolve(0.05, 0.10) == 153`: every n >= 153 resolves, 152 does not (8 hits,
  upper bound 10.04%). Some smaller n resolve by lucky rounding (127-129, 140-149), which is why the
  figure is "from here on", not "first".
- 5% vs 0%: `rows_to_resolve(0.05, 0.0) == 10`: one hit already excludes 0, and n >= 10 rounds
  0.05 n up to at least one hit.

So 5% vs 10% is the binding one: an eval set needs at least 153 rows. The default bank's 421 eval
rows resolve both (21 hits of 421: Wilson 95% interval [3.29%, 7.50%]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

DRAW_ELEMENTS = 1 << 20  # bootstrap indices drawn per chunk: (chunk, rows) int64 stays near 8 MiB
EXACT_MCNEMAR_MAX = 10_000  # discordant pairs up to which the binomial tail is summed in integers
_SCAN = 1 << 16  # rows_to_resolve checks this many n at a time below its certified bound
_SLACK = 1e-12  # widens the rounding bound in rows_to_resolve so float error cannot break it
_MAX_SEARCH = 1 << 62


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval [low, high] around `estimate`, and how it was made."""

    low: float
    high: float
    estimate: float
    confidence: float
    method: str

    def excludes(self, value: float) -> bool:
        """True when `value` lies strictly outside [low, high]."""
        return value < self.low or value > self.high

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """Per-row values a (model) and b (baseline) on the same rows, compared.

    `difference` = mean(a) - mean(b) = mean(a - b); `interval` is the paired percentile bootstrap of
    that mean. For 0/1 hits, `a_only` / `b_only` count rows only a / only b hit, and `mcnemar_p` is
    the exact two-sided McNemar p-value; all three are None when a or b is not 0/1.
    """

    difference: float
    interval: Interval
    a_only: int | None
    b_only: int | None
    mcnemar_p: float | None
    rows: int

    def beats(self, margin: float = 0.0) -> bool:
        """a beats b by more than `margin`: the interval's lower bound is above it."""
        return self.interval.low > margin

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- Wilson


def _z(confidence: float) -> float:
    """Two-sided normal quantile z = Phi^-1((1 + confidence) / 2); 1.95996... at 95%."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + 0.5 * confidence)


def _wilson_bounds(p: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson bounds for proportions p (real, in [0, 1]) over n > 0 rows, elementwise.

    The textbook form (2np + z^2 -+ z sqrt(z^2 + 4npq)) / (2(n + z^2)) cancels catastrophically near
    p = 0 and p = 1; multiplying by the conjugate gives the same bounds without cancellation:
        low  = 2 n p^2 / (2np + z^2 + z sqrt(z^2 + 4npq)),  q = 1 - p
        high = 1 - 2 n q^2 / (2nq + z^2 + z sqrt(z^2 + 4npq))
    so low == 0 exactly at p = 0 and high == 1 exactly at p = 1.
    """
    p = np.asarray(p, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    q = 1.0 - p
    root = np.sqrt(z * z + 4.0 * n * p * q)
    low = 2.0 * n * p * p / (2.0 * n * p + z * z + z * root)
    high = 1.0 - 2.0 * n * q * q / (2.0 * n * q + z * z + z * root)
    return low, high


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion hits / n: the p with |hits/n - p| <= z sqrt(p(1-p)/n).

    Unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse to a point at
    0 or n hits, which is where R@K of a weak model sits. n = 0 gives [0, 1] and a NaN estimate.
    """
    hits, n = int(hits), int(n)
    if n < 0 or not 0 <= hits <= max(n, 0):
        raise ValueError(f"need 0 <= hits <= n, got hits={hits}, n={n}")
    z = _z(confidence)
    if n == 0:
        return Interval(0.0, 1.0, float("nan"), confidence, "wilson")
    low, high = _wilson_bounds(np.float64(hits / n), np.float64(n), z)
    return Interval(float(low), float(high), hits / n, confidence, "wilson")


# --------------------------------------------------------------------------- bootstrap


def _as_rows(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-row values, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(values)).sum())} non-finite values")
    return values


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` resamples of the rows with replacement, (resamples,).

    Indices are drawn (chunk, rows) at a time with chunk = DRAW_ELEMENTS // rows, so 5,000 rows x
    2,000 resamples holds about 1M indices at once; the chunking depends only on the row count, so
    a seed gives the same means on every call.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rows = len(values)
    rng = np.random.default_rng(seed)
    chunk = max(1, DRAW_ELEMENTS // rows)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        index = rng.integers(0, rows, size=(stop - start, rows))  # (c, rows)
        means[start:stop] = values[index].mean(axis=1)  # (c,)
    return means


def _percentile_interval(values: np.ndarray, confidence: float, resamples: int, seed: int, method: str) -> Interval:
    _z(confidence)  # validates confidence
    estimate = float(values.mean())
    means = _bootstrap_means(values, resamples, seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # The percentile interval need not contain the estimate (extreme skew, or 1-ulp rounding of
    # the resample means); widen it to the estimate so `estimate in [low, high]` always holds.
    low, high = min(float(low), estimate), max(float(high), estimate)
    return Interval(low, high, estimate, confidence, f"{method} ({resamples} resamples, seed {seed})")


def bootstrap_mean_interval(values: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval for the mean of per-row values (MRR = mean reciprocal rank).

    Resample the rows with replacement `resamples` times; the interval is the alpha/2 and 1 - alpha/2
    quantiles of the resample means, alpha = 1 - confidence. Reciprocal ranks have no closed-form
    interval like Wilson's; for 0/1 values and many rows this one approaches Wilson.
    """
    return _percentile_interval(_as_rows(values, "values"), confidence, resamples, seed, "percentile bootstrap")


# --------------------------------------------------------------------------- paired comparison


def _binomial_half_tail(k: int, m: int) -> float:
    """P(X <= k) for X ~ Bin(m, 1/2) = sum_{i <= k} C(m, i) / 2^m.

    Up to EXACT_MCNEMAR_MAX trials the sum is in exact integers (one correctly rounded division);
    above, log-space terms from math.lgamma summed with log-sum-exp.
    """
    if k < 0:
        return 0.0
    if k >= m:
        return 1.0
    if m <= EXACT_MCNEMAR_MAX:
        term, total = 1, 1  # C(m, 0)
        for i in range(k):
            term = term * (m - i) // (i + 1)  # C(m, i + 1)
            total += term
        return total / (1 << m)
    log_terms = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2.0) for i in range(k + 1)]
    top = max(log_terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in log_terms))


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: p = min(1, 2 P(X <= min(a_only, b_only))), X ~ Bin(a_only + b_only, 1/2).

    Only the discordant rows carry evidence; under "a and b are equally good" each of them is a
    fair coin. No discordant rows gives 1.0.
    """
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {a_only}, {b_only}")
    m = a_only + b_only
    if m == 0:
        return 1.0
    return min(1.0, 2.0 * _binomial_half_tail(min(a_only, b_only), m))


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> PairedDifference:
    """Model (a) minus baseline (b) on the same rows: mean difference, paired bootstrap, McNemar.

    The bootstrap resamples ROWS and takes both values of each drawn row, i.e. it bootstraps the
    mean of d = a - b; pairing removes the between-row variance the two share, so the interval is
    far narrower than two separate intervals would suggest. When a and b are 0/1 hits, McNemar's
    exact test uses the discordant rows (a_only: a hit, b missed; b_only: the reverse).
    """
    a, b = _as_rows(a, "a"), _as_rows(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold the same rows, got {len(a)} and {len(b)}")
    interval = _percentile_interval(a - b, confidence, resamples, seed, "paired percentile bootstrap")
    binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    a_only = b_only = p = None
    if binary:
        a_only = int(((a == 1.0) & (b == 0.0)).sum())
        b_only = int(((a == 0.0) & (b == 1.0)).sum())
        p = mcnemar_exact_p(a_only, b_only)
    return PairedDifference(interval.estimate, interval, a_only, b_only, p, len(a))


# --------------------------------------------------------------------------- eval-set size


def _rounded_hits(rate: float, n: np.ndarray) -> np.ndarray:
    """hits = nearest integer to rate * n, halves rounded up (not Python's round-half-to-even)."""
    return np.clip(np.floor(rate * n + 0.5), 0, n)


def _resolves(rate: float, other: float, n: np.ndarray, z: float) -> np.ndarray:
    """Elementwise `resolvable` over an int array of row counts n >= 1."""
    n = np.asarray(n, dtype=np.int64)
    low, high = _wilson_bounds(_rounded_hits(rate, n) / n, n, z)
    return (other < low) | (other > high)


def _check_rates(rate: float, other: float) -> None:
    if not (0.0 <= rate <= 1.0 and 0.0 <= other <= 1.0):
        raise ValueError(f"rate and other must lie in [0, 1], got {rate}, {other}")


def resolvable(rate: float, other: float, n: int, confidence: float = 0.95) -> bool:
    """Does an n-row eval set tell `rate` from `other`? The Wilson interval of hits / n excludes `other`,
    where hits = nearest integer to rate * n (halves up): the observation closest to `rate`.
    """
    _check_rates(rate, other)
    if n < 1:
        return False  # n = 0: the interval is [0, 1]
    return bool(_resolves(rate, other, np.array([n]), _z(confidence))[0])


def rows_to_resolve(rate: float, other: float, confidence: float = 0.95, max_rows: int = 10**7) -> int:
    """The smallest n such that `resolvable(rate, other, n')` holds for EVERY n' >= n.

    Rounding hits to an integer makes `resolvable` only nearly monotone in n (a lucky rounding can
    resolve at a smaller n and the next n fail), so the first resolving n is not the answer.
    Instead: for every n the rounded proportion lies within 1/(2n) of `rate`, and the Wilson
    bounds move monotonically with p and n (the interval for fixed p shrinks, nested, as n grows).
    So the worst rounding, p = rate +- 1/(2n) towards `other`, resolving at n certifies every
    larger n; that certified n_safe is found by doubling then bisection, and the n below it are
    scanned down to the last one that fails. Raises ValueError when the answer exceeds max_rows.
    """
    _check_rates(rate, other)
    if rate == other:
        raise ValueError(f"rate and other are both {rate}: no number of rows tells them apart")
    z = _z(confidence)
    if not _resolves(rate, other, np.array([max_rows]), z)[0]:
        raise ValueError(f"telling {rate} from {other} at {confidence:.0%} needs more than max_rows={max_rows} rows")

    def certified(n: int) -> bool:  # worst rounding resolves at n, hence at every n' >= n
        if other > rate:
            p = min(1.0, rate + 0.5 / n + _SLACK)
            return bool(_wilson_bounds(p, n, z)[1] < other)
        p = max(0.0, rate - 0.5 / n - _SLACK)
        return bool(_wilson_bounds(p, n, z)[0] > other)

    high = 1
    while not certified(high):
        high *= 2
        if high > _MAX_SEARCH:
            raise ValueError(f"no certified row count for {rate} vs {other} below {_MAX_SEARCH}")
    low = high // 2  # certified(low) is False, or low == 0
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if certified(mid) else (mid, high)
    top = high - 1  # every n > top resolves; find the largest n <= top that fails
    while top >= 1:
        ns = np.arange(max(1, top - _SCAN + 1), top + 1, dtype=np.int64)
        fails = ns[~_resolves(rate, other, ns, z)]
        if len(fails):
            top = int(fails[-1])
            break
        top = int(ns[0]) - 1
    answer = max(top, 0) + 1
    if answer > max_rows:
        raise ValueError(f"telling {rate} from {other} at {confidence:.0%} needs more than max_rows={max_rows} rows")
    return answer
