"""Ranks and the figures made from them (lvmcore.search.hits), against brute force and ranx.

Every R@K, MRR and recall curve the suite reports (plumbing's oracle recall, the gate and its
intervals, the report's curves, training's validation, the sharded search) is computed by these
functions, so these tests pin the figures once for all of them.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.gate.metrics import retrieval_figures, retrieval_intervals
from lvmcore.search.hits import equal_vector_hits, first_hit_rank, hits_at, key_hits, mean_reciprocal_rank, recall_at, recall_curve, reciprocal_ranks

DEPTH = 8
hit_lists = st.lists(st.lists(st.booleans(), min_size=DEPTH, max_size=DEPTH), min_size=1, max_size=30)
rank_lists = st.lists(st.integers(0, DEPTH), min_size=1, max_size=40)


def brute_rank(row: list[bool]) -> int:
    return row.index(True) + 1 if True in row else 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_key_hits_mark_every_row_with_the_truth_key_and_no_padding(seed: int) -> None:
    rng = np.random.default_rng(seed)
    payload_keys = np.stack([rng.integers(0, 3, 12), rng.integers(0, 3, 12)], axis=1)  # duplicated keys on purpose
    rows = rng.integers(-1, 12, (6, 5))  # -1: a list shorter than K
    truth = payload_keys[rng.integers(0, 12, 6)]
    expected = [[r >= 0 and tuple(payload_keys[r]) == tuple(truth[i]) for r in rows[i]] for i in range(6)]
    assert key_hits(rows, payload_keys, truth).tolist() == expected


def test_payload_row_zero_is_a_row_and_minus_one_is_padding_even_in_a_one_row_payload() -> None:
    keys = np.array([[7, 3]])
    hits = key_hits(np.array([[0, -1], [-1, 0]]), keys, np.array([[7, 3], [7, 3]]))
    assert hits.tolist() == [[True, False], [False, True]]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_equal_vector_hits_mark_rows_within_atol_of_the_truth_vector(seed: int) -> None:
    rng = np.random.default_rng(seed)
    payload = rng.integers(0, 3, (10, 3)).astype(np.float32)  # repeated vectors on purpose
    rows = rng.integers(-1, 10, (5, 4))
    truth = payload[rng.integers(0, 10, 5)] + rng.choice([0.0, 0.5, 1.0], (5, 3)).astype(np.float32)  # 0.5: exactly atol away
    expected = [[r >= 0 and float(np.abs(payload[r] - truth[i]).max()) <= 0.5 for r in rows[i]] for i in range(5)]
    assert equal_vector_hits(rows, payload, truth, atol=0.5).tolist() == expected


def test_equal_vector_hits_default_to_float32_noise_only() -> None:
    """By default only float32 noise (1e-6) separates a hit from its truth: a vector 0.001 away is another chunk."""
    payload = np.array([[1.0, 0.0], [1.0, 0.001]], dtype=np.float32)
    truth = np.array([[1.0, 5e-7]], dtype=np.float32)
    assert equal_vector_hits(np.array([[0, 1]]), payload, truth).tolist() == [[True, False]]


def test_equal_vector_hits_see_payload_row_zero_and_never_padding() -> None:
    payload = np.array([[1.0, 0.0]], dtype=np.float32)
    hits = equal_vector_hits(np.array([[0, -1]]), payload, np.array([[1.0, 0.0]], dtype=np.float32))
    assert hits.tolist() == [[True, False]]


@given(hit_lists)
def test_first_hit_rank_is_the_position_of_the_first_hit(hit_rows) -> None:
    assert first_hit_rank(np.array(hit_rows)).tolist() == [brute_rank(row) for row in hit_rows]


def test_any_nonzero_entry_is_a_hit() -> None:
    """Hits given as counts (0/1/2 matching rows) rank by the first nonzero entry, not the largest."""
    assert first_hit_rank(np.array([[0, 1, 2], [0, 0, 3], [0, 0, 0]])).tolist() == [2, 3, 0]


@given(rank_lists, st.integers(0, DEPTH + 1))
def test_hits_and_recall_at_k_count_first_hits_at_or_above_k(ranks, k) -> None:
    expected = [1.0 if 1 <= r <= k else 0.0 for r in ranks]
    assert hits_at(np.array(ranks), k).tolist() == expected
    assert recall_at(np.array(ranks), k) == pytest.approx(sum(expected) / len(ranks), abs=1e-15)


@given(rank_lists)
def test_mrr_is_the_mean_of_one_over_the_rank_and_a_miss_counts_zero(ranks) -> None:
    expected = [1.0 / r if r else 0.0 for r in ranks]
    assert reciprocal_ranks(np.array(ranks)).tolist() == pytest.approx(expected, abs=1e-15)
    assert mean_reciprocal_rank(np.array(ranks)) == pytest.approx(sum(expected) / len(ranks), abs=1e-15)


@given(rank_lists)
def test_recall_curve_is_r_at_k_for_each_k_and_climbs_to_the_share_found(ranks) -> None:
    curve = recall_curve(np.array(ranks), DEPTH)
    assert curve == [recall_at(np.array(ranks), k) for k in range(1, DEPTH + 1)]
    assert all(a <= b for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(sum(r > 0 for r in ranks) / len(ranks), abs=1e-15)
    assert curve[0] == pytest.approx(sum(r == 1 for r in ranks) / len(ranks), abs=1e-15)


def test_figures_by_hand() -> None:
    ranks = np.array([1, 2, 0, 4])
    assert [recall_at(ranks, k) for k in (1, 2, 3, 4, 50)] == [0.25, 0.5, 0.5, 0.75, 0.75]
    assert mean_reciprocal_rank(ranks) == (1 + 0.5 + 0 + 0.25) / 4
    assert recall_curve(ranks, 4) == [0.25, 0.5, 0.5, 0.75]


def test_no_queries_give_zero_figures_and_an_empty_curve() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert recall_at(empty, 5) == 0.0 and mean_reciprocal_rank(empty) == 0.0 and recall_curve(empty, 5) == []
    assert first_hit_rank(np.zeros((0, 5), dtype=bool)).tolist() == []


def test_all_misses_give_zero_mrr_in_the_gate_figures_and_interval() -> None:
    """The gate's MRR and its bootstrap interval: a query with no truth in its top 50 counts 0, not 1."""
    payload_keys = np.array([[0, c] for c in range(60)])
    retrieved = np.tile(np.arange(50), (6, 1))  # chunks 0..49 retrieved, truth is chunk 55: every query misses
    truth = np.array([[0, 55]] * 6)
    figures = retrieval_figures(retrieved, payload_keys, truth)
    assert figures.mrr == 0.0 and figures.r_at_50 == 0.0 and figures.median_rank == 51.0
    interval = retrieval_intervals(first_hit_rank(np.zeros((6, 50), dtype=bool)))["mrr"]
    assert (interval.low, interval.high) == (0.0, 0.0)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_recall_and_mrr_equal_ranx_on_random_lists(seed: int) -> None:
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(seed)
    m, depth = 40, 10
    ranks = rng.integers(0, depth + 1, m)  # 0: the truth is not in the list
    qrels = ranx.Qrels({f"q{i}": {"truth": 1} for i in range(m)})
    run = ranx.Run({f"q{i}": {("truth" if j + 1 == r else f"other{j}"): float(depth - j) for j in range(depth)} for i, r in enumerate(ranks)})
    theirs = ranx.evaluate(qrels, run, ["hit_rate@1", "hit_rate@5", f"hit_rate@{depth}", f"mrr@{depth}"])
    assert recall_at(ranks, 1) == pytest.approx(theirs["hit_rate@1"])
    assert recall_at(ranks, 5) == pytest.approx(theirs["hit_rate@5"])
    assert recall_at(ranks, depth) == pytest.approx(theirs[f"hit_rate@{depth}"])
    assert mean_reciprocal_rank(ranks) == pytest.approx(theirs[f"mrr@{depth}"])


@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=30))
def test_ranks_recall_and_mrr(hit_rows) -> None:
    hits = np.array(hit_rows)
    ranks = first_hit_rank(hits)
    for row, rank in zip(hit_rows, ranks):
        assert rank == (row.index(True) + 1 if True in row else 0)
    assert recall_at(ranks, 5) == np.mean([any(r) for r in hit_rows])
    assert 0.0 <= mean_reciprocal_rank(ranks) <= recall_at(ranks, 5)


def test_key_hits_count_every_duplicate_row() -> None:
    payload_keys = np.array([[0, 0], [0, 1], [0, 1], [1, 0]])  # key (0, 1) owns rows 1 and 2
    retrieved = np.array([[2, 3], [3, -1]])
    hits = key_hits(retrieved, payload_keys, np.array([[0, 1], [0, 0]]))
    assert hits.tolist() == [[True, False], [False, False]]
