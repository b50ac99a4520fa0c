"""Prediction health (`lvmcore.gate.health`): each statistic against brute force, and on outputs of known kind."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from lvmcore.gate import health, intervals
from lvmcore.vectors import l2_normalize


def walk(rows: int = 120, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contexts (rows, 3, dim), targets, and truth keys of 12 articles of consecutive windows."""
    rng = np.random.default_rng(seed)
    contexts = l2_normalize(rng.normal(size=(rows, 3, dim))).astype(np.float32)
    targets = l2_normalize(contexts[:, -1] + 0.3 * rng.normal(size=(rows, dim))).astype(np.float32)
    keys = np.stack([np.arange(rows) // 10, np.arange(rows) % 10 + 3], axis=1)
    return contexts, targets, keys


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60))
def test_sign_test_p_is_the_binomial_tail(closer, extra) -> None:
    rows = closer + extra
    assert health.sign_test_p(closer, rows) == pytest.approx(binom.sf(closer - 1, rows, 0.5) if rows else 1.0, rel=1e-9, abs=1e-300)


def test_degenerate_rows_counts_zero_constant_and_repeated() -> None:
    contexts, targets, _ = walk()
    preds = targets.copy()
    preds[0] = 0.0
    preds[1] = 1.0
    preds[5] = preds[6]  # one prediction for two different contexts
    found = health.degenerate_rows(preds, contexts)
    assert (found.zero, found.constant, found.repeated) == (1, 1, 2)
    same_context = contexts.copy()
    same_context[5] = same_context[6]
    assert health.degenerate_rows(preds, same_context).repeated == 0  # identical contexts may share a prediction
    assert health.degenerate_rows(targets, contexts) == health.DegenerateRows(0, 0, 0, len(targets))


def test_information_separates_a_function_of_the_input_from_random_and_shuffled_output() -> None:
    contexts, targets, _ = walk(rows=200)
    rng = np.random.default_rng(1)
    untrained = np.tanh(contexts.reshape(len(contexts), -1) @ rng.normal(size=(contexts[0].size, 16)))  # a random network is still a function of its input
    assert health.input_information(untrained, contexts).z > 10
    assert health.input_information(contexts[:, -1], contexts).z > 10
    assert abs(health.input_information(rng.normal(size=targets.shape), contexts).z) < 4
    assert abs(health.input_information(contexts[rng.permutation(len(contexts)), -1], contexts).z) < 4
    assert np.isnan(health.input_information(np.ones_like(targets), contexts).z)


def test_answer_copies_and_oracle_closure() -> None:
    contexts, targets, _ = walk()
    found = np.ones(len(targets), dtype=bool)
    leak = health.answer_copies(targets, targets, targets, found, contexts, baseline_cosine=0.5)
    assert leak.copied_rows == len(targets) and leak.oracle_closure == pytest.approx(1.0, abs=1e-5)
    copier = health.answer_copies(contexts[:, -1], targets, targets, found, contexts, baseline_cosine=0.9)
    assert copier.copied_rows == 0 and copier.oracle_closure < 0.2
    in_context = contexts.copy()
    in_context[:, 0] = targets  # the truth sits in the context: copying it is no leak
    assert health.answer_copies(targets, targets, targets, found, in_context, baseline_cosine=0.5).copied_rows == 0


def test_shift_test_finds_a_shift_at_document_boundaries_and_not_a_copier() -> None:
    contexts, targets, keys = walk(rows=300)
    assert health.shift_test(targets, targets, keys)[0] == 1.0
    p, shift, rows, closer = health.shift_test(np.roll(targets, -1, axis=0), targets, keys)
    assert shift == 1 and rows == 29 and closer == 29 and p < 1e-6
    assert health.shift_test(np.roll(targets, 1, axis=0), targets, keys)[1] == -1
    copier = np.roll(targets, 1, axis=0)  # within one document the previous row's target is this row's last context chunk
    copier[keys[:, 1] == 3] = contexts[keys[:, 1] == 3, -1]
    assert health.shift_test(copier, targets, keys)[0] > 0.01


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_elsewhere_hits_against_brute_force(seed) -> None:
    rng = np.random.default_rng(seed)
    payload_keys = np.stack([np.repeat(np.arange(6), 8), np.tile(np.arange(8), 6)], axis=1)
    truth_rows = rng.choice(len(payload_keys), size=10, replace=False)
    truth_keys = payload_keys[truth_rows]
    top = rng.integers(-1, len(payload_keys), size=(10, 5))
    hits, chance = health.elsewhere_hits(top, payload_keys, truth_keys)
    for i in range(10):
        others = {tuple(truth_keys[j]) for j in range(10) if truth_keys[j][0] != truth_keys[i][0]}
        expected = any(r >= 0 and tuple(payload_keys[r]) in others for r in top[i])
        assert hits[i] == expected
        q = len(others) / len(payload_keys)
        assert chance[i] == pytest.approx(1 - (1 - q) ** 5)


def test_the_shift_test_rarely_alarms_on_honest_models() -> None:
    """False-alarm rate of the row-shift test at its 1% level over 300 honest models of varying skill (and anti-aligned copiers):
    by construction at most 1%; counted here."""
    alarms = 0
    for seed in range(300):
        contexts, targets, keys = walk(rows=240, seed=seed)
        rng = np.random.default_rng(seed)
        skill = rng.uniform(-0.5, 1.0)  # below 0: a model pointing away from its own target
        preds = l2_normalize(skill * targets + rng.normal(size=targets.shape) / np.sqrt(targets.shape[1]))
        alarms += health.shift_test(preds, targets, keys, seed)[0] < 0.01
    assert alarms <= 6, alarms  # 2% of 300: the bound with room for the sampling noise of 300 draws


# --------------------------------------------------------------------------- the figures by hand (pinned after the mutation run)


def test_row_order_reads_other_rows_truths_minus_its_own_minus_chance() -> None:
    rng = np.random.default_rng(3)
    payload_keys = np.array([(a, c) for a in range(3) for c in range(4)])  # 3 articles x 4 chunks
    truth_keys = payload_keys[[0, 5, 10, 1, 6, 11]]
    top_rows = rng.integers(-1, 12, (6, 5))
    own_ranks = np.array([0, 1, 5, 6, 2, 0])  # hits at 5: rows 1, 2, 4
    preds, targets = l2_normalize(rng.normal(size=(6, 8))), l2_normalize(rng.normal(size=(6, 8)))
    order = health.row_order(preds, targets, truth_keys, top_rows, own_ranks, payload_keys, seed=4)
    elsewhere, chance = health.elsewhere_hits(top_rows, payload_keys, truth_keys)
    own = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    assert order.own_share == 0.5 and order.elsewhere_share == elsewhere.mean() and order.chance_share == pytest.approx(chance.mean())
    assert order.elsewhere_excess_low == intervals.bootstrap_mean_interval(elsewhere - own - chance, seed=4).low
    p, shift, rows, closer = health.shift_test(preds, targets, truth_keys, 4)
    assert (order.shift_p, order.worst_shift, order.shift_rows, order.shift_closer) == (p, shift, rows, closer)
    assert order.as_dict() == {"shift_p": p, "worst_shift": shift, "shift_rows": rows, "shift_closer": closer, "elsewhere_share": order.elsewhere_share,
                               "own_share": 0.5, "chance_share": order.chance_share, "elsewhere_excess_low": order.elsewhere_excess_low}


def test_input_information_of_output_that_follows_its_input() -> None:
    rng = np.random.default_rng(5)
    contexts = rng.normal(size=(12, 3, 6)).astype(np.float32)
    preds = contexts.mean(axis=1)  # the context mean itself: prediction similarities ARE context similarities
    info = health.input_information(preds, contexts, seed=2, permutations=50)
    assert info.correlation == pytest.approx(1.0) and info.rows == 12
    assert info.null_sd > 0 and info.z == pytest.approx((info.correlation - info.null_mean) / info.null_sd)
    assert info == health.input_information(preds, contexts, seed=2, permutations=50)  # seeded
    assert health.input_information(preds, contexts, seed=2, rows=5, permutations=50).rows == 5  # a sample of 5 rows


def test_input_information_needs_four_rows_and_spread() -> None:
    rng = np.random.default_rng(6)
    contexts = rng.normal(size=(4, 2, 5)).astype(np.float32)
    four = health.input_information(contexts.mean(axis=1), contexts, permutations=20)
    assert four.rows == 4 and four.correlation == pytest.approx(1.0)
    three = health.input_information(contexts[:3].mean(axis=1), contexts[:3], permutations=20)
    assert three.rows == 3 and all(np.isnan(v) for v in (three.correlation, three.null_mean, three.null_sd, three.z))
    constant = health.input_information(np.ones((6, 5), np.float32), rng.normal(size=(6, 2, 5)), permutations=20)
    assert constant.rows == 6 and all(np.isnan(v) for v in (constant.correlation, constant.null_mean, constant.null_sd, constant.z))


def test_answer_copies_count_copies_of_the_target_or_the_truth_row_not_explained_by_the_context() -> None:
    e = np.eye(4, dtype=np.float32)
    targets = e[[0, 1, 2, 3]]
    truth_vectors = e[[0, 2, 2, 3]]  # row 1's payload row differs from its target
    truth_found = np.array([True, True, True, False])
    contexts = np.stack([e[[1, 3]], e[[0, 3]], e[[2, 3]], e[[0, 1]]])  # row 2's context holds its own target
    preds = e[[0, 2, 2, 3]] * 3.0  # row 0 copies its target, row 1 its truth row, row 2 its target (in its context), row 3 its target
    copies = health.answer_copies(preds, targets, truth_vectors, truth_found, contexts, baseline_cosine=0.5)
    assert (copies.copied_rows, copies.rows) == (3, 4)  # rows 0, 1, 3; row 2 copies its context
    assert copies.model_cosine == pytest.approx(0.75) and copies.baseline_cosine == 0.5
    assert copies.oracle_closure == pytest.approx((0.75 - 0.5) / (1 - 0.5))
    assert np.isnan(health.answer_copies(preds, targets, truth_vectors, truth_found, contexts, baseline_cosine=1.0).oracle_closure)
    unfound = health.answer_copies(e[[1]], e[[0]], e[[1]], np.array([False]), e[[[2, 3]]], 0.0)
    assert unfound.copied_rows == 0  # a truth row that was not found is no evidence
    empty = health.answer_copies(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, bool), np.zeros((0, 2, 4)), 0.5)
    assert empty.rows == 0 and np.isnan(empty.model_cosine)


def test_degenerate_rows_at_their_edges() -> None:
    contexts = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)  # five different contexts
    preds = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [np.nan, 1.0, 1.0], [0.0, 0.0, 0.0], [5.0, 1.0, 0.5]], dtype=np.float32)
    rows = health.degenerate_rows(preds, contexts)
    assert (rows.zero, rows.constant, rows.repeated, rows.rows) == (1, 1, 0, 5)  # a row with spread is not constant; NaN is neither
    two = health.degenerate_rows(np.array([[1.0, 0.0], [2.0, 0.0]], np.float32), contexts[:2, :, :2])
    assert two.repeated == 2 and two.repeated_share == 1.0  # two usable rows, one direction, two contexts
    same_context = health.degenerate_rows(np.array([[1.0, 0.0], [2.0, 0.0]], np.float32), np.zeros((2, 2, 2), np.float32))
    assert same_context.repeated == 0
    assert health.degenerate_rows(np.zeros((0, 3), np.float32), np.zeros((0, 2, 3), np.float32)).repeated_share == 0.0


def test_prediction_health_hands_every_input_and_the_seed_to_each_figure() -> None:
    rng = np.random.default_rng(9)
    m = 40
    payload_keys = np.array([(a, c) for a in range(10) for c in range(6)])
    truth_keys = payload_keys[rng.choice(60, m, replace=False)]
    contexts = rng.normal(size=(m, 2, 4)).astype(np.float32)
    targets = l2_normalize(rng.normal(size=(m, 4)))
    truth_vectors = l2_normalize(rng.normal(size=(m, 4)))
    truth_found = np.ones(m, dtype=bool)
    truth_found[2] = False
    preds = np.concatenate([truth_vectors[:2], targets[2:3], targets[2:3], rng.normal(size=(m - 4, 4))]).astype(np.float32)  # rows 2 and 3 repeat
    top_rows, own_ranks = rng.integers(-1, 60, (m, 5)), rng.integers(0, 8, m)
    found = health.prediction_health(preds, contexts, targets, truth_keys, truth_vectors, truth_found, 0.25, top_rows, own_ranks, payload_keys, seed=3)
    assert found.degenerate == health.degenerate_rows(preds, contexts) and found.degenerate.repeated == 2
    assert found.information == health.input_information(preds, contexts, 3)
    assert found.information != health.input_information(preds, contexts, 0)
    assert found.copies == health.answer_copies(preds, targets, truth_vectors, truth_found, contexts, 0.25) and found.copies.copied_rows == 3
    assert found.order == health.row_order(preds, targets, truth_keys, top_rows, own_ranks, payload_keys, 3)
    assert found.order.elsewhere_excess_low != health.row_order(preds, targets, truth_keys, top_rows, own_ranks, payload_keys, 0).elsewhere_excess_low


def test_row_order_of_no_rows() -> None:
    empty = health.row_order(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 2), np.int64), np.zeros((0, 5), np.int64),
                             np.zeros(0, np.int64), np.array([(0, 0), (1, 0)]))
    assert (empty.elsewhere_share, empty.own_share, empty.chance_share, empty.shift_rows) == (0.0, 0.0, 0.0, 0)
    assert np.isnan(empty.elsewhere_excess_low)


def test_sign_test_p_by_hand_and_never_above_one() -> None:
    assert health.sign_test_p(1, 1) == 0.5 and health.sign_test_p(0, 0) == 1.0 and health.sign_test_p(2, 3) == pytest.approx(0.5)
    assert all(health.sign_test_p(0, n) == 1.0 for n in (3, 5, 7))  # the float sum of every term exceeds 1 there


def test_pearson_of_small_spreads_and_the_information_correlation_by_brute_force() -> None:
    assert health._pearson(np.array([0.0, 0.1]), np.array([0.0, 0.2])) == pytest.approx(1.0)  # spreads far below 1
    rng = np.random.default_rng(12)
    contexts = rng.normal(size=(9, 2, 5)).astype(np.float32)
    preds = (contexts.mean(axis=1) + rng.normal(size=(9, 5))).astype(np.float32)
    info = health.input_information(preds, contexts, permutations=20)
    c, p = l2_normalize(contexts.mean(axis=1)), l2_normalize(preds)
    pairs = [(i, j) for i in range(9) for j in range(i + 1, 9)]  # every pair once, no row with itself
    expected = np.corrcoef([float(c[i] @ c[j]) for i, j in pairs], [float(p[i] @ p[j]) for i, j in pairs])[0, 1]
    assert info.correlation == pytest.approx(expected, abs=1e-6)
