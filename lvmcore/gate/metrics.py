"""Gate metrics as pure functions of arrays: separation, empirical AUC, retrieval, echo, offset sweep.

Everything here takes numpy arrays and returns numbers or small dataclasses; searching, loading
and printing live elsewhere (`lvmcore.gate.evaluate`, `lvmcore.gate.report`). Hits are decided by KEY
(`lvmcore.search.hits.key_hits`), never by one payload row id, so duplicated keys cannot hide a hit;
first-hit ranks and every figure made from them (hits at K, R@K, MRR, the recall curve) have their
one home in `lvmcore.search.hits`, which this module reads and does not repeat.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lvmcore.gate.intervals import Interval, bootstrap_mean_interval, wilson_interval
from lvmcore.keys import pack_keys, shift_keys
from lvmcore.vectors import l2_normalize
from lvmcore.search.hits import first_hit_rank, hits_at, key_hits, mean_reciprocal_rank, recall_at, reciprocal_ranks

RECALL_KS = (1, 5, 10, 50)
CONTAIN_K = 50
MAX_NEGATIVE_PAIRS = 4_000_000  # above this many (i, j != i) pairs, AUC uses a seeded sample of negatives


# --------------------------------------------------------------------------- separation


def empirical_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(positive score > negative score), ties counting one half: the Mann-Whitney U / (n_pos * n_neg).

    Measured from ranks (a sort and two searches), never from a normal approximation: the public
    report's AUC of 0.998 came from a formula over means and variances, not from the scores.
    """
    positives = np.asarray(positives, dtype=np.float64).reshape(-1)
    negatives = np.sort(np.asarray(negatives, dtype=np.float64).reshape(-1))
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    below = np.searchsorted(negatives, positives, side="left")  # negatives strictly below each positive
    not_above = np.searchsorted(negatives, positives, side="right")
    u = below.sum() + 0.5 * (not_above - below).sum()
    return float(u / (len(positives) * len(negatives)))


@dataclass(frozen=True)
class Separation:
    """Cosine of each prediction to its own target (positive) vs to the other rows' targets (negative)."""

    pos_mean: float
    neg_mean: float
    delta: float
    auc: float
    negatives_used: int  # negative pairs behind the AUC (all pairs, or a seeded sample above MAX_NEGATIVE_PAIRS)


def separation(preds: np.ndarray, targets: np.ndarray, max_pairs: int = MAX_NEGATIVE_PAIRS, seed: int = 0, block: int = 2048) -> Separation:
    """Pos/neg cosine separation and empirical AUC of predictions against targets, row i <-> row i.

    The negative mean is exact over all M(M-1) pairs (from the sums of the vectors). The AUC ranks
    every pair (i, j != i) up to `max_pairs`; beyond it, each row contributes a seeded sample of
    max_pairs // M columns j = i + s mod M, s in 1..M-1 (stated in `negatives_used`). Scores come
    from block matrix products, (block, M) at a time, so M = 5,244 rows cost one 5k x 5k GEMM.
    """
    preds = l2_normalize(preds)  # (M, D) float32
    targets = l2_normalize(targets)  # (M, D) float32
    m = len(preds)
    if m < 2:
        pos = np.einsum("md,md->m", preds, targets)
        return Separation(float(pos.mean()) if m else float("nan"), float("nan"), float("nan"), float("nan"), 0)
    per_row = None if m * (m - 1) <= max_pairs else max(1, max_pairs // m)
    rng = np.random.default_rng(seed)
    pos_parts, neg_parts = [], []
    for start in range(0, m, block):
        rows = np.arange(start, min(start + block, m))
        sims = preds[rows] @ targets.T  # (b, M)
        pos_parts.append(sims[np.arange(len(rows)), rows])
        if per_row is None:
            own = np.zeros(sims.shape, dtype=bool)
            own[np.arange(len(rows)), rows] = True
            neg_parts.append(sims[~own])
        else:
            columns = (rows[:, None] + rng.integers(1, m, size=(len(rows), per_row))) % m  # (b, per_row), never the own column
            neg_parts.append(np.take_along_axis(sims, columns, axis=1).reshape(-1))
    pos, neg = np.concatenate(pos_parts), np.concatenate(neg_parts)
    pos64 = pos.astype(np.float64)
    neg_mean = (preds.sum(0, dtype=np.float64) @ targets.sum(0, dtype=np.float64) - pos64.sum()) / (m * (m - 1))
    return Separation(float(pos64.mean()), float(neg_mean), float(pos64.mean() - neg_mean), empirical_auc(pos, neg), int(len(neg)))


def mean_cosine(preds: np.ndarray, targets: np.ndarray) -> float:
    """Mean cos(pred_i, target_i)."""
    if len(preds) == 0:
        return float("nan")
    return float(np.einsum("md,md->m", l2_normalize(preds), l2_normalize(targets)).mean())


# --------------------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class Retrieval:
    """Retrieval of the truth key in a top-50 list, duplicate aware.

    r_at_k: fraction of queries whose first truth-key hit is at rank <= k. mrr: MRR@50 (0 for a
    query whose truth is not in its top 50). contain_at_50: the public pipeline's "ground truth in
    the raw top-50 candidates": truth key anywhere in the top 50 of the list as searched, before
    any rerank. We never rerank (a rerank by the query's article leaks metadata, FAILURE_MODES
    row 14), so contain_at_50 equals r_at_50 here; it is kept under its public name so figures
    compare. article_at_50 is ours: some chunk of the truth's *article* in the top 50 (the model
    found the right document but not the chunk). median_rank: median first-hit rank, 51 standing
    for "not in the top 50".
    """

    r_at_1: float
    r_at_5: float
    r_at_10: float
    r_at_50: float
    mrr: float
    contain_at_50: float
    article_at_50: float
    median_rank: float
    count: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def hit_ranks(retrieved_rows: np.ndarray, payload_keys: np.ndarray, truth_keys: np.ndarray) -> np.ndarray:
    """1-based rank of the first truth-key hit per query (0 when not retrieved), duplicate aware."""
    return first_hit_rank(key_hits(retrieved_rows, payload_keys, truth_keys))


def retrieval_figures(retrieved_rows: np.ndarray, payload_keys: np.ndarray, truth_keys: np.ndarray, ranks: np.ndarray | None = None) -> Retrieval:
    """R@1/5/10/50, MRR@50, Contain@50 and Article@50 from (M, K>=50) retrieved payload rows.

    ranks: the rows' `hit_ranks`, when the caller has them already (they are not computed twice).
    """
    retrieved_rows = np.asarray(retrieved_rows)[:, :CONTAIN_K]
    truth_keys = np.asarray(truth_keys, dtype=np.int64)
    ranks = hit_ranks(retrieved_rows, payload_keys, truth_keys) if ranks is None else np.asarray(ranks)
    valid = retrieved_rows >= 0
    articles = np.asarray(payload_keys)[np.where(valid, retrieved_rows, 0), 0]  # (M, K)
    article_hit = (valid & (articles == truth_keys[:, :1])).any(axis=1)
    m = len(ranks)
    return Retrieval(
        r_at_1=recall_at(ranks, 1),
        r_at_5=recall_at(ranks, 5),
        r_at_10=recall_at(ranks, 10),
        r_at_50=recall_at(ranks, 50),
        mrr=mean_reciprocal_rank(ranks),
        contain_at_50=recall_at(ranks, CONTAIN_K),
        article_at_50=float(article_hit.mean()) if m else 0.0,
        median_rank=float(np.median(np.where(ranks > 0, ranks, CONTAIN_K + 1))) if m else float("nan"),
        count=int(m),
    )


def exclude_context(retrieved_rows: np.ndarray, payload_keys: np.ndarray, context_keys: np.ndarray, k: int = CONTAIN_K) -> np.ndarray:
    """(M, k) result lists with every candidate whose key is one of the query's own context keys removed.

    The "context-excluded" view: copy-last's rank 1 is always its own last context chunk, so raw
    R@K rewards echoing. Order is kept; lists run short pad with -1 (a miss). Search deep enough
    (k + C + a few, for duplicated keys) that k candidates survive.
    """
    retrieved_rows = np.asarray(retrieved_rows)
    valid = retrieved_rows >= 0
    codes = pack_keys(np.asarray(payload_keys)[np.where(valid, retrieved_rows, 0)])  # (M, K)
    context_codes = pack_keys(np.asarray(context_keys, dtype=np.int64))  # (M, C)
    keep = valid & ~(codes[:, :, None] == context_codes[:, None, :]).any(axis=2)  # (M, K)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept candidates first, in their order
    kept = np.take_along_axis(keep, order, axis=1)
    out = np.where(kept, np.take_along_axis(retrieved_rows, order, axis=1), -1)
    if out.shape[1] < k:
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
    return out


def retrieval_intervals(ranks: np.ndarray, confidence: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """95% intervals of R@1/5/10/50 (Wilson) and MRR (bootstrap over rows) from first-hit ranks."""
    ranks = np.asarray(ranks)
    out = {f"r_at_{k}": wilson_interval(int(hits_at(ranks, k).sum()), len(ranks), confidence) for k in RECALL_KS}
    out["mrr"] = bootstrap_mean_interval(reciprocal_ranks(ranks), confidence, seed=seed)
    return out


def ivf_exact_agreement(ranks_index: np.ndarray, ranks_exact: np.ndarray) -> float | None:
    """Of the queries exact search finds in its top 50, the fraction the index also finds in its top 50.

    None when exact search finds nothing (nothing to agree on). A value well below 1 is an index
    problem (too few lists probed, a stale or foreign index), not a model problem.
    """
    found = np.asarray(ranks_exact) > 0
    if not found.any():
        return None
    return float((np.asarray(ranks_index)[found] > 0).mean())


# --------------------------------------------------------------------------- echo and offsets


def echo_rate(top_rows: np.ndarray, payload_keys: np.ndarray, context_keys: np.ndarray) -> float:
    """Fraction of queries whose top-1 retrieved chunk is one of the query's own context chunks (by key).

    top_rows: (M,) payload rows; context_keys: (M, C, 2). A model that echoes its input scores a
    high R@5 on smooth documents while R@1 stays near zero (FAILURE_MODES row 13).
    """
    top_rows = np.asarray(top_rows).reshape(-1)
    if len(top_rows) == 0:
        return 0.0
    valid = top_rows >= 0
    top_codes = pack_keys(np.asarray(payload_keys)[np.where(valid, top_rows, 0)])  # (M,)
    context_codes = pack_keys(np.asarray(context_keys, dtype=np.int64))  # (M, C)
    return float((valid & (context_codes == top_codes[:, None]).any(axis=1)).mean())


def offset_range(context_length: int, ahead: int = 3) -> list[int]:
    """Offsets k = -C..+ahead from the last context position (k=0 is the last context chunk, +1 the target)."""
    return list(range(-context_length, ahead + 1))


def offset_keys(last_keys: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys (article, chunk + offset) of each row's last context key, and a mask of those >= 0."""
    return shift_keys(last_keys, 1, offset)


def offset_margin(sweep: dict[int, float]) -> float:
    """cos at k=+1 minus the highest cos at any other offset: above zero when the sweep peaks at the next chunk (NaN when undefined)."""
    others = [v for k, v in sweep.items() if k != 1 and v == v]
    return sweep.get(1, float("nan")) - max(others) if others else float("nan")


def offset_peak(sweep: dict[int, float]) -> int | None:
    """The offset with the highest mean cosine (None if no offset had a chunk)."""
    finite = {k: v for k, v in sweep.items() if v == v}
    return max(finite, key=finite.get) if finite else None


# --------------------------------------------------------------------------- generalization


def generalization_gap(train: Retrieval, held_out: Retrieval, train_cosine: float, held_out_cosine: float) -> dict[str, float]:
    """Train-minus-held-out differences; a large positive R@5 gap means the model learned its rows, not the task."""
    return {
        "r_at_5_gap": train.r_at_5 - held_out.r_at_5,
        "r_at_1_gap": train.r_at_1 - held_out.r_at_1,
        "cosine_gap": train_cosine - held_out_cosine,
    }
