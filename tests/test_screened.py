"""The bfloat16 screen of exact search (lvmcore/search/screened.py) returns the float32 top-k.

Compared with the plain float32 search on banks built to make a screen fail: duplicated rows (exact
ties), rows whose scores differ by less than a bfloat16 step (so bfloat16 orders them wrongly), rows
of very different norms, queries whose best scores are negative, and zero queries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvmcore.search import exact as exact_module
from lvmcore.search import screened
from lvmcore.search.exact import exact_search, exact_search_float32
from lvmcore.search.screened import rounded, screen_margin, screened_search

BLOCK = 256  # small blocks: several per bank, so tau_hat rises across blocks as it does at scale


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def assert_same_top_k(reference: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], queries: np.ndarray, tie: float = 1e-5) -> None:
    """Scores equal position by position; rows equal except among scores tied within `tie` of each other."""
    ref_scores, ref_rows = reference
    got_scores, got_rows = got
    np.testing.assert_allclose(got_scores[queries], ref_scores[queries], atol=tie, rtol=0)
    for q in queries:
        differ = ref_rows[q] != got_rows[q]
        if not differ.any():
            continue
        kth = ref_scores[q, -1]
        for pos in np.flatnonzero(differ):  # a swap is only allowed between tied scores (or at the tied tail)
            tied = np.abs(ref_scores[q] - ref_scores[q, pos]) <= tie
            assert got_rows[q, pos] in set(ref_rows[q, tied]) or abs(ref_scores[q, pos] - kth) <= tie, (q, pos)


def bank_with_traps(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    bank = unit(rng.standard_normal((rows, dim)))
    bank[rows // 2 : rows // 2 + 5] = bank[3]  # exact duplicates across blocks
    close = bank[10] + 1e-4 * unit(rng.standard_normal((1, dim)))[0]  # below a bfloat16 step from row 10
    bank[rows - 7] = close
    bank[rows - 20 : rows - 10] *= rng.uniform(0.2, 3.0, (10, 1)).astype(np.float32)  # other norms
    return bank


def test_top_k_matches_float32_on_a_bank_with_traps():
    rng = np.random.default_rng(0)
    bank = bank_with_traps(rng, 5 * BLOCK + 37, 64)
    queries = np.concatenate([bank[[3, 10, 200, 1000]] + 0.01 * rng.standard_normal((4, 64)).astype(np.float32),
                              -bank[[5, 6]],  # every good score negative: the float comparison path
                              np.zeros((1, 64), np.float32),  # a zero query: left to float32
                              rng.standard_normal((40, 64)).astype(np.float32)]).astype(np.float32)
    reference = exact_search_float32(bank, queries, 20, None)
    scores, rows, left = screened_search(bank, queries, 20, BLOCK)
    assert 6 in left
    assert_same_top_k(reference, (scores, rows), np.setdiff1d(np.arange(len(queries)), left))


def bfloat16_inverted_pair(rng: np.random.Generator, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, a, b): b scores higher than a in float32, lower than a in bfloat16 (found by trying)."""
    for _ in range(10_000):
        query = unit(rng.standard_normal((1, dim)))[0]
        a = unit((0.9 * query + 0.3 * rng.standard_normal(dim))[None])[0]
        b = (a + 3e-4 * unit(rng.standard_normal((1, dim)))[0]).astype(np.float32)
        if float(b @ query) <= float(a @ query):
            continue
        low = torch.from_numpy(np.stack([a, b])).to(torch.bfloat16) @ torch.from_numpy(query).to(torch.bfloat16)
        if float(low[1]) < float(low[0]):
            return query, a, b
    raise AssertionError("no inverted pair found")


def inverted_bank(seed: int, dim: int = 64) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    query, a, b = bfloat16_inverted_pair(rng, dim)
    bank = unit(rng.standard_normal((4 * BLOCK, dim))) * 0.5
    bank[5], bank[3 * BLOCK + 9] = a, b  # the float32 winner in the last block, after a bfloat16-better row
    return query[None], bank, 3 * BLOCK + 9


def test_a_row_bfloat16_ranks_below_its_rival_is_still_found():
    """b beats a in float32 but not in bfloat16: only the margin keeps b; float32 must rank it first."""
    query, bank, winner = inverted_bank(1)
    scores, rows, left = screened_search(bank, query, 1, BLOCK)
    assert not len(left)
    assert rows[0, 0] == winner


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), blocks=st.integers(2, 5), extra=st.integers(0, BLOCK - 1), dim=st.sampled_from([8, 48, 96]),
       k=st.integers(1, 40), scale=st.sampled_from([1.0, 0.01, 50.0]), duplicates=st.booleans(), clustered=st.booleans())
def test_screen_equals_float32_search(seed, blocks, extra, dim, k, scale, duplicates, clustered):
    rng = np.random.default_rng(seed)
    rows = blocks * BLOCK + extra
    if clustered:  # many rows near a few centres: dense scores near the top, the screen's hard case
        centres = unit(rng.standard_normal((3, dim)))
        bank = unit(centres[rng.integers(0, 3, rows)] + 0.02 * rng.standard_normal((rows, dim)))
    else:
        bank = unit(rng.standard_normal((rows, dim)))
    bank = (bank * scale).astype(np.float32)
    if duplicates:
        bank[rng.integers(0, rows, 30)] = bank[0]
    queries = np.concatenate([bank[rng.integers(0, rows, 6)] / scale + 0.05 * rng.standard_normal((6, dim)),
                              rng.standard_normal((6, dim))]).astype(np.float32)
    reference = exact_search_float32(bank, queries, k, None)
    scores, found, left = screened_search(bank, queries, k, BLOCK)
    assert_same_top_k(reference, (scores, found), np.setdiff1d(np.arange(len(queries)), left), tie=1e-5 * max(scale, 1.0))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dim=st.sampled_from([4, 64, 768]), q_scale=st.floats(1e-3, 1e3), x_scale=st.floats(1e-3, 1e3))
def test_margin_bounds_the_bfloat16_product_before_rounding(seed, dim, q_scale, x_scale):
    """|bf16(q) . bf16(x) (exact) - s32(q, x)| <= eps, for every row; the accumulation term covers the rest."""
    rng = np.random.default_rng(seed)
    queries = (rng.standard_normal((8, dim)) * q_scale).astype(np.float32)
    rows = (rng.standard_normal((50, dim)) * x_scale).astype(np.float32)
    rows[0] = queries[0]  # a row equal to a query: the largest score
    q_low, q_norms, q_errors, q_low_norms = rounded(queries)
    x_low, x_norms, x_errors, x_low_norms = rounded(rows)
    eps = screen_margin(q_norms, q_errors, q_low_norms, x_norms.max(), x_errors.max(), x_low_norms.max(), dim)
    before_rounding = q_low.double().numpy() @ x_low.double().numpy().T
    float32 = np.einsum("qd,nd->qn", queries, rows)  # float32 sums
    assert np.all(np.abs(before_rounding - float32) <= eps[:, None])


def test_without_the_margin_the_screen_loses_rows(monkeypatch):
    """The margin is what makes the screen exact: with eps = 0 and no half-ulp slack, the inverted pair's winner is lost."""
    monkeypatch.setattr(screened, "screen_margin", lambda *args: np.zeros(len(args[0])))
    monkeypatch.setattr(screened, "half_ulp_bound", lambda values: np.zeros_like(values))
    query, bank, winner = inverted_bank(1)
    scores, rows, left = screened_search(bank, query, 1, BLOCK)
    assert rows[0, 0] != winner


def test_exact_search_routes_by_the_switch(monkeypatch):
    rng = np.random.default_rng(4)
    bank = unit(rng.standard_normal((3 * BLOCK + 5, 32)))
    queries = np.concatenate([unit(rng.standard_normal((20, 32))), np.zeros((1, 32), np.float32)])
    monkeypatch.setattr(exact_module, "SEARCH_BLOCK_ROWS", BLOCK)
    calls = []
    real = exact_module.screened_search
    monkeypatch.setattr(exact_module, "screened_search", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setenv(screened.SWITCH, "on")
    on = exact_search(bank, queries, 10)
    assert calls, "the screen was not used with the switch on"
    monkeypatch.setenv(screened.SWITCH, "off")
    calls.clear()
    off = exact_search(bank, queries, 10)
    assert not calls
    assert_same_top_k(off, on, np.arange(len(queries)))  # the zero query came back through float32
    monkeypatch.setenv(screened.SWITCH, "auto")
    exact_search(bank, queries, 10)
    assert not calls, "auto screened a search far below MIN_SCORES"


def test_two_tower_banks_are_never_screened(monkeypatch):
    rng = np.random.default_rng(5)
    bank = unit(rng.standard_normal((3 * BLOCK, 16)))
    monkeypatch.setattr(exact_module, "SEARCH_BLOCK_ROWS", BLOCK)
    monkeypatch.setenv(screened.SWITCH, "on")
    monkeypatch.setattr(exact_module, "screened_search", lambda *a: pytest.fail("screened a transformed bank"))
    exact_search(bank, unit(rng.standard_normal((4, 16))), 5, transform=lambda block: block * 2)


def test_the_probe_answers_and_is_measured_once():
    screened.bf16_pays.cache_clear()
    first = screened.bf16_pays()
    assert isinstance(first, bool)
    assert screened.bf16_pays.cache_info().hits == 0
    screened.bf16_pays()
    assert screened.bf16_pays.cache_info().hits == 1


def test_rounding_thresholds_is_monotone():
    values = np.sort(np.random.default_rng(6).standard_normal(10_000)) * 3
    rounded_values = screened.to_bf16_threshold(values).float().numpy()
    assert np.all(np.diff(rounded_values) >= 0)
    assert rounded_values.dtype == np.float32 and torch.bfloat16 == screened.to_bf16_threshold(values[:1]).dtype


def simulate_screen(true_scores: list[np.ndarray], errors: list[np.ndarray], margins: list[float], k: int) -> set[int]:
    """The screen's bookkeeping on given numbers: blocks of true scores, each score seen as bf16(true + error),
    |error| <= its block's margin. Returns the rows scored in float32 at the end (their indices overall)."""
    kept_rows, kept_hat = [], []
    worst = 0.0
    offset = 0
    tau_hat = None
    for scores, error, margin in zip(true_scores, errors, margins):
        worst = max(worst, margin)
        s_hat = screened.to_bf16_threshold(scores + error).float().numpy().astype(np.float64)  # the same rounding as the product's output
        if tau_hat is None:
            tau_hat = np.sort(s_hat)[-k]
        limit = screened.to_bf16_threshold(screened.keep_limit(np.array([tau_hat]), np.array([worst]), np.array([margin]))).float().numpy()[0]
        keep = np.flatnonzero(s_hat >= limit)
        kept_rows.extend(keep + offset)
        kept_hat.extend(s_hat[keep])
        tau_hat = np.sort(kept_hat)[-k] if len(kept_hat) >= k else tau_hat
        offset += len(scores)
    final = screened.to_bf16_threshold(screened.final_limit(np.array([tau_hat]), np.array([worst]))).float().numpy()[0]
    return {row for row, hat in zip(kept_rows, kept_hat) if hat >= final}


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), blocks=st.integers(2, 6), k=st.integers(1, 8), spread=st.sampled_from([1e-3, 1e-2, 0.1]),
       level=st.sampled_from([-0.5, 0.05, 0.7]))
def test_screen_bookkeeping_keeps_the_true_top_k_against_an_adversary(seed, blocks, k, spread, level):
    """Errors at +-margin chosen to hurt most (the true best rows look worse, the rest better): the true top-k survives."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(k, 40, blocks)
    margins = list(rng.uniform(1e-4, 5e-3, blocks))
    true_scores = [level + spread * rng.standard_normal(n) for n in sizes]
    every = np.concatenate(true_scores)
    kth = np.sort(every)[-k]
    errors = [np.where(t >= kth, -m, m) * rng.choice([1.0, 0.999], len(t)) for t, m in zip(true_scores, margins)]
    survivors = simulate_screen(true_scores, errors, margins, k)
    assert set(np.flatnonzero(every >= kth)) <= survivors


def test_candidates_never_name_a_padding_column():
    """The last block is padded to whole groups; a query with no threshold (-inf) must not get the padding back."""
    scores = torch.zeros((3, 200), dtype=torch.bfloat16)
    thresholds = screened.to_bf16_threshold(np.array([-np.inf, 0.5, -1.0]))
    queries, columns, crowded = screened.candidates(scores, thresholds)
    assert columns.max() < 200
    assert set(queries[~crowded[queries]]) <= {0, 2}


def test_half_ulp_bound_covers_every_positive_and_negative_bfloat16_value():
    """Any value that rounds up (in magnitude, either sign) to t lies within half_ulp_bound(t) of t."""
    bits = torch.arange(0x3C00, 0x4100, dtype=torch.int32).to(torch.int16)  # bfloat16 values from 2**-7 to 8
    values = bits.view(torch.bfloat16).float().numpy().astype(np.float64)
    below = (bits - 1).view(torch.bfloat16).float().numpy().astype(np.float64)  # the neighbour one step toward zero
    reach = (values - below) / 2  # a value half a step below still rounds to t (ties go either way)
    bound = screened.half_ulp_bound(values)
    assert np.all(reach <= bound) and np.all(reach <= screened.half_ulp_bound(-values))
