"""Interval maths against scipy and against what each interval must mean, one hop from `lvmcore.gate.intervals`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from lvmcore.gate import intervals
from lvmcore.gate.intervals import (
    Interval,
    bootstrap_mean_interval,
    mcnemar_exact_p,
    paired_difference,
    resolvable,
    rows_to_resolve,
    wilson_interval,
)

CONFIDENCES = st.sampled_from([0.8, 0.9, 0.95, 0.99])


@st.composite
def hits_and_rows(draw, max_rows: int = 5000) -> tuple[int, int]:
    n = draw(st.integers(1, max_rows))
    return draw(st.integers(0, n)), n


# --------------------------------------------------------------------------- Wilson


@settings(max_examples=200, deadline=None)
@given(hits_and_rows(), CONFIDENCES)
def test_wilson_matches_scipy(counts, confidence):
    hits, n = counts
    ours = wilson_interval(hits, n, confidence)
    theirs = binomtest(hits, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert abs(ours.low - theirs.low) < 1e-9, f"low {ours.low} vs scipy {theirs.low} for {hits}/{n} at {confidence}"
    assert abs(ours.high - theirs.high) < 1e-9, f"high {ours.high} vs scipy {theirs.high} for {hits}/{n} at {confidence}"


@settings(max_examples=200, deadline=None)
@given(hits_and_rows(max_rows=10**6), CONFIDENCES)
def test_wilson_contains_estimate_inside_unit_interval(counts, confidence):
    hits, n = counts
    got = wilson_interval(hits, n, confidence)
    assert got.estimate == hits / n
    assert 0.0 <= got.low <= got.estimate <= got.high <= 1.0, f"{got} for {hits}/{n}"
    assert got.low < got.high, f"Wilson never collapses to a point: {got}"


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 20), CONFIDENCES)
def test_wilson_narrows_and_nests_as_rows_grow_at_a_fixed_rate(twentieths, confidence):
    """The same rate k/20 over 20, 40, 80, ... rows: each interval strictly inside the previous one."""
    previous = None
    for n in (20 * 2**j for j in range(12)):
        got = wilson_interval(twentieths * n // 20, n, confidence)
        if previous is not None:
            assert got.high - got.low < previous.high - previous.low, f"{got} not narrower than {previous}"
            assert previous.low <= got.low and got.high <= previous.high, f"{got} not inside {previous}"
        previous = got


def test_wilson_of_no_rows_is_the_unit_interval():
    got = wilson_interval(0, 0)
    assert (got.low, got.high) == (0.0, 1.0)
    assert math.isnan(got.estimate) and got.method == "wilson"


def test_wilson_ends_are_exact_so_no_hits_never_excludes_zero():
    """0 hits: low is exactly 0 (the textbook form can give -1e-17 or +1e-17); one hit excludes 0."""
    for n in (1, 7, 421, 10**6):
        assert wilson_interval(0, n).low == 0.0 and not wilson_interval(0, n).excludes(0.0)
        assert wilson_interval(n, n).high == 1.0 and not wilson_interval(n, n).excludes(1.0)
        assert wilson_interval(1, n).excludes(0.0), f"1 hit of {n}: {wilson_interval(1, n)}"


def test_excludes_is_strict_and_two_sided():
    interval = Interval(0.2, 0.4, 0.3, 0.95, "test")
    assert [interval.excludes(v) for v in (0.1999, 0.2, 0.3, 0.4, 0.4001)] == [True, False, False, False, True]
    assert interval.as_dict() == {"low": 0.2, "high": 0.4, "estimate": 0.3, "confidence": 0.95, "method": "test"}


@pytest.mark.parametrize(("hits", "n", "confidence"), [(-1, 5, 0.95), (6, 5, 0.95), (0, -1, 0.95), (1, 5, 1.0), (1, 5, 0.0)])
def test_wilson_rejects_impossible_inputs(hits, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(hits, n, confidence)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_per_seed():
    values = 1.0 / np.random.default_rng(1).integers(1, 60, size=800)  # reciprocal ranks
    first, again = bootstrap_mean_interval(values, seed=3), bootstrap_mean_interval(values, seed=3)
    other = bootstrap_mean_interval(values, seed=4)
    assert first == again
    assert (other.low, other.high) != (first.low, first.high), "a different seed should draw different resamples"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=300), st.integers(1, 300), st.integers(0, 2**32 - 1))
def test_bootstrap_contains_the_mean(values, resamples, seed):
    """Even one resample (whose mean is almost never the sample mean) gives an interval holding the estimate."""
    values = np.asarray(values)
    got = bootstrap_mean_interval(values, resamples=resamples, seed=seed)
    assert got.estimate == pytest.approx(values.mean(), abs=1e-12)
    assert got.low <= got.estimate <= got.high, str(got)
    assert values.min() - 1e-12 <= got.low and got.high <= values.max() + 1e-12, str(got)


@pytest.mark.parametrize("constant", [0.0, 0.1, 1 / 3, 1.0])
def test_bootstrap_of_a_constant_is_degenerate_at_it(constant):
    got = bootstrap_mean_interval(np.full(1234, constant))
    assert got.low == got.high
    assert got.low == pytest.approx(constant, abs=1e-12)


@pytest.mark.parametrize(("rate", "rows"), [(0.05, 5000), (0.3, 2000), (0.6, 3000)])
def test_bootstrap_of_hits_approaches_wilson(rate, rows):
    """5,000 rows x 2,000 resamples is the size the chunked draw exists for."""
    hits = np.zeros(rows)
    hits[np.random.default_rng(0).permutation(rows)[: round(rate * rows)]] = 1.0
    boot = bootstrap_mean_interval(hits)
    wilson = wilson_interval(int(hits.sum()), rows)
    assert abs(boot.low - wilson.low) < 0.01 and abs(boot.high - wilson.high) < 0.01, f"bootstrap {boot} vs Wilson {wilson}"


def test_bootstrap_narrows_with_more_rows():
    rng = np.random.default_rng(2)
    small = bootstrap_mean_interval(rng.random(100))
    large = bootstrap_mean_interval(rng.random(10_000))
    assert large.high - large.low < 0.5 * (small.high - small.low), f"{large} vs {small}"


@pytest.mark.parametrize("values", [np.array([]), np.ones((3, 2)), np.array([0.5, np.nan])])
def test_bootstrap_rejects_bad_rows(values):
    with pytest.raises(ValueError):
        bootstrap_mean_interval(values)


# --------------------------------------------------------------------------- paired comparison


def hits_from_counts(both: int, a_only: int, b_only: int, neither: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """0/1 hits for model a and baseline b with the given cell counts, rows shuffled."""
    a = np.repeat([1.0, 1.0, 0.0, 0.0], [both, a_only, b_only, neither])
    b = np.repeat([1.0, 0.0, 1.0, 0.0], [both, a_only, b_only, neither])
    order = np.random.default_rng(seed).permutation(len(a))
    return a[order], b[order]


def test_identical_model_and_baseline_differ_by_nothing():
    a, b = hits_from_counts(40, 0, 0, 360)
    got = paired_difference(a, b)
    assert got.difference == 0.0 and (got.interval.low, got.interval.high) == (0.0, 0.0)
    assert (got.a_only, got.b_only, got.mcnemar_p, got.rows) == (0, 0, 1.0, 400)
    assert not got.beats()


def test_constant_difference_gives_a_degenerate_interval():
    b = 1.0 / np.arange(1, 301)  # reciprocal ranks: not 0/1
    got = paired_difference(b + 0.25, b)
    assert got.interval.low == pytest.approx(0.25, abs=1e-12) and got.interval.high == pytest.approx(0.25, abs=1e-12)
    assert (got.a_only, got.b_only, got.mcnemar_p) == (None, None, None)
    assert got.beats() and got.beats(0.2) and not got.beats(0.25 + 1e-9)


def test_model_hitting_every_baseline_row_and_thirty_more_beats_it():
    a, b = hits_from_counts(both=60, a_only=30, b_only=0, neither=310)
    got = paired_difference(a, b)
    assert got.difference == pytest.approx(30 / 400)
    assert (got.a_only, got.b_only) == (30, 0)
    assert got.mcnemar_p == 2.0**-29, f"McNemar p {got.mcnemar_p}: 30 discordant rows all one way is 2 * 2^-30"
    assert got.beats(), f"interval {got.interval} should sit above 0"
    assert got.interval.low > 0.04, f"interval {got.interval}: 30/400 = 7.5 points, none of it shared noise"


def test_one_row_of_four_hundred_is_no_evidence():
    a, b = hits_from_counts(both=20, a_only=1, b_only=0, neither=379)
    got = paired_difference(a, b)
    assert got.difference == pytest.approx(1 / 400)
    assert got.mcnemar_p == 1.0 and got.interval.low == 0.0
    assert not got.beats(), f"one row of 400 must not count as beating the baseline: {got.interval}"


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60), st.integers(0, 60))
def test_mcnemar_matches_scipy(both, a_only, b_only, neither):
    if both + a_only + b_only + neither == 0:
        neither = 1
    got = paired_difference(*hits_from_counts(both, a_only, b_only, neither), resamples=50)
    assert (got.a_only, got.b_only) == (a_only, b_only)
    if a_only + b_only == 0:
        assert got.mcnemar_p == 1.0
        return
    expected = binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue
    assert abs(got.mcnemar_p - expected) < 1e-9, f"McNemar p {got.mcnemar_p} vs scipy {expected} for {a_only}/{b_only}"


@pytest.mark.parametrize(("a_only", "b_only"), [(3, 9), (120, 80), (2400, 2600), (6000, 4100), (5100, 5300)])
def test_mcnemar_large_counts_match_scipy(a_only, b_only):
    """Up to and past EXACT_MCNEMAR_MAX discordant rows, where the sum switches to log-gamma."""
    expected = binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue
    assert abs(mcnemar_exact_p(a_only, b_only) - expected) < 1e-9


@pytest.mark.parametrize(("a_only", "b_only"), [(1, 0), (7, 12), (300, 340), (1000, 1100)])
def test_log_gamma_tail_agrees_with_the_integer_tail(monkeypatch, a_only, b_only):
    exact = mcnemar_exact_p(a_only, b_only)
    monkeypatch.setattr(intervals, "EXACT_MCNEMAR_MAX", 0)
    assert mcnemar_exact_p(a_only, b_only) == pytest.approx(exact, rel=1e-10, abs=1e-300)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.booleans(), st.integers(0, 2**32 - 1))
def test_swapping_model_and_baseline_mirrors_everything(rows, binary, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(0, 2, size=(2, rows)) * 1.0) if binary else rng.random((2, rows))
    ab, ba = paired_difference(a, b, resamples=300, seed=seed), paired_difference(b, a, resamples=300, seed=seed)
    assert ba.difference == -ab.difference
    assert ba.interval.low == pytest.approx(-ab.interval.high, abs=1e-12)
    assert ba.interval.high == pytest.approx(-ab.interval.low, abs=1e-12)
    assert (ba.a_only, ba.b_only, ba.mcnemar_p) == (ab.b_only, ab.a_only, ab.mcnemar_p)


def test_paired_difference_as_dict_nests_the_interval():
    got = paired_difference(*hits_from_counts(5, 3, 1, 11)).as_dict()
    assert set(got) == {"difference", "interval", "a_only", "b_only", "mcnemar_p", "rows"}
    assert got["interval"]["estimate"] == got["difference"] == 2 / 20 and got["rows"] == 20


def test_paired_difference_rejects_unpaired_rows():
    with pytest.raises(ValueError):
        paired_difference(np.ones(5), np.ones(6))


# --------------------------------------------------------------------------- eval-set size


def reference_resolves(rate: float, other: float, ns: np.ndarray, confidence: float) -> np.ndarray:
    """Independent check: textbook Wilson with scipy's z, ends clamped, hits rounded half up."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + confidence / 2)
    hits = np.floor(rate * ns + 0.5)
    p = hits / ns
    center = (2 * ns * p + z**2) / (2 * (ns + z**2))
    half = z * np.sqrt(z**2 + 4 * ns * p * (1 - p)) / (2 * (ns + z**2))
    low = np.where(hits == 0, 0.0, center - half)
    high = np.where(hits == ns, 1.0, center + half)
    return (other < low) | (other > high)


@pytest.mark.parametrize(("rate", "other", "expected"), [(0.05, 0.10, 153), (0.05, 0.0, 10)])
def test_rows_to_resolve_good_from_strong_and_minimum(rate, other, expected):
    """The figures the module docstring states for the eval-set size rule."""
    n = rows_to_resolve(rate, other)
    assert n == expected, f"rows_to_resolve({rate}, {other}) = {n}, docstring says {expected}"
    assert not resolvable(rate, other, n - 1), f"{n - 1} rows resolve {rate} vs {other}: {n} is not the least"
    failing = [m for m in range(n, 3 * n + 1) if not resolvable(rate, other, m)]
    assert not failing, f"{rate} vs {other}: rows_to_resolve says {n} but these larger n fail: {failing[:10]}"


def test_rows_to_resolve_is_from_here_on_not_first():
    """Lucky rounding resolves 5% vs 10% at 127 rows, yet 152 rows do not: the answer must be 153."""
    assert resolvable(0.05, 0.10, 127) and not resolvable(0.05, 0.10, 152)
    assert rows_to_resolve(0.05, 0.10) > 152


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 100), st.integers(0, 100), CONFIDENCES)
def test_rows_to_resolve_matches_brute_force(rate_pct, other_pct, confidence):
    rate, other = rate_pct / 100, other_pct / 100
    if abs(rate_pct - other_pct) < 3:
        other = 1.0 if rate < 0.5 else 0.0
    n = rows_to_resolve(rate, other, confidence)
    ns = np.arange(1, 3 * n + 50)
    ok = reference_resolves(rate, other, ns, confidence)
    fails = ns[~ok]
    assert ok[n - 1:].all(), f"{rate} vs {other} at {confidence}: n = {n} but larger n fail: {fails[fails >= n][:10]}"
    assert n == 1 or not ok[n - 2], f"{rate} vs {other} at {confidence}: n - 1 = {n - 1} also resolves from here on"
    assert resolvable(rate, other, n, confidence) and (n == 1 or not resolvable(rate, other, n - 1, confidence))


def test_three_rows_never_resolve_five_from_ten_percent():
    assert not any(resolvable(0.05, 0.10, n) for n in (0, 1, 2, 3))
    assert rows_to_resolve(0.05, 0.10) > 3


def test_the_default_eval_sets_421_rows_resolve_both_levels():
    """Computed: 21 hits of 421 gives Wilson [3.29%, 7.50%], excluding both 0% and 10%."""
    assert resolvable(0.05, 0.0, 421)
    assert resolvable(0.05, 0.10, 421)
    assert 421 >= max(rows_to_resolve(0.05, 0.10), rows_to_resolve(0.05, 0.0))


def test_rows_to_resolve_refuses_what_cannot_be_resolved():
    with pytest.raises(ValueError):
        rows_to_resolve(0.05, 0.05)
    with pytest.raises(ValueError):
        rows_to_resolve(0.05, 0.10, max_rows=152)
    assert rows_to_resolve(0.05, 0.10, max_rows=153) == 153
    with pytest.raises(ValueError):
        rows_to_resolve(0.05, 1.5)


def test_rows_to_resolve_grows_as_the_levels_close_in():
    gaps = [rows_to_resolve(0.05, other) for other in (0.20, 0.10, 0.08, 0.06)]
    assert gaps == sorted(gaps) and len(set(gaps)) == 4, gaps
    assert rows_to_resolve(0.05, 0.10, confidence=0.99) > rows_to_resolve(0.05, 0.10, confidence=0.95)


def test_refusals_name_the_figures_that_cannot_be_told_apart():
    with pytest.raises(ValueError, match=r"^rate and other are both 0\.05: no number of rows tells them apart$"):
        rows_to_resolve(0.05, 0.05)
    with pytest.raises(ValueError, match=r"^telling 0\.05 from 0\.1 at 95% needs more than max_rows=152 rows$"):
        rows_to_resolve(0.05, 0.10, max_rows=152)
    for rate, other in ((1.5, 0.1), (0.1, 1.5), (-0.1, 0.1), (0.1, -0.1)):
        with pytest.raises(ValueError, match=rf"^rate and other must lie in \[0, 1\], got {rate}, {other}$"):
            resolvable(rate, other, 100)
    assert resolvable(1.0, 0.0, 10) and resolvable(0.0, 1.0, 10)  # the edges of [0, 1] are rates


def test_every_refusal_says_what_was_wrong():
    cases = [
        (lambda: wilson_interval(6, 5), r"^need 0 <= hits <= n, got hits=6, n=5$"),
        (lambda: wilson_interval(1, 0), r"^need 0 <= hits <= n, got hits=1, n=0$"),
        (lambda: wilson_interval(1, 5, 1.0), r"^confidence must lie in \(0, 1\), got 1\.0$"),
        (lambda: wilson_interval(1, 5, 1.5), r"^confidence must lie in \(0, 1\), got 1\.5$"),
        (lambda: bootstrap_mean_interval(np.ones((3, 2))), r"^values must be a non-empty 1-D array of per-row values, got shape \(3, 2\)$"),
        (lambda: bootstrap_mean_interval(np.array([0.5, np.nan, 1.0])), r"^values holds 1 non-finite values$"),
        (lambda: bootstrap_mean_interval(np.ones(3), resamples=0), r"^resamples must be >= 1, got 0$"),
        (lambda: paired_difference(np.array([]), np.array([])), r"^a must be a non-empty 1-D array of per-row values, got shape \(0,\)$"),
        (lambda: paired_difference(np.ones(3), np.array([1.0, np.inf, np.nan])), r"^b holds 2 non-finite values$"),
        (lambda: paired_difference(np.ones(5), np.ones(6)), r"^a and b must hold the same rows, got 5 and 6$"),
        (lambda: mcnemar_exact_p(-1, 3), r"^discordant counts must be >= 0, got -1, 3$"),
        (lambda: mcnemar_exact_p(3, -1), r"^discordant counts must be >= 0, got 3, -1$"),
        (lambda: rows_to_resolve(0.05, 0.10, max_rows=128), r"^telling 0\.05 from 0\.1 at 95% needs more than max_rows=128 rows$"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_methods_name_the_interval_with_its_defaults():
    assert wilson_interval(3, 10).method == "wilson" and wilson_interval(0, 0).as_dict() == {
        "low": 0.0, "high": 1.0, "estimate": pytest.approx(float("nan"), nan_ok=True), "confidence": 0.95, "method": "wilson"}
    assert wilson_interval(0, 0, 0.9).confidence == 0.9
    assert bootstrap_mean_interval(np.ones(4)).method == "percentile bootstrap (2000 resamples, seed 0)"
    paired = paired_difference(np.ones(4), np.zeros(4))
    assert paired.interval.method == "paired percentile bootstrap (2000 resamples, seed 0)"


def test_paired_difference_takes_boolean_hits_and_counts_discordant_rows_only_for_hits():
    a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
    paired = paired_difference(a, b)
    assert (paired.difference, paired.a_only, paired.b_only, paired.mcnemar_p) == (0.0, 1, 1, 1.0)
    graded = paired_difference(np.array([1.0, 0.0, 1.0]), np.array([0.5, 0.2, 0.1]))  # a hits, b reciprocal ranks
    assert (graded.a_only, graded.b_only, graded.mcnemar_p) == (None, None, None)


def test_binomial_half_tail_at_its_edges_and_across_the_exact_limit():
    from fractions import Fraction
    from math import comb

    from lvmcore.gate.intervals import EXACT_MCNEMAR_MAX, _binomial_half_tail

    assert _binomial_half_tail(-1, 5) == 0.0 and _binomial_half_tail(5, 5) == 1.0 and _binomial_half_tail(6, 5) == 1.0
    assert _binomial_half_tail(2, 5) == (1 + 5 + 10) / 32
    m = EXACT_MCNEMAR_MAX  # the largest m summed in exact integers
    exact = Fraction(sum(comb(m, i) for i in range(4901)), 2**m)
    assert _binomial_half_tail(4900, m) == float(exact)
    assert _binomial_half_tail(m, m + 1) <= 1.0


def test_rows_to_resolve_is_one_past_the_last_row_count_that_fails():
    """Brute force: scan every n up to a bound far past the answer."""
    for rate, other in ((0.05, 0.10), (0.05, 0.0), (0.2, 0.1), (0.9, 1.0), (0.5, 0.3)):
        answer = rows_to_resolve(rate, other)
        ns = np.arange(1, 4 * answer + 50)
        fails = [n for n in ns if not resolvable(rate, other, int(n))]
        assert answer == (fails[-1] + 1 if fails else 1), (rate, other)
