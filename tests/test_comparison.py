"""The context-excluded view and the paired model-vs-baseline comparison (lvmcore.gate.metrics, .comparison)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.gate.comparison import best_baseline, compare_to_best, model_kind
from lvmcore.gate.metrics import exclude_context, hit_ranks
from lvmcore.search.hits import hits_at


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_excluded_lists_drop_exactly_the_context_keys_and_keep_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = np.stack([rng.integers(0, 4, 40), rng.integers(0, 6, 40)], axis=1)  # duplicated keys on purpose
    rows = np.stack([rng.permutation(40)[:20] for _ in range(7)])
    rows[rng.random(rows.shape) < 0.1] = -1
    context = np.stack([rng.integers(0, 4, (7, 3)), rng.integers(0, 6, (7, 3))], axis=2)
    out = exclude_context(rows, keys, context, k=12)
    assert out.shape == (7, 12)
    for i in range(7):
        context_set = {tuple(c) for c in context[i]}
        expected = [r for r in rows[i] if r >= 0 and tuple(keys[r]) not in context_set][:12]  # brute force
        assert out[i].tolist() == expected + [-1] * (12 - len(expected))


def test_excluding_moves_the_truth_up_by_the_context_chunks_above_it() -> None:
    keys = np.array([[0, 0], [0, 1], [0, 2], [0, 3]])
    rows = np.array([[3, 2, 1, 0]])  # the context chunks (0,3) and (0,2) rank above the truth (0,1)
    context = np.array([[[0, 2], [0, 3]]])
    truth = np.array([[0, 1]])
    assert hit_ranks(rows, keys, truth).tolist() == [3]
    assert hit_ranks(exclude_context(rows, keys, context, k=4), keys, truth).tolist() == [1]


def _ranks(hit_rows: int, rows: int = 400, rank: int = 1) -> np.ndarray:
    ranks = np.zeros(rows, dtype=np.int64)
    ranks[:hit_rows] = rank
    return ranks


def test_best_baseline_is_picked_per_view_and_one_row_is_not_a_win() -> None:
    baselines = {"copy_last": _ranks(160), "mean_context": _ranks(20)}
    comparison = compare_to_best("raw", _ranks(161), baselines)
    assert comparison.baseline == "copy_last" and comparison.paired.difference == 1 / 400
    assert not comparison.beats
    assert compare_to_best("raw", _ranks(200), baselines).beats


def test_model_kind_in_words() -> None:
    win = compare_to_best("raw", _ranks(200), {"copy_last": _ranks(160)})
    tie = compare_to_best("raw", _ranks(160), {"copy_last": _ranks(160)})
    assert model_kind(win, None, echo=0.05)[0] == "predictor"
    assert model_kind(win, None, echo=0.9)[0] == "echoing predictor"
    assert model_kind(tie, win, echo=0.9)[0] == "better neighbour finder"
    assert model_kind(tie, tie, echo=0.98)[0] == "copier"
    assert model_kind(tie, tie, echo=0.1)[0] == "no better than the baselines"
    assert hits_at(np.array([0, 1, 5, 6]), 5).tolist() == [0, 1, 1, 0]


def test_the_comparison_in_words_and_as_data() -> None:
    win = compare_to_best("raw", _ranks(200), {"copy_last": _ranks(160)})
    tie = compare_to_best("context_excluded", _ranks(160), {"copy_last": _ranks(160)})
    assert win.sentence() == "raw R@5 50.0% vs copy_last 40.0%: difference +10.00 points, 95% interval [+7.25, +13.00] -> beats it"
    assert tie.sentence() == "context-excluded R@5 40.0% vs copy_last 40.0%: difference +0.00 points, 95% interval [+0.00, +0.00] -> does not beat it"
    data = win.as_dict()
    assert {k: data[k] for k in ("view", "baseline", "model_r_at_5", "baseline_r_at_5", "beats", "difference", "a_only", "b_only", "rows")} == {
        "view": "raw", "baseline": "copy_last", "model_r_at_5": 0.5, "baseline_r_at_5": 0.4, "beats": True, "difference": 0.1, "a_only": 40, "b_only": 0, "rows": 400}
    assert data["interval"] == win.paired.as_dict()["interval"]


def test_model_kind_sentences_and_the_echo_boundary() -> None:
    """An echo rate exactly at the run's level counts as echoing; no echo rate reads n/a."""
    win = compare_to_best("raw", _ranks(200), {"copy_last": _ranks(160)})
    tie = compare_to_best("raw", _ranks(160), {"copy_last": _ranks(160)})
    assert model_kind(win, None, echo=0.05) == ("predictor", "it beats the best baseline on raw retrieval with a low echo rate (5%): it predicts the next chunk")
    assert model_kind(win, None, echo=0.5, high_echo=0.5) == (
        "echoing predictor", "it beats the best baseline on raw retrieval, but its top-1 is one of its own context chunks for 50% of the rows")
    assert model_kind(win, None, echo=0.7)[1].endswith("for 70% of the rows")
    assert model_kind(tie, win, echo=None) == ("better neighbour finder", "it ties or loses on raw retrieval but beats the best baseline once the query's own context "
                                               "chunks are excluded: it finds better neighbours than copying, yet its own context still takes the top ranks (echo n/a)")
    assert model_kind(tie, tie, echo=0.5, high_echo=0.5) == (
        "copier", "it does not beat the best baseline in either view and its top-1 is its own context for 50% of the rows: it learned to copy")
    assert model_kind(tie, tie, echo=None) == ("no better than the baselines", "it does not beat the best baseline in either view")
    assert model_kind(tie, None, echo=0.49, high_echo=0.5)[0] == "no better than the baselines"


def test_best_baseline_ties_go_to_the_higher_cosine_then_the_first_named() -> None:
    tied = {"copy_last": _ranks(100), "mean_context": _ranks(100), "ridge": _ranks(90)}
    assert best_baseline(tied, {"copy_last": 0.4, "mean_context": 0.5, "ridge": 0.9}) == "mean_context"
    assert best_baseline(tied, {"copy_last": 0.5, "mean_context": 0.4}) == "copy_last"
    assert best_baseline(tied, {"mean_context": 0.1}) == "mean_context"  # a missing cosine counts 0
    assert best_baseline(tied) == "copy_last" and best_baseline(dict(reversed(list(tied.items())))) == "mean_context"
    assert best_baseline({"a": _ranks(100, rank=5), "b": _ranks(100, rank=6)}) == "a"  # rank 6 is not a hit at 5


def test_compare_to_best_uses_the_cosines_and_the_seed_it_is_given() -> None:
    tied = {"copy_last": _ranks(100), "mean_context": _ranks(100)}
    comparison = compare_to_best("raw", _ranks(150), tied, seed=3, cosines={"mean_context": 0.6, "copy_last": 0.5})
    assert comparison.baseline == "mean_context" and comparison.paired.interval.method.endswith("seed 3)")
    assert compare_to_best("raw", _ranks(150), tied).paired.interval.method.endswith("seed 0)")
