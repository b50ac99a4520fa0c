"""Prediction health (`lvmcore.gate.health`): each statistic against brute force, and on outputs of known kind."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from lvmcore.gate import health, intervals
from lvmcore.sampling import sample_rows
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


# --------------------------------------------------------------------------- the edges the last pass left open: boundaries, ties, seeds


def _brute_force_shift_test(preds: np.ndarray, targets: np.ndarray, truth_keys: np.ndarray, seed: int) -> tuple[float, int, int, int]:
    """shift_test row by row: for each shift, each row i whose row i+s exists and is from another article, one seeded
    row of a third article (drawn in row order, -1 then +1; no draw when there is none), and the sign of
    cos(p_i, t_{i+s}) - max(cos(p_i, t_i), cos(p_i, t_third)). The smaller Bonferroni p wins, -1 on a tie; a shift
    that decided no row gives way to the next one that compared any."""
    p = l2_normalize(np.nan_to_num(preds)).astype(np.float64)
    t = l2_normalize(targets).astype(np.float64)
    articles = np.asarray(truth_keys)[:, 0]
    m = len(p)
    rng = np.random.default_rng(seed)
    best = (1.0, -1, 0, 0)
    for s in (-1, 1):
        compared = decided = closer = 0
        for i in range(m):
            j = i + s
            if not 0 <= j < m or articles[i] == articles[j]:
                continue
            third = [r for r in range(m) if articles[r] not in (articles[i], articles[j])]
            if not third:
                continue
            r = int(rng.choice(np.array(third)))
            compared += 1
            rival = max(p[i] @ t[i], p[i] @ t[r])
            decided += bool(p[i] @ t[j] != rival)
            closer += bool(p[i] @ t[j] > rival)
        p_value = min(1.0, 2 * binom.sf(closer - 1, decided, 0.5)) if decided else 1.0
        if p_value < best[0] or (best[2] == 0 and compared):
            best = (p_value, s, decided, closer)
    return best


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 24), st.integers(1, 5), st.booleans())
def test_shift_test_against_brute_force(seed, rows, article_count, ties) -> None:
    rng = np.random.default_rng(seed)
    articles = np.sort(rng.integers(0, article_count, rows))
    truth_keys = np.stack([articles, np.arange(rows)], axis=1)
    targets = rng.normal(size=(rows, 3)).astype(np.float32)
    if ties and rows:
        targets[rng.integers(0, rows, rows // 2)] = targets[0]  # equal targets: ties, which carry no sign
    kind = rng.integers(0, 5, rows)  # own target, the next row's, the previous row's, its opposite, noise
    candidates = [targets, np.roll(targets, -1, axis=0), np.roll(targets, 1, axis=0), -targets, rng.normal(size=(rows, 3)).astype(np.float32)]
    preds = np.stack([candidates[k][i] for i, k in enumerate(kind)]) if rows else np.zeros((0, 3), np.float32)
    found = health.shift_test(preds, targets, truth_keys, seed % 1000)
    expected = _brute_force_shift_test(preds, targets, truth_keys, seed % 1000)
    assert found[1:] == expected[1:] and found[0] == pytest.approx(expected[0], rel=1e-9)


def test_shift_test_with_no_third_article_compares_nothing() -> None:
    """A row counts only against a third article's target: one or two articles (or no rows) give p 1 at shift -1 over 0 rows."""
    _, targets, keys = walk(rows=20)  # articles 0 and 1
    shifted = np.roll(targets, -1, axis=0)
    assert health.shift_test(shifted, targets, keys) == (1.0, -1, 0, 0)
    assert health.shift_test(shifted, targets, np.zeros_like(keys)) == (1.0, -1, 0, 0)  # one article
    assert health.shift_test(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 2), np.int64)) == (1.0, -1, 0, 0)


def test_shift_test_figures_at_each_shift_by_hand() -> None:
    _, targets, keys = walk(rows=300)  # 30 articles of 10 rows: 29 article boundaries at each shift
    assert health.shift_test(targets, targets, keys) == (1.0, -1, 29, 0)  # equal p at both shifts: the first, -1
    assert health.shift_test(np.roll(targets, 1, axis=0), targets, keys) == (pytest.approx(2 * 0.5**29), -1, 29, 29)  # row 0 has no row -1
    assert health.shift_test(np.roll(targets, -1, axis=0), targets, keys) == (pytest.approx(2 * 0.5**29), 1, 29, 29)  # row 299 has no row 300
    single = np.stack([np.r_[0, np.arange(1, 13) // 4 + 1], np.arange(13)], axis=1)  # article 0 is row 0 alone
    rng = np.random.default_rng(8)
    t = l2_normalize(rng.normal(size=(13, 6)))
    assert health.shift_test(np.roll(t, -1, axis=0), t, single) == (pytest.approx(2 * 0.5**4), 1, 4, 4)  # row 0 is compared with row 1


def test_shift_test_counts_ties_neither_way() -> None:
    """Equal targets tie every comparison: no row is decided or closer, and the last shift with rows stands."""
    _, _, keys = walk(rows=60)
    targets = np.ones((60, 4), np.float32)
    preds = np.random.default_rng(2).normal(size=(60, 4)).astype(np.float32)
    assert health.shift_test(preds, targets, keys) == (1.0, 1, 0, 0)


def test_third_row_is_a_seeded_row_of_a_third_article_or_minus_one() -> None:
    articles = np.array([0, 0, 1, 1, 2, 2, 3])
    rng = np.random.default_rng(0)
    drawn = {health._third_row(rng, articles, 0, 1) for _ in range(60)}
    assert drawn == {4, 5, 6}
    assert health._third_row(np.random.default_rng(5), articles, 2, 0) == health._third_row(np.random.default_rng(5), articles, 2, 0)
    assert health._third_row(rng, articles[:4], 1, 0) == -1  # two articles: no third


def test_degenerate_rows_at_the_zero_norm_and_the_constant_spread() -> None:
    below = np.nextafter(np.float32(1e-6), np.float32(0))
    top = np.float32(1.1920929)  # in float32, 1e-7 x top is exactly the step from top down to the next float32
    preds = np.array([[1e-6, 0.0, 0.0], [below, 0.0, 0.0], [np.nextafter(top, np.float32(0)), top, top]], np.float32)
    assert np.linalg.norm(preds[:1], axis=1)[0] == np.float32(1e-6) and preds[2, 2] - preds[2, 0] == np.float32(1e-7) * top
    contexts = np.arange(3 * 2 * 3, dtype=np.float32).reshape(3, 2, 3)
    rows = health.degenerate_rows(preds, contexts)
    assert (rows.zero, rows.constant, rows.repeated) == (1, 1, 0)  # a norm of exactly ZERO_NORM is not zero; a spread of exactly 1e-7 x max is constant


def test_constant_rows_are_judged_relative_to_their_scale() -> None:
    big = np.float32(1000.0)
    preds = np.array([
        [big, big, big, np.nextafter(big, np.float32(2000))],  # one float32 step apart at scale 1000: constant
        [1e-3, 1e-3 + 1e-9, 1e-3, 1e-3],  # a spread of 1e-9 at scale 1e-3 (more than 1e-7 x 1e-3): not constant
        [7.0, 7.0, 7.0, 7.0],
        [0.0, 0.0, 0.0, 0.0],  # zero, not constant
    ], np.float32)
    contexts = np.zeros((1, 2, 4), np.float32)
    found = [health.degenerate_rows(row[None], contexts) for row in preds]
    assert [(r.zero, r.constant) for r in found] == [(0, 1), (0, 0), (0, 1), (1, 0)]


def test_zero_and_nonfinite_rows_are_never_repeated() -> None:
    """Two zero rows (or two NaN rows) for different contexts share no direction: they are counted as zero, not repeated."""
    preds = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [np.nan, 0.0, 0.0], [np.nan, 0.0, 0.0], [1.0, 2.0, 3.0]], np.float32)
    contexts = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    assert health.degenerate_rows(preds, contexts) == health.DegenerateRows(zero=2, constant=0, repeated=0, rows=5)


def _at_copy_cosine() -> np.ndarray:
    """A row whose float32 cosine with (1, 0, 0, 0), once normalised, is exactly COPY_COSINE."""
    row = np.array([1.0, np.sqrt(1 - health.COPY_COSINE**2), 0.0, 0.0], np.float32)
    assert l2_normalize(row[None])[0, 0] == np.float32(health.COPY_COSINE)
    return row


def test_answer_copies_at_exactly_the_copy_cosine() -> None:
    """COPY_COSINE itself is a copy (>=): of the target, of the truth row, and of a context vector that explains it."""
    e = np.eye(4, dtype=np.float32)
    near = _at_copy_cosine()
    elsewhere = e[None, [2, 2]]  # a context that holds neither target below
    of_target = health.answer_copies(near[None], e[[0]], e[[1]], np.array([False]), elsewhere, 0.0)
    of_truth = health.answer_copies(near[None], e[[3]], e[[0]], np.array([True]), elsewhere, 0.0)
    explained = health.answer_copies(e[[0]], e[[0]], e[[0]], np.array([True]), near[None, None], 0.0)
    assert (of_target.copied_rows, of_truth.copied_rows, explained.copied_rows) == (1, 1, 0)


def test_elsewhere_hits_in_a_one_row_payload_and_for_a_truth_not_in_it() -> None:
    """Padding (-1) in a one-row payload, and a row whose truth article holds no payload truth: its chance is the whole payload's."""
    payload_keys = np.array([[0, 0]])
    truth_keys = np.array([[0, 0], [1, 5]])  # row 1's truth is not in the payload; its article sorts after every payload article
    top_rows = np.array([[0, -1, -1, -1, -1], [0, -1, -1, -1, -1]])
    hits, chance = health.elsewhere_hits(top_rows, payload_keys, truth_keys)
    assert hits.tolist() == [False, True]  # row 0 finds its own truth; row 1 finds row 0's, from another article
    assert chance.tolist() == [0.0, 1.0]  # q = 0 / 1 and 1 / 1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_elsewhere_chance_against_brute_force_with_truths_outside_the_payload(seed) -> None:
    rng = np.random.default_rng(seed)
    payload_keys = np.stack([np.repeat(np.arange(4), 5), np.tile(np.arange(5), 4)], axis=1)  # articles 0..3
    truth_keys = np.stack([rng.integers(0, 7, 9), rng.integers(0, 7, 9)], axis=1)  # articles 0..6, chunks 0..6: some not in the payload
    top = rng.integers(-1, len(payload_keys), size=(9, 5))
    hits, chance = health.elsewhere_hits(top, payload_keys, truth_keys)
    truths = {tuple(k) for k in truth_keys}
    for i in range(9):
        others = {k for k in truths if k[0] != truth_keys[i][0]}
        assert hits[i] == any(r >= 0 and tuple(payload_keys[r]) in others for r in top[i])
        q = sum(tuple(k) in others for k in payload_keys) / len(payload_keys)
        assert chance[i] == pytest.approx(1 - (1 - q) ** 5)


def test_input_information_null_by_brute_force() -> None:
    """The null: the same correlation with the prediction rows (and so both sides of each pair) permuted, seeded; sd with ddof 1."""
    rng = np.random.default_rng(21)
    contexts = rng.normal(size=(10, 2, 5)).astype(np.float32)
    preds = (contexts.mean(axis=1) + rng.normal(size=(10, 5))).astype(np.float32)
    info = health.input_information(preds, contexts, seed=7, permutations=30)
    c, p = l2_normalize(contexts.mean(axis=1)), l2_normalize(preds)
    pairs = [(i, j) for i in range(10) for j in range(i + 1, 10)]
    context_sims = [float(c[i] @ c[j]) for i, j in pairs]
    order_rng = np.random.default_rng(7)
    null = []
    for _ in range(30):
        order = order_rng.permutation(10)
        null.append(np.corrcoef(context_sims, [float(p[order[i]] @ p[order[j]]) for i, j in pairs])[0, 1])
    assert info.null_mean == pytest.approx(np.mean(null), abs=1e-6) and info.null_sd == pytest.approx(np.std(null, ddof=1), rel=1e-4)  # float32 cosines
    assert info.z == pytest.approx((info.correlation - np.mean(null)) / np.std(null, ddof=1), rel=1e-4)


def test_input_information_samples_its_rows_with_the_seed() -> None:
    rng = np.random.default_rng(22)
    contexts = rng.normal(size=(40, 2, 5)).astype(np.float32)
    preds = (contexts.mean(axis=1) + rng.normal(size=(40, 5))).astype(np.float32)
    chosen = sample_rows(40, 10, 3)
    sampled = health.input_information(preds, contexts, seed=3, rows=10, permutations=20)
    assert sampled == health.input_information(preds[chosen], contexts[chosen], seed=3, rows=10, permutations=20)
    assert sampled.rows == 10


def test_input_information_of_a_null_without_spread_is_nan() -> None:
    """Every permutation gives the same correlation (here 0, exactly): the null has no spread and z is NaN, not a division by zero.

    Context cosines are -1 on the pairs of row 3 and +1 elsewhere; prediction cosines are +1 on the pairs {0, 3} and {1, 2}
    and -1/2 on the other four. Any relabelling of the rows maps those two pairs to a perfect matching, which holds one pair
    of row 3: the centred products always sum to 0."""
    up = np.full(4, 0.5, np.float32)
    down = np.array([-0.5, -0.5, -0.5, 0.5], np.float32)
    preds = np.stack([up, down, down, up])
    contexts = np.stack([up, up, up, -up])[:, None, :].repeat(2, axis=1)
    info = health.input_information(preds, contexts, seed=1)
    assert (info.correlation, info.null_mean, info.null_sd, info.rows) == (0.0, 0.0, 0.0, 4)
    assert np.isnan(info.z)
