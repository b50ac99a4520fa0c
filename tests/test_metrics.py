"""Gate maths against independent implementations: ranx, scikit-learn, scipy and brute-force numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import make_seed_bank
from lvmcore.gate import baselines
from lvmcore.artifacts.evalset import EvalSet, load_eval_set
from lvmcore.gate.evaluate import evaluate
from lvmcore.gate.inputs import measure_inputs
from lvmcore.plumbing.key_recovery import ContextKeys
from lvmcore.search.exact import exact_search
from lvmcore.sampling import sample_rows
from lvmcore.vectors import cosine_rows
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
from lvmcore.artifacts.payload import Payload, load_payload
from lvmcore.artifacts.training_data import load_training_data, windows_from_payload
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


# The ridge's fast path (float32 Gram products summed in float64, Cholesky solves) against plain float64
# least squares. Float32 products perturb X^T X by about eps32 * |X^T X| (eps32 = 1.2e-7); the ridge damps
# every direction by at least alpha * mean(diag X^T X), so a weight can move by about eps32 / alpha of the
# largest (measured: at most 2.5 eps32 / alpha over 3,000 random problems like the property test's), mostly
# along directions the rows never visit, which predictions do not see (measured: at most 5e-6 relative).
EPS32 = float(np.finfo(np.float32).eps)
WEIGHT_TOLERANCE = 50 * EPS32  # max |W - W_ref| <= WEIGHT_TOLERANCE / alpha * max |W_ref|
PREDICTION_TOLERANCE = 1e-4  # |P - P_ref| / |P_ref|, predictions before normalization, Frobenius


def ridge_float64(flat: np.ndarray, targets: np.ndarray, alpha: float) -> np.ndarray:
    """(F + 1, D) float64: argmin |[X, 1] W - Y|^2 + lam |W[:F]|^2, lam = alpha * mean(diag X^T X), by lstsq.

    Written as least squares on rows [X, 1; sqrt(lam) I, 0] against [Y; 0], not as normal
    equations, so that it shares no step with `baselines._gram` / `_solve`.
    """
    x = flat.astype(np.float64)  # (N, F)
    n, features = x.shape
    lam = alpha * float(np.sum(x * x)) / features
    design = np.vstack([np.hstack([x, np.ones((n, 1))]), np.hstack([np.sqrt(lam) * np.eye(features), np.zeros((features, 1))])])  # (N + F, F + 1)
    answers = np.vstack([targets.astype(np.float64), np.zeros((features, targets.shape[1]))])  # (N + F, D)
    return np.linalg.lstsq(design, answers, rcond=None)[0]


def ridge_float64_selected(batch_of, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """The documented rule in float64: alpha by mean cosine on the last tenth of `rows`, then a refit on all rows."""
    contexts, targets = batch_of(rows)
    flat = contexts.reshape(len(rows), -1)  # (N, F)
    cut = len(rows) - len(rows) // 10
    design_hold = np.hstack([flat[cut:], np.ones((len(rows) - cut, 1))]).astype(np.float64)  # (H, F + 1)

    def held_out_cosine(alpha: float) -> float:
        return float(cosine_rows(design_hold @ ridge_float64(flat[:cut], targets[:cut], alpha), targets[cut:]).mean())

    alpha = max(baselines.RIDGE_ALPHAS, key=held_out_cosine)  # the first of equals, as fit_ridge's strict ">"
    return ridge_float64(flat, targets, alpha), alpha


def prediction_error(weights: np.ndarray, reference: np.ndarray, flat: np.ndarray) -> float:
    design = np.hstack([flat, np.ones((len(flat), 1))]).astype(np.float64)  # (N, F + 1)
    return float(np.linalg.norm(design @ (weights.astype(np.float64) - reference)) / np.linalg.norm(design @ reference))


def weight_error(weights: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(weights.astype(np.float64) - reference).max() / np.abs(reference).max())


@settings(max_examples=80, deadline=None)
@given(
    rows=st.integers(2, 60),
    context=st.integers(1, 3),
    dim=st.integers(1, 5),
    column=st.sampled_from(["free", "constant", "duplicate"]),
    offset=st.sampled_from([0.0, 5.0]),
    alpha=st.sampled_from(baselines.RIDGE_ALPHAS),
    batch_size=st.integers(1, 16),
    seed=st.integers(0, 2**16),
)
def test_ridge_fast_path_matches_float64_least_squares(rows, context, dim, column, offset, alpha, batch_size, seed) -> None:
    """One alpha, so the held-out tenth (from 20 rows on) only checks, and the final fit is on every row."""
    rng = np.random.default_rng(seed)
    flat = (rng.normal(size=(rows, context * dim)) + offset).astype(np.float32)  # (N, F)
    if column == "constant":  # the bias and this column compete for the mean; only the column is shrunk
        flat[:, 0] = 0.7
    if column == "duplicate":  # rank deficient: two equal columns share their weight
        flat[:, -1] = flat[:, 0]
    targets = (flat @ rng.normal(size=(context * dim, dim)) + 0.1 * rng.normal(size=(rows, dim)) + offset).astype(np.float32)  # (N, D)
    contexts = flat.reshape(rows, context, dim)  # (N, C, D)
    fast = baselines.fit_ridge(lambda r: (contexts[r], targets[r]), np.arange(rows), batch_size=batch_size, alphas=(alpha,))
    reference = ridge_float64(flat, targets, alpha)
    predictions, weights = prediction_error(fast.weights, reference, flat), weight_error(fast.weights, reference)
    assert predictions < PREDICTION_TOLERANCE, f"ridge predictions differ from float64 least squares by {predictions:.2e} (tolerance {PREDICTION_TOLERANCE:.0e}): the bias shrunk, or rows missing from the final fit?"
    assert weights < WEIGHT_TOLERANCE / alpha, f"ridge weights differ from float64 least squares by {weights:.2e} of the largest (tolerance {WEIGHT_TOLERANCE / alpha:.1e} at alpha {alpha})"


def test_ridge_keeps_float64_precision_when_features_share_a_mean() -> None:
    """Features sharing a mean five times their spread (embeddings share one), at alpha 1e-4.

    Full-rank features, 16 rows per feature: the centered problem is well conditioned (cond about 3),
    so the fast path's weights stay within 1e-4 of float64 least squares (measured 8.5e-6). Float32
    products of unshifted rows miss by 2.2e-3, and a float32 solve of the uncentered system by 9.4e-3.
    """
    rng = np.random.default_rng(0)
    rows, dim = 4096, 64
    flat = (rng.normal(size=(rows, 4 * dim)) + 5.0).astype(np.float32)  # (N, F)
    targets = (flat @ rng.normal(size=(4 * dim, dim)) / 16 + 0.1 * rng.normal(size=(rows, dim))).astype(np.float32)  # (N, D)
    contexts = flat.reshape(rows, 4, dim)  # (N, C, D)
    fast = baselines.fit_ridge(lambda r: (contexts[r], targets[r]), np.arange(rows), batch_size=1024, alphas=(1e-4,))
    weights = weight_error(fast.weights, ridge_float64(flat, targets, 1e-4))
    assert weights < 1e-4, f"ridge weights differ from float64 least squares by {weights:.2e} of the largest (tolerance 1e-4): float32 products of unshifted rows, or a float32 solve?"


def test_ridge_without_scipy_solves_by_lu_to_the_same_weights(monkeypatch) -> None:
    """scipy is a test dependency only: without it `_solve` falls back to LU on the same float64 system."""
    rng = np.random.default_rng(1)
    contexts = rng.normal(size=(300, 3, 8)).astype(np.float32)  # (N, C, D)
    targets = (contexts[:, -1] + 0.1 * rng.normal(size=(300, 8))).astype(np.float32)  # (N, D)
    cholesky = baselines.fit_ridge(lambda r: (contexts[r], targets[r]), np.arange(300), batch_size=64)
    monkeypatch.setattr(baselines, "cho_factor", None)
    lu = baselines.fit_ridge(lambda r: (contexts[r], targets[r]), np.arange(300), batch_size=64)
    assert lu.alpha == cholesky.alpha
    np.testing.assert_allclose(lu.weights, cholesky.weights, rtol=1e-5, atol=1e-6 * np.abs(cholesky.weights).max())


SEED_ROWS, SEED_DIM = 16_000, 128  # the seed bank's walks span 64 of the 128 dims: X^T X is rank deficient, as at full size


@pytest.fixture(scope="module")
def seed_bank(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("seed")
    make_seed_bank.main(["--out", str(out), "--rows", str(SEED_ROWS), "--dim", str(SEED_DIM), "--eval-rows", "300", "--seed", "3"])
    payload = load_payload(out / "payload")
    return load_training_data(out / "train.json", payload), load_eval_set(out / "eval.npz", expected_dim=payload.dim)


def test_ridge_fast_path_picks_the_float64_alpha_and_predictions_on_a_seed_bank(seed_bank) -> None:
    """The whole rule (alpha on the held-out tenth, refit on all rows) against float64 least squares.

    Alpha 0.1 wins here by 0.0013 mean held-out cosine over the next (0.01), far above what float32
    products move (about 1e-7), so the same alpha is a fair demand. Eval predictions' cosine to the
    reference, measured 1 - 3e-13 (storing the reference's weights in float32, as RidgeBaseline does,
    alone gives 1 - 5e-14); 1 - 1e-6 leaves room for other BLAS kernels and still fails a refit
    without the held-out rows (0.982).
    """
    training, eval_set = seed_bank
    rows = sample_rows(training.count, 8_000, 0)
    fast = baselines.fit_ridge(training.batch, rows, batch_size=2048)
    reference, alpha = ridge_float64_selected(training.batch, rows)
    assert fast.alpha == alpha, f"the fast ridge chose alpha {fast.alpha}, float64 least squares {alpha}"
    flat = eval_set.contexts.reshape(eval_set.count, -1)  # (M, F): windows of documents the ridge never saw
    expected = np.hstack([flat, np.ones((len(flat), 1))]).astype(np.float64) @ reference  # (M, D)
    cosine = float(cosine_rows(fast(eval_set.contexts), expected).min())  # in float64: a float32 cosine rounds by 1e-7
    assert cosine > 1 - 1e-6, f"an eval prediction of the fast ridge has cosine {cosine:.9f} to float64 least squares (needs > 1 - 1e-6)"
    weights = weight_error(fast.weights, reference)
    assert weights < WEIGHT_TOLERANCE / alpha, f"ridge weights differ from float64 least squares by {weights:.2e} of the largest (tolerance {WEIGHT_TOLERANCE / alpha:.1e})"


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
