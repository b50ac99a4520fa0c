"""Gate maths against independent implementations: ranx, scikit-learn, scipy and brute-force numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.gate import baselines
from lvmcore.artifacts.evalset import EvalSet
from lvmcore.gate.evaluate import evaluate
from lvmcore.gate.inputs import measure_inputs
from lvmcore.plumbing.key_recovery import ContextKeys
from lvmcore.search.exact import exact_search
from lvmcore.search.ivf import IVFBuild, build_ivf
from lvmcore.gate.metrics import (
    Retrieval,
    echo_rate,
    empirical_auc,
    exclude_context,
    generalization_gap,
    ivf_exact_agreement,
    mean_cosine,
    offset_margin,
    offset_range,
    retrieval_intervals,
    l2_normalize,
    offset_peak,
    retrieval_figures,
    separation,
)
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import windows_from_payload
from lvmcore.artifacts.windows import build_windows


def walk_payload(articles: int = 40, chunks: int = 30, dim: int = 32, step: float = 0.35, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors of smooth walks: chunk t+1 = normalize(R chunk t + noise), R one fixed rotation."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(np.eye(dim) + step * rng.normal(size=(dim, dim)))
    vectors, keys = [], []
    for a in range(articles):
        v = l2_normalize(rng.normal(size=dim))
        for c in range(chunks):
            vectors.append(v)
            keys.append((a, c))
            v = l2_normalize(rotation @ v + 0.05 * rng.normal(size=dim))
    return np.asarray(vectors, np.float32), np.asarray(keys, np.int64), rotation.astype(np.float32)


def walk_artifacts(tmp_path, context_length: int = 5, **kwargs):
    vectors, keys, rotation = walk_payload(**kwargs)
    payload = Payload(path=tmp_path, vectors=vectors, keys=keys, manifest={"embedder": "walk"})
    articles = np.unique(keys[:, 0])
    eval_articles, train_articles = articles[: len(articles) // 4], articles[len(articles) // 4 :]
    ctx_rows, tgt_rows = build_windows(keys, context_length, eval_articles)
    eval_set = EvalSet(path=tmp_path / "eval.npz", contexts=vectors[ctx_rows], targets=vectors[tgt_rows], truth_keys=keys[tgt_rows], context_keys=keys[ctx_rows])
    training = windows_from_payload(payload, train_articles, context_length, tmp_path / "train.json", {})
    return payload, eval_set, training, rotation


# --------------------------------------------------------------------------- AUC and separation


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=30), st.lists(st.integers(-5, 5), min_size=1, max_size=30))
def test_empirical_auc_equals_sklearn_roc_auc_with_ties(pos, neg) -> None:
    roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score

    scores = np.array(pos + neg, dtype=float)
    labels = np.array([1] * len(pos) + [0] * len(neg))
    assert empirical_auc(np.array(pos, float), np.array(neg, float)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_empirical_auc_equals_mann_whitney_u() -> None:
    mannwhitneyu = pytest.importorskip("scipy.stats").mannwhitneyu

    rng = np.random.default_rng(1)
    pos, neg = rng.normal(0.3, 1, 300), rng.normal(0, 1, 500)
    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    assert empirical_auc(pos, neg) == pytest.approx(u / (300 * 500), abs=1e-12)


def test_separation_matches_brute_force_over_all_pairs() -> None:
    rng = np.random.default_rng(2)
    targets = l2_normalize(rng.normal(size=(60, 16)))
    preds = l2_normalize(targets + 0.8 * rng.normal(size=targets.shape))
    sims = preds.astype(np.float64) @ targets.T.astype(np.float64)
    off = ~np.eye(60, dtype=bool)
    sep = separation(preds, targets, block=16)  # several blocks
    assert sep.pos_mean == pytest.approx(np.diag(sims).mean(), abs=1e-6)
    assert sep.neg_mean == pytest.approx(sims[off].mean(), abs=1e-6)
    assert sep.delta == pytest.approx(np.diag(sims).mean() - sims[off].mean(), abs=1e-6)
    assert sep.auc == pytest.approx(empirical_auc(np.diag(sims), sims[off]), abs=1e-6)
    assert sep.negatives_used == 60 * 59


def test_sampled_negatives_agree_with_all_pairs() -> None:
    rng = np.random.default_rng(3)
    targets = l2_normalize(rng.normal(size=(300, 16)))
    preds = l2_normalize(targets + 1.5 * rng.normal(size=targets.shape))
    full = separation(preds, targets, block=64)
    sampled = separation(preds, targets, max_pairs=30_000, block=64)
    assert full.negatives_used == 300 * 299 and sampled.negatives_used == 300 * 100
    assert sampled.neg_mean == pytest.approx(full.neg_mean, abs=1e-9)  # exact either way
    assert sampled.auc == pytest.approx(full.auc, abs=0.01)


def test_separation_of_random_predictions_is_near_zero_and_auc_near_half() -> None:
    rng = np.random.default_rng(4)
    targets = l2_normalize(rng.normal(size=(400, 32)))
    sep = separation(l2_normalize(rng.normal(size=(400, 32))), targets)
    assert abs(sep.delta) < 0.05 and 0.4 < sep.auc < 0.6


# --------------------------------------------------------------------------- retrieval vs ranx and brute force


def test_exact_search_equals_brute_force_numpy() -> None:
    rng = np.random.default_rng(5)
    bank = l2_normalize(rng.normal(size=(3000, 24)))
    queries = l2_normalize(rng.normal(size=(50, 24)))
    import lvmcore.search.exact as index_module

    old = index_module.SEARCH_BLOCK_ROWS
    index_module.SEARCH_BLOCK_ROWS = 700  # several blocks and a short last one
    try:
        scores, rows = exact_search(bank, queries, 20)
    finally:
        index_module.SEARCH_BLOCK_ROWS = old
    brute = queries @ bank.T
    expected_rows = np.argsort(-brute, axis=1, kind="stable")[:, :20]
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected_rows, 1), atol=1e-5)
    assert (rows == expected_rows).mean() > 0.99  # exact float ties may swap order


def test_recall_and_mrr_equal_ranx() -> None:
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(6)
    payload_keys = np.stack([np.repeat(np.arange(50), 20), np.tile(np.arange(20), 50)], axis=1)
    m = 200
    retrieved = np.stack([rng.choice(len(payload_keys), 50, replace=False) for _ in range(m)])
    truth = payload_keys[rng.integers(0, len(payload_keys), m)]
    truth[:80] = payload_keys[retrieved[:80, rng.integers(0, 50, 80)].diagonal()]  # many queries with a hit
    ours = retrieval_figures(retrieved, payload_keys, truth)
    qrels = ranx.Qrels({f"q{i}": {f"{a}_{c}": 1} for i, (a, c) in enumerate(truth)})
    run = ranx.Run({f"q{i}": {f"{payload_keys[r][0]}_{payload_keys[r][1]}": float(50 - rank) for rank, r in enumerate(row)} for i, row in enumerate(retrieved)})
    theirs = ranx.evaluate(qrels, run, ["hit_rate@1", "hit_rate@5", "hit_rate@10", "hit_rate@50", "mrr@50"])
    assert ours.r_at_1 == pytest.approx(theirs["hit_rate@1"])
    assert ours.r_at_5 == pytest.approx(theirs["hit_rate@5"])
    assert ours.r_at_10 == pytest.approx(theirs["hit_rate@10"])
    assert ours.r_at_50 == pytest.approx(theirs["hit_rate@50"])
    assert ours.mrr == pytest.approx(theirs["mrr@50"])
    assert ours.contain_at_50 == ours.r_at_50


def test_duplicate_keys_cannot_hide_a_hit() -> None:
    payload_keys = np.array([[0, 0], [0, 1], [0, 1], [1, 0]])
    retrieved = np.array([[2, 3], [3, 0]])  # query 0 retrieves the second copy of (0, 1)
    result = retrieval_figures(retrieved, payload_keys, np.array([[0, 1], [0, 1]]))
    assert result.r_at_1 == 0.5 and result.article_at_50 == 1.0


def test_echo_rate_counts_top1_in_own_context() -> None:
    payload_keys = np.array([[0, 0], [0, 1], [0, 2], [0, 3]])
    context_keys = np.array([[[0, 0], [0, 1]], [[0, 1], [0, 2]]])
    assert echo_rate(np.array([1, 3]), payload_keys, context_keys) == 0.5


def test_hit_agreement() -> None:
    assert ivf_exact_agreement(np.array([1, 0, 0, 3]), np.array([1, 2, 0, 3])) == pytest.approx(2 / 3)
    assert ivf_exact_agreement(np.array([0, 0]), np.array([0, 0])) is None


def test_offset_peak_ignores_nan() -> None:
    assert offset_peak({-1: 0.2, 0: float("nan"), 1: 0.5}) == 1


# --------------------------------------------------------------------------- baselines


def test_ridge_recovers_a_linear_map_and_copy_last_does_not(tmp_path) -> None:
    payload, eval_set, training, rotation = walk_artifacts(tmp_path)
    ridge = baselines.fit_ridge(training.batch, np.arange(training.count))
    preds = ridge(eval_set.contexts)
    ridge_cos = float(np.einsum("md,md->m", preds, eval_set.targets).mean())
    copy_cos = float(np.einsum("md,md->m", baselines.copy_last(eval_set.contexts), eval_set.targets).mean())
    true_cos = float(np.einsum("md,md->m", l2_normalize(eval_set.contexts[:, -1] @ rotation.T), eval_set.targets).mean())
    assert ridge_cos > copy_cos + 0.1 and ridge_cos > true_cos - 0.02, (ridge_cos, copy_cos, true_cos)


def test_baselines_read_contexts_only() -> None:
    contexts = np.random.default_rng(7).normal(size=(4, 3, 8)).astype(np.float32)
    np.testing.assert_allclose(baselines.copy_last(contexts), l2_normalize(contexts[:, -1]))
    np.testing.assert_allclose(baselines.mean_of_context(contexts), l2_normalize(contexts.mean(1)), atol=1e-6)


# --------------------------------------------------------------------------- the whole evaluation with numpy "models"


def test_evaluate_with_numpy_models(tmp_path) -> None:
    payload, eval_set, training, rotation = walk_artifacts(tmp_path)
    index = build_ivf(payload.vectors, IVFBuild(nlist=8))
    lookup = {tuple(k): v for k, v in zip(payload.keys.tolist(), payload.vectors)}

    def oracle(contexts):  # finds each context in the bank and returns the true next chunk
        rows = np.argmax(contexts[:, -1] @ payload.vectors.T, axis=1)
        return np.stack([lookup.get((payload.keys[r][0], payload.keys[r][1] + 1), payload.vectors[r]) for r in rows])

    rng = np.random.default_rng(8)
    good = evaluate(oracle, payload, eval_set, training_data=training, ivf_index=index, nprobe=8)
    rand = evaluate(lambda c: l2_normalize(rng.normal(size=(len(c), c.shape[2]))), payload, eval_set, training_data=training, ivf_index=index, nprobe=8)
    copy = evaluate(baselines.copy_last, payload, eval_set, training_data=training, ivf_index=index, nprobe=8)

    assert good.model.exact.r_at_1 == 1.0 and good.offset_peak == 1 and good.model.echo == 0.0
    assert good.separation.delta > 0.5 and good.separation.auc > 0.99
    assert good.model.ivf_agreement == 1.0 and good.oracle.exact.r_at_1 == 1.0
    assert rand.model.exact.r_at_5 < 0.05 and abs(rand.separation.delta) < 0.05
    assert copy.model.echo == 1.0 and copy.offset_peak == 0
    assert copy.model.exact.r_at_5 <= copy.best_baseline.exact.r_at_5
    assert set(good.baselines) == {"copy_last", "mean_context", "ridge"}
    assert good.train is not None and good.generalization["r_at_5_gap"] == pytest.approx(0.0, abs=0.05)
    metrics = good.gate_metrics(measure_inputs(payload, eval_set, ContextKeys(eval_set.context_keys), training))
    assert metrics.r_at_5 == 1.0 and metrics.offset_peak == 1
    # the model's own pass holds the model and training sample; the 3 baselines and the oracle are searched once, apart (cacheable)
    assert good.searched == {"exact_queries": eval_set.count + good.train.exact.count, "encoded_queries": 0, "ivf_queries": eval_set.count,
                             "fixed_exact_queries": 4 * eval_set.count, "fixed_ivf_queries": eval_set.count, "payload_rows": payload.count, "dim": payload.dim}
    assert good.baselines["copy_last"].ivf is None and good.train.ivf is None  # IVF only where a gate reads it: model and oracle


def test_two_tower_searches_its_encoded_bank_without_ivf(tmp_path, monkeypatch) -> None:
    payload, eval_set, training, rotation = walk_artifacts(tmp_path)
    index = build_ivf(payload.vectors, IVFBuild(nlist=8))
    tower = np.linalg.qr(np.random.default_rng(9).normal(size=(32, 32)))[0].astype(np.float32)
    import lvmcore.search.exact

    def bank_fn(vectors):  # the payload tower: a fixed rotation
        return l2_normalize(np.asarray(vectors) @ tower)

    lookup = {tuple(k): v for k, v in zip(payload.keys.tolist(), payload.vectors)}

    def oracle_in_tower_space(contexts):
        rows = np.argmax(contexts[:, -1] @ payload.vectors.T, axis=1)
        return bank_fn(np.stack([lookup[(payload.keys[r][0], payload.keys[r][1] + 1)] for r in rows]))

    monkeypatch.setattr(lvmcore.search.exact, "SEARCH_BLOCK_ROWS", 100)  # several encoded blocks
    result = evaluate(oracle_in_tower_space, payload, eval_set, training_data=training, ivf_index=index, nprobe=8, bank_fn=bank_fn)
    assert result.model.exact.r_at_1 == 1.0 and result.model.ivf is None and result.train.ivf is None
    assert result.separation.pos_mean == pytest.approx(1.0, abs=1e-5) and result.offset_peak == 1
    assert result.oracle.ivf is not None  # the oracle still searches the raw payload through the IVF
    assert result.searched["fixed_exact_queries"] == 4 * eval_set.count and result.searched["exact_queries"] == 0  # 3 baselines + oracle; model and train go to the encoded pass
    assert result.searched["encoded_queries"] == eval_set.count + result.train.exact.count


# --------------------------------------------------------------------------- boundaries the mutation run found unpinned


def test_empirical_auc_of_nested_arrays_and_of_nothing() -> None:
    assert empirical_auc(np.array([[1.0, 2.0]]), np.array([[0.5], [1.5]])) == empirical_auc(np.array([1.0, 2.0]), np.array([0.5, 1.5])) == 0.75
    assert np.isnan(empirical_auc(np.array([]), np.array([1.0]))) and np.isnan(empirical_auc(np.array([1.0]), np.array([])))


def test_article_hits_and_median_rank_by_hand() -> None:
    payload_keys = np.array([[0, 0], [1, 0], [1, 1], [2, 5]])
    retrieved = np.array([[1, -1, 3], [-1, 0, 3], [2, 3, 0], [3, 1, -1]])
    truth = np.array([[1, 1], [1, 0], [1, 1], [2, 5]])  # query 0: article 1 found, not its chunk; 1: neither; 2, 3: chunk at rank 1
    figures = retrieval_figures(retrieved, payload_keys, truth)
    assert figures.article_at_50 == 0.75 and figures.r_at_1 == 0.5 and figures.median_rank == (1 + 51) / 2
    assert retrieval_figures(np.array([[0], [2]]), payload_keys, np.array([[0, 0], [1, 1]])).median_rank == 1.0
    one_row = retrieval_figures(np.array([[0, -1]]), np.array([[4, 2]]), np.array([[4, 3]]))  # a -1 in a one-row payload reads no row
    assert one_row.article_at_50 == 1.0 and one_row.r_at_50 == 0.0
    empty = retrieval_figures(np.zeros((0, 50), dtype=np.int64), payload_keys, np.zeros((0, 2), dtype=np.int64))
    assert empty.article_at_50 == 0.0 and empty.r_at_5 == 0.0 and empty.count == 0 and np.isnan(empty.median_rank)


def test_echo_of_top_lists_one_deep_reads_each_row_against_its_own_context() -> None:
    payload_keys = np.array([[0, 0], [0, 1]])
    assert echo_rate(np.array([[0], [0]]), payload_keys, np.array([[[0, 0]], [[0, 1]]])) == 0.5


def test_echo_counts_payload_row_zero_and_never_padding() -> None:
    payload_keys = np.array([[0, 0]])  # one row: a -1 must not be read as row 0 or row 1
    context_keys = np.array([[[0, 0]], [[0, 0]], [[0, 0]]])
    assert echo_rate(np.array([0, -1, 0]), payload_keys, context_keys) == pytest.approx(2 / 3)
    assert echo_rate(np.array([[0], [-1], [0]]), payload_keys, context_keys) == pytest.approx(2 / 3)  # (M, 1) top lists
    assert echo_rate(np.array([0]), payload_keys, context_keys[:1]) == 1.0
    assert echo_rate(np.zeros(0, dtype=np.int64), payload_keys, context_keys[:0]) == 0.0


def test_excluded_lists_shorter_than_k_pad_with_misses_in_a_one_row_payload() -> None:
    payload_keys = np.array([[3, 1]])
    out = exclude_context(np.array([[0, -1, 0]]), payload_keys, np.array([[[9, 9]]]), k=5)
    assert out.tolist() == [[0, 0, -1, -1, -1]]
    assert exclude_context(np.array([[0, -1, 0]]), payload_keys, np.array([[[3, 1]]]), k=2).tolist() == [[-1, -1]]


def test_generalization_gap_is_train_minus_held_out_for_each_figure() -> None:
    def figures(r1: float, r5: float) -> Retrieval:
        return Retrieval(r1, r5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10)

    gap = generalization_gap(figures(0.5, 0.75), figures(0.25, 0.5), 0.75, 0.5)
    assert gap == {"r_at_5_gap": 0.25, "r_at_1_gap": 0.25, "cosine_gap": 0.25}


def test_retrieval_as_dict_holds_every_figure_by_name() -> None:
    figures = Retrieval(0.5, 0.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10)
    assert figures.as_dict() == {"r_at_1": 0.5, "r_at_5": 0.75, "r_at_10": 0.0, "r_at_50": 0.0, "mrr": 0.0, "contain_at_50": 0.0,
                                 "article_at_50": 0.0, "median_rank": 0.0, "count": 10}


def test_mean_cosine_of_one_row_and_of_none() -> None:
    assert mean_cosine(np.array([[3.0, 4.0]]), np.array([[4.0, 3.0]])) == pytest.approx(24 / 25)
    assert np.isnan(mean_cosine(np.zeros((0, 2)), np.zeros((0, 2))))


def test_offset_margin_and_peak_by_hand() -> None:
    assert offset_margin({-1: 0.2, 0: 0.5, 1: 0.625, 2: float("nan")}) == pytest.approx(0.125)
    assert offset_margin({0: 0.5, 1: 0.25}) == pytest.approx(-0.25)
    assert np.isnan(offset_margin({0: 0.5, 2: 0.4}))  # no +1 offset: nothing to compare
    assert np.isnan(offset_margin({1: 0.5, 2: float("nan")}))  # no other offset with a chunk
    assert offset_peak({0: float("nan")}) is None and offset_peak({}) is None


def test_offset_range_runs_from_the_first_context_chunk_to_three_ahead() -> None:
    assert offset_range(5) == [-5, -4, -3, -2, -1, 0, 1, 2, 3]
    assert offset_range(2, ahead=1) == [-2, -1, 0, 1]


def test_retrieval_intervals_follow_confidence_and_seed() -> None:
    ranks = np.array([1, 0, 3, 0, 2, 0, 0, 5, 0, 1] * 5)
    default = retrieval_intervals(ranks)
    assert default["mrr"] == retrieval_intervals(ranks)["mrr"] and default["mrr"].method.endswith("seed 0)")
    assert default["r_at_5"].confidence == 0.95 and default["mrr"].confidence == 0.95
    narrow = retrieval_intervals(ranks, confidence=0.5, seed=5)
    assert narrow["r_at_5"].confidence == 0.5 and narrow["r_at_5"].high - narrow["r_at_5"].low < default["r_at_5"].high - default["r_at_5"].low
    assert narrow["mrr"].confidence == 0.5 and narrow["mrr"].method.endswith("seed 5)")
    assert narrow["mrr"].high - narrow["mrr"].low < default["mrr"].high - default["mrr"].low


def test_separation_of_two_rows_is_measured_and_of_one_or_none_is_not() -> None:
    targets = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    two = separation(np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32), targets)
    assert (two.pos_mean, two.neg_mean, two.delta, two.auc, two.negatives_used) == pytest.approx((0.9, 0.3, 0.6, 1.0, 2))
    one = separation(np.array([[0.6, 0.8]], dtype=np.float32), targets[:1])
    assert one.pos_mean == pytest.approx(0.6) and one.negatives_used == 0
    assert all(np.isnan(v) for v in (one.neg_mean, one.delta, one.auc))
    none = separation(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
    assert np.isnan(none.pos_mean) and none.negatives_used == 0


def test_separation_samples_negatives_only_past_max_pairs_and_reproducibly() -> None:
    rng = np.random.default_rng(8)
    targets = l2_normalize(rng.normal(size=(10, 4)))
    preds = l2_normalize(targets + rng.normal(size=(10, 4)))
    assert separation(preds, targets, max_pairs=90).negatives_used == 90  # all 10 x 9 pairs
    assert separation(preds, targets, max_pairs=89).negatives_used == 10 * 8  # 89 // 10 per row
    assert separation(preds, targets, max_pairs=5).negatives_used == 10  # at least one per row
    assert separation(preds, targets, max_pairs=50) == separation(preds, targets, max_pairs=50)
    sims = preds.astype(np.float64) @ targets.T.astype(np.float64)
    exact_auc = empirical_auc(np.diag(sims), sims[~np.eye(10, dtype=bool)])
    assert separation(preds, targets, max_pairs=90).auc == pytest.approx(exact_auc, abs=1e-6)  # exactly M(M-1) pairs: every pair, no sample


def test_sampled_negatives_never_hold_the_own_target() -> None:
    targets = np.eye(3, dtype=np.float32)  # own cosine 1, every other 0: the AUC is 1 unless a row's own target is drawn as a negative
    assert all(separation(targets, targets, max_pairs=5, seed=seed).auc == 1.0 for seed in range(10))


def test_sampled_negatives_reach_every_other_row() -> None:
    """Three rows whose prediction is the NEXT row's target: the sampled AUC sees both other rows over seeds."""
    targets = np.eye(3, dtype=np.float32)
    preds = targets[[1, 2, 0]]  # sim(i, i+1) = 1, sim(i, i+2) = 0, own = 0
    aucs = {separation(preds, targets, max_pairs=5, seed=seed).auc for seed in range(10)}
    assert aucs != {0.5}, "a sample that never draws the next row"
