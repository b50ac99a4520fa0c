"""Prediction health: is the model's output a prediction at all, for the right rows, and not a copy of the answer?

Retrieval figures say how well predictions find their targets; they cannot say *why* a figure is
zero or perfect. A broken model (zero rows, one constant vector for every input, output unrelated
to its input), a leaked target (the truth vector, or the truth plus a little noise, handed back as a
prediction) and a pipeline that writes good predictions into the wrong rows all produce figures a
decision would otherwise read as a model that cannot learn, or as a model that is excellent. Each
figure here separates one of those from an honest model; all are pure functions of arrays.

The statistics, and what a healthy model gives:

* **zero / constant / repeated rows**: counts of prediction rows with norm under `ZERO_NORM`, with
  every coordinate equal, or equal (after normalising, to `REPEAT_DECIMALS` decimals) to another
  row's prediction although the two contexts differ. Honest models give 0 of each.
* **information about the input** (`input_information`): a representational-similarity test. For
  a sample of rows, the Pearson correlation r between the pairwise cosines of their contexts (the
  context mean) and the pairwise cosines of their predictions. Random output is modelled by the
  same predictions with their rows permuted: `PERMUTATIONS` seeded permutations give the null mean
  and spread, and the figure is z = (r - null mean) / null sd. A model whose output depends on its
  input in any consistent way (an untrained network included) gives z in the tens; output that
  ignores the input gives |z| of about 1. Constant output has no spread: z is NaN, which fails.
* **copies of the answer** (`answer_copies`): the share of rows whose prediction equals its own
  truth (target or payload row of the truth key, cosine >= `COPY_COSINE`) where no context vector
  of the row equals that truth (a copier that copies a repeated chunk is not a leak); and the
  *oracle closure* (cos(model, target) - cos(best baseline, target)) / (1 - cos(best baseline,
  target)): the share of the gap between the best context-only baseline and the oracle (cosine 1)
  that the model closes. Next-chunk prediction from text is uncertain; a trained GRU on the
  embedded bank closes a few percent, a leaked target with noise at cosine 0.95 closes about 90%.
* **row order** (`row_order`): two tests that predictions belong to the rows they are filed under.
  *Shift*: for s = -1 and +1, over the rows i whose row i+s is from another article, a one-sided
  sign test that prediction i is closer to target i+s than both to its own target and to the target
  of a random row of a third article. For a prediction made for row i, the targets of two other
  documents are exchangeable, so that chance is at most 1/2 whatever the model (honest, untrained,
  random, or a copier whose own target is its farthest), and the Bonferroni p over the two shifts has
  a false-alarm rate of at most the level it is compared with (1%). Rows of one article are left out: a copier's prediction
  is the previous row's target there, which is a model behaviour (row 13), not a row-order bug.
  *Elsewhere*: the share of rows whose top 5 holds the truth of another eval row from another
  article, minus the share that holds their own truth, minus what random retrieval would give
  (`elsewhere_hits`' chance). Measured lower 95% bounds: shuffled files of ridge, copier and GRU
  predictions +0.49 to +0.62 (embedded bank, smooth-walk bank); random output -0.33 to -0.04 there,
  but +0.30 on a small synthetic bank whose eval truths are half the payload (hub vectors), so the
  level is 0.40, and the decision reads this test only for output that also fails the information
  test: an honest model, which follows its own input, is never called misfiled by it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lvmcore.gate.intervals import bootstrap_mean_interval
from lvmcore.keys import pack_keys
from lvmcore.sampling import sample_rows
from lvmcore.vectors import l2_normalize

ZERO_NORM = 1e-6  # a prediction row shorter than this is "zero": it has no direction to search with
REPEAT_DECIMALS = 4  # normalised predictions equal to 4 decimals in every coordinate are the same vector
COPY_COSINE = 0.9999  # a prediction this close to its truth is the truth itself (float32 noise aside)
INFORMATION_ROWS = 800  # rows sampled for the similarity test: 320k pairs, a fraction of a second
PERMUTATIONS = 200  # permutations behind the null of the similarity test
SHIFTS = (-1, 1)
COMPARE_K = 5


@dataclass(frozen=True)
class DegenerateRows:
    """Prediction rows that cannot be a prediction: zero, constant, or repeated across different contexts."""

    zero: int
    constant: int
    repeated: int  # rows whose prediction equals another row's while the contexts differ
    rows: int

    @property
    def repeated_share(self) -> float:
        return self.repeated / self.rows if self.rows else 0.0


def degenerate_rows(preds: np.ndarray, contexts: np.ndarray) -> DegenerateRows:
    """Count zero, constant and repeated prediction rows of (M, D) predictions for (M, C, D) contexts."""
    preds = np.asarray(preds, dtype=np.float32)
    m = len(preds)
    finite = np.isfinite(preds).all(axis=1)
    norms = np.linalg.norm(np.where(finite[:, None], preds, 0.0), axis=1)
    zero = finite & (norms < ZERO_NORM)
    spread = preds.max(axis=1) - preds.min(axis=1) if preds.shape[1] else np.zeros(m)
    constant = finite & ~zero & (spread <= 1e-7 * np.maximum(np.abs(preds).max(axis=1), 1e-30))
    usable = finite & ~zero
    repeated = np.zeros(m, dtype=bool)
    if usable.sum() > 1:
        rounded = np.round(l2_normalize(preds[usable]), REPEAT_DECIMALS) + 0.0  # + 0.0: -0.0 and 0.0 alike
        _, group, sizes = np.unique(rounded, axis=0, return_inverse=True, return_counts=True)
        group = group.reshape(-1)
        shared = sizes[group] > 1
        if shared.any():
            context_bytes = np.ascontiguousarray(np.asarray(contexts, dtype=np.float32)[usable]).reshape(int(usable.sum()), -1)
            _, context_group = np.unique(context_bytes, axis=0, return_inverse=True)
            context_group = context_group.reshape(-1)
            # a repeated prediction is innocent when every row sharing it has the same context
            contexts_per_group = np.zeros(len(sizes), dtype=np.int64)
            pairs = np.unique(np.stack([group, context_group], axis=1), axis=0)
            np.add.at(contexts_per_group, pairs[:, 0], 1)
            repeated[np.flatnonzero(usable)] = shared & (contexts_per_group[group] > 1)
    return DegenerateRows(int(zero.sum()), int(constant.sum()), int(repeated.sum()), m)


@dataclass(frozen=True)
class InputInformation:
    """Representational similarity between contexts and predictions, against row-permuted predictions."""

    correlation: float  # Pearson r of pairwise context cosines vs pairwise prediction cosines
    null_mean: float
    null_sd: float
    z: float  # (correlation - null_mean) / null_sd; NaN when the predictions have no spread
    rows: int


def _upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(len(matrix), k=1)]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 0 else float("nan")


def input_information(preds: np.ndarray, contexts: np.ndarray, seed: int = 0, rows: int = INFORMATION_ROWS,
                      permutations: int = PERMUTATIONS) -> InputInformation:
    """Does the output depend on the input? r(context similarities, prediction similarities), as a z against permutations."""
    chosen = sample_rows(len(preds), rows, seed) if len(preds) > rows else np.arange(len(preds))
    if len(chosen) < 4:
        return InputInformation(float("nan"), float("nan"), float("nan"), float("nan"), len(chosen))
    context_means = l2_normalize(np.asarray(contexts, dtype=np.float32)[chosen].mean(axis=1))  # (m, D)
    p = l2_normalize(np.nan_to_num(np.asarray(preds, dtype=np.float32)[chosen]))  # (m, D)
    context_sims = _upper(context_means @ context_means.T).astype(np.float64)
    pred_matrix = (p @ p.T).astype(np.float64)
    observed = _pearson(context_sims, _upper(pred_matrix))
    if observed != observed:
        return InputInformation(float("nan"), float("nan"), float("nan"), float("nan"), len(chosen))
    rng = np.random.default_rng(seed)
    null = np.empty(permutations)
    for n in range(permutations):
        order = rng.permutation(len(chosen))
        null[n] = _pearson(context_sims, _upper(pred_matrix[np.ix_(order, order)]))
    sd = float(null.std(ddof=1))
    z = (observed - float(null.mean())) / sd if sd > 0 else float("nan")
    return InputInformation(observed, float(null.mean()), sd, z, len(chosen))


@dataclass(frozen=True)
class AnswerCopies:
    """How close predictions come to the answer they should not have seen."""

    copied_rows: int  # prediction == own truth (target or payload row of the truth key), not explained by the context
    rows: int
    model_cosine: float  # mean cos(prediction, target)
    baseline_cosine: float  # the best baseline's
    oracle_closure: float  # (model - baseline) / (1 - baseline): share of the baseline-to-oracle gap the model closes

    @property
    def copied_share(self) -> float:
        return self.copied_rows / self.rows if self.rows else 0.0


def answer_copies(preds: np.ndarray, targets: np.ndarray, truth_vectors: np.ndarray, truth_found: np.ndarray,
                  contexts: np.ndarray, baseline_cosine: float) -> AnswerCopies:
    """Copies of each row's truth among the predictions, and the share of the gap to the oracle the model closes.

    truth_vectors / truth_found: the payload row of each truth key, and whether the key was found.
    """
    p = l2_normalize(np.nan_to_num(np.asarray(preds, dtype=np.float32)))  # (M, D)
    t = l2_normalize(np.asarray(targets, dtype=np.float32))  # (M, D)
    truth = l2_normalize(np.asarray(truth_vectors, dtype=np.float32))
    to_target = np.einsum("md,md->m", p, t)
    to_truth = np.where(truth_found, np.einsum("md,md->m", p, truth), -1.0)
    copy = (to_target >= COPY_COSINE) | (to_truth >= COPY_COSINE)
    c = l2_normalize(np.asarray(contexts, dtype=np.float32))  # (M, C, D)
    in_context = (np.einsum("mcd,md->mc", c, t) >= COPY_COSINE).any(axis=1)
    copied = copy & ~in_context
    model_cosine = float(to_target.mean()) if len(p) else float("nan")
    gap = 1.0 - baseline_cosine
    closure = (model_cosine - baseline_cosine) / gap if gap > 1e-9 else float("nan")
    return AnswerCopies(int(copied.sum()), len(p), model_cosine, float(baseline_cosine), float(closure))


@dataclass(frozen=True)
class RowOrder:
    """Whether predictions belong to the rows they are filed under."""

    shift_p: float  # Bonferroni p (over SHIFTS) of the sign test "closer to row i+s's target than to its own"
    worst_shift: int  # the shift with the smallest p
    shift_rows: int  # rows compared at that shift (row i+s from another article)
    shift_closer: int  # of them, rows whose prediction is closer to target i+s
    elsewhere_share: float  # top 5 holds another article's eval truth
    own_share: float  # top 5 holds the row's own truth (R@5)
    chance_share: float  # what random retrieval of 5 payload rows would give for elsewhere_share
    elsewhere_excess_low: float  # 95% lower bound of mean(elsewhere - own - chance) over rows

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def sign_test_p(closer: int, rows: int) -> float:
    """One-sided P(Binomial(rows, 1/2) >= closer): exact, in log space for large counts."""
    if rows == 0:
        return 1.0
    logs = [math.lgamma(rows + 1) - math.lgamma(k + 1) - math.lgamma(rows - k + 1) - rows * math.log(2.0) for k in range(closer, rows + 1)]
    top = max(logs)
    return float(min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs)))


def shift_test(preds: np.ndarray, targets: np.ndarray, truth_keys: np.ndarray, seed: int = 0) -> tuple[float, int, int, int]:
    """(Bonferroni p, worst shift, rows compared, rows closer to the shifted target) over SHIFTS.

    A row counts when its prediction is closer to target i+s than to its own target AND than to the
    target of a seeded random row from a third document: targets of two other documents are
    exchangeable for any prediction made for row i, so the chance is at most 1/2 whatever the model
    (an anti-aligned copier, whose own target is its farthest, included).
    """
    p = l2_normalize(np.nan_to_num(np.asarray(preds, dtype=np.float32)))
    t = l2_normalize(np.asarray(targets, dtype=np.float32))
    articles = np.asarray(truth_keys)[:, 0]
    own = np.einsum("md,md->m", p, t)
    m = len(p)
    rng = np.random.default_rng(seed)
    best = (1.0, SHIFTS[0], 0, 0)
    for s in SHIFTS:
        rows = np.arange(max(0, -s), min(m, m - s))
        rows = rows[articles[rows] != articles[rows + s]]
        third = np.array([_third_row(rng, articles, articles[i], articles[i + s]) for i in rows], dtype=np.int64)
        usable = third >= 0
        rows, third = rows[usable], third[usable]
        shifted = np.einsum("md,md->m", p[rows], t[rows + s])
        other = np.einsum("md,md->m", p[rows], t[third])
        decided = shifted != np.maximum(own[rows], other)  # ties carry no sign
        closer = int((shifted > np.maximum(own[rows], other)).sum())
        p_value = min(1.0, len(SHIFTS) * sign_test_p(closer, int(decided.sum())))
        if p_value < best[0] or (best[2] == 0 and len(rows)):
            best = (p_value, s, int(decided.sum()), closer)
    return best


def _third_row(rng: np.random.Generator, articles: np.ndarray, first: int, second: int) -> int:
    """A seeded random row whose article is neither `first` nor `second` (-1 when there is none)."""
    candidates = np.flatnonzero((articles != first) & (articles != second))
    return int(rng.choice(candidates)) if len(candidates) else -1


def elsewhere_hits(top_rows: np.ndarray, payload_keys: np.ndarray, truth_keys: np.ndarray, k: int = COMPARE_K) -> tuple[np.ndarray, np.ndarray]:
    """(M,) booleans: the top k holds the truth of another eval row from another article; and its chance per row.

    Chance: 1 - (1 - q)^k with q the share of payload rows that are such truths, as if the k rows were drawn at random.
    """
    top = np.asarray(top_rows)[:, :k]
    keys = np.asarray(payload_keys)
    truth_keys = np.asarray(truth_keys, dtype=np.int64)
    truth_codes = pack_keys(truth_keys)
    valid = top >= 0
    top_keys = keys[np.where(valid, top, 0)]  # (M, k, 2)
    top_codes = pack_keys(top_keys.reshape(-1, 2)).reshape(top.shape)
    order = np.argsort(truth_codes, kind="stable")
    sorted_codes = truth_codes[order]
    position = np.clip(np.searchsorted(sorted_codes, top_codes), 0, len(sorted_codes) - 1)
    is_truth = valid & (sorted_codes[position] == top_codes)
    other_article = top_keys[..., 0] != truth_keys[:, :1]
    hits = (is_truth & other_article).any(axis=1)
    truth_rows = np.isin(pack_keys(keys), truth_codes)  # payload rows holding some eval truth key: one pass over the payload
    articles, per_article = np.unique(keys[truth_rows, 0], return_counts=True)
    own_truth_rows = np.zeros(len(truth_keys), dtype=np.int64)  # truth rows of the row's own article: never "elsewhere"
    if len(articles):
        position = np.clip(np.searchsorted(articles, truth_keys[:, 0]), 0, len(articles) - 1)
        own_truth_rows = np.where(articles[position] == truth_keys[:, 0], per_article[position], 0)
    q = (int(truth_rows.sum()) - own_truth_rows) / max(1, len(keys))
    return hits, 1.0 - (1.0 - q) ** k


def row_order(preds: np.ndarray, targets: np.ndarray, truth_keys: np.ndarray, top_rows: np.ndarray, own_ranks: np.ndarray,
              payload_keys: np.ndarray, seed: int = 0) -> RowOrder:
    """Both row-order tests (see the module docstring)."""
    shift_p, shift, compared, closer = shift_test(preds, targets, truth_keys, seed)
    elsewhere, chance = elsewhere_hits(top_rows, payload_keys, truth_keys)
    own = (np.asarray(own_ranks) > 0) & (np.asarray(own_ranks) <= COMPARE_K)
    excess = elsewhere.astype(np.float64) - own - chance
    low = bootstrap_mean_interval(excess, seed=seed).low if len(excess) else float("nan")
    return RowOrder(shift_p, shift, compared, closer, float(elsewhere.mean()) if len(elsewhere) else 0.0,
                    float(own.mean()) if len(own) else 0.0, float(chance.mean()) if len(chance) else 0.0, float(low))


@dataclass(frozen=True)
class PredictionHealth:
    """Every prediction-health figure of one model on the eval set."""

    degenerate: DegenerateRows
    information: InputInformation
    copies: AnswerCopies
    order: RowOrder


def prediction_health(preds: np.ndarray, contexts: np.ndarray, targets: np.ndarray, truth_keys: np.ndarray, truth_vectors: np.ndarray,
                      truth_found: np.ndarray, baseline_cosine: float, top_rows: np.ndarray, own_ranks: np.ndarray,
                      payload_keys: np.ndarray, seed: int = 0) -> PredictionHealth:
    """Zero/constant/repeated rows, information about the input, copies of the answer and row order."""
    return PredictionHealth(
        degenerate=degenerate_rows(preds, contexts),
        information=input_information(preds, contexts, seed),
        copies=answer_copies(preds, targets, truth_vectors, truth_found, contexts, baseline_cosine),
        order=row_order(preds, targets, truth_keys, top_rows, own_ranks, payload_keys, seed),
    )
