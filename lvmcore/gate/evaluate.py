"""Every gate metric of one checkpoint, from one batched pass: predict once, search once, measure.

All query sets of a checkpoint (the model on the eval set, the three context-only baselines, the
oracle, the model on a sample of training windows) are concatenated and searched in ONE blockwise
exact pass over the payload memory map (`lvmcore.search.ivf.exact_search`); the model's and the
oracle's queries, whose IVF figures the gates read, also go through ONE IVF search (IVF-Flat
search is memory-bound: at seed scale the baselines' and training sample's 18,000 IVF queries
would add a third to the gate's time for figures no gate uses). Every metric is then computed
from those result lists. The model enters as `predict_fn(contexts) ->
preds`, so the maths is tested with plain numpy "models" (copy-last, random, oracle) and the
checks pass a loaded checkpoint's `predict`.

Two-tower models search `bank_fn(payload)` (their payload tower) instead of the raw payload; their
query sets are searched in a second streamed pass that encodes the bank block by block (no
encoded copy of the bank is kept), and have no IVF figures (the cached IVF index holds raw vectors).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import faiss
import numpy as np

from lvmcore.gate import baselines as base
from lvmcore.gate.decision import GateMetrics
from lvmcore.artifacts.evalset import EvalSet
from lvmcore.search.ivf import exact_search, index_search
from lvmcore.gate.metrics import (
    CONTAIN_K,
    Retrieval,
    Separation,
    echo_rate,
    generalization_gap,
    hit_agreement,
    hit_ranks,
    l2_normalize,
    mean_cosine,
    offset_keys,
    offset_peak,
    offset_range,
    retrieval,
    separation,
)
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData

PredictFn = Callable[[np.ndarray], np.ndarray]
BankFn = Callable[[np.ndarray], np.ndarray]
IVF_SETS = ("model", "oracle")  # the query sets whose IVF figures a gate reads: IVF search is memory-bound, ~1.8 ms a query at seed scale
RIDGE_MAX_WINDOWS = 20_000  # X^T X at C*D = 3,840 features: ~300 GFLOP, under a minute on 2 cores
HIST_BINS = np.linspace(-1.0, 1.0, 81)
EXAMPLE_ROWS = 5
TEXT_CHARS = 240


@dataclass
class QuerySetResult:
    """One query set's figures: exact search always, IVF when the raw-payload index was searched."""

    name: str
    exact: Retrieval
    ivf: Retrieval | None
    cosine: float  # mean cos(query, target)
    echo: float | None  # top-1 (exact) is one of the query's own context chunks; None without context keys
    ivf_agreement: float | None
    exact_ranks: np.ndarray = field(repr=False)  # (M,) first-hit rank, 0 = not in top 50
    ivf_ranks: np.ndarray | None = field(repr=False)
    top_rows: np.ndarray = field(repr=False)  # (M, 50) exact-search payload rows
    top_scores: np.ndarray = field(repr=False)  # (M, 50)

    def recall_curve(self, ivf: bool = False) -> list[float]:
        """R@k for k = 1..50."""
        ranks = self.ivf_ranks if ivf else self.exact_ranks
        if ranks is None or len(ranks) == 0:
            return []
        return [float(((ranks > 0) & (ranks <= k)).mean()) for k in range(1, CONTAIN_K + 1)]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cosine": self.cosine,
            "echo_rate": self.echo,
            "ivf_agreement": self.ivf_agreement,
            **{f"exact_{k}": v for k, v in self.exact.as_dict().items()},
            **({f"ivf_{k}": v for k, v in self.ivf.as_dict().items()} if self.ivf else {}),
        }


@dataclass
class GateEvaluation:
    """Everything the gate checks assert on and the report plots, for one checkpoint."""

    model: QuerySetResult
    baselines: dict[str, QuerySetResult]
    oracle: QuerySetResult  # the truth targets as queries: an upper bound and an index check, never a baseline
    train: QuerySetResult | None  # the model on a sample of training windows
    separation: Separation
    pos_hist: list[int]
    neg_hist: list[int]
    offset_sweep: dict[int, float]  # the model's mean cos(pred, chunk at offset k)
    offset_sweep_copy_last: dict[int, float]
    ridge_alpha: float | None
    nprobe: int | None
    examples: list[dict[str, Any]]
    seconds: dict[str, float]
    searched: dict[str, int] = field(default_factory=dict)  # queries per pass and the bank's shape: what a speed floor needs

    @property
    def best_baseline(self) -> QuerySetResult:
        """The baseline with the highest exact R@5 (ties: higher cosine)."""
        return max(self.baselines.values(), key=lambda r: (r.exact.r_at_5, r.cosine))

    @property
    def offset_peak(self) -> int | None:
        return offset_peak(self.offset_sweep)

    @property
    def generalization(self) -> dict[str, float] | None:
        if self.train is None:
            return None
        return generalization_gap(self.train.exact, self.model.exact, self.train.cosine, self.model.cosine)

    def gate_metrics(self) -> GateMetrics:
        best = self.best_baseline
        return GateMetrics(
            r_at_5=self.model.exact.r_at_5,
            r_at_1=self.model.exact.r_at_1,
            delta=self.separation.delta,
            ivf_r_at_5=None if self.model.ivf is None else self.model.ivf.r_at_5,
            ivf_agreement=self.model.ivf_agreement,
            best_baseline=best.name,
            best_baseline_r_at_5=best.exact.r_at_5,
            copy_last_r_at_5=self.baselines["copy_last"].exact.r_at_5,
            echo_rate=self.model.echo,
            offset_peak=None if not self.offset_sweep else self.offset_peak,
        )


@dataclass
class _QuerySet:
    name: str
    queries: np.ndarray  # (M, D)
    targets: np.ndarray  # (M, D), in the bank's space
    truth_keys: np.ndarray  # (M, 2)
    context_keys: np.ndarray | None  # (M, C, 2)
    encoded_bank: bool  # search bank_fn(payload) instead of the payload


def sample_rows(count: int, size: int, seed: int) -> np.ndarray:
    """A sorted seeded sample of min(size, count) row indices."""
    if count <= size:
        return np.arange(count, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False)).astype(np.int64)


def _offset_sweep(payload: Payload, preds: np.ndarray, last_keys: np.ndarray, context_length: int, bank_fn: BankFn | None) -> dict[int, float]:
    """Mean cos(pred, chunk at offset k from the last context position), over rows where that chunk exists."""
    preds = l2_normalize(preds)
    sweep: dict[int, float] = {}
    for k in offset_range(context_length):
        keys, valid = offset_keys(last_keys, k)
        vectors, found = payload.vectors_of(keys)
        found &= valid
        if not found.any():
            sweep[k] = float("nan")
            continue
        chosen = vectors[found] if bank_fn is None else bank_fn(vectors[found])
        sweep[k] = mean_cosine(preds[found], chosen)
    return sweep


def _examples(payload: Payload, eval_set: EvalSet, result: QuerySetResult, seed: int) -> list[dict[str, Any]]:
    """A few eval rows with their context, truth and the model's top 5, with texts when the payload has them."""
    rows = sample_rows(eval_set.count, EXAMPLE_ROWS, seed)

    def text(key: np.ndarray) -> str | None:
        if payload.texts is None:
            return None
        row = int(payload.rows_of(np.asarray(key)[None])[0])
        return None if row < 0 else payload.texts[row][:TEXT_CHARS]

    out = []
    for row in rows:
        truth = eval_set.truth_keys[row]
        context = [] if eval_set.context_keys is None else [[int(a), int(c)] for a, c in eval_set.context_keys[row]]
        retrieved = []
        for rank, payload_row in enumerate(result.top_rows[row][:5], 1):
            if payload_row < 0:
                continue
            key = payload.keys[payload_row]
            retrieved.append({"rank": rank, "key": [int(key[0]), int(key[1])], "score": float(result.top_scores[row][rank - 1]), "hit": bool((key == truth).all()), "text": payload.texts[payload_row][:TEXT_CHARS] if payload.texts else None})
        out.append({
            "row": int(row),
            "truth_key": [int(truth[0]), int(truth[1])],
            "truth_text": text(truth),
            "context_keys": context,
            "context_last_text": text(eval_set.context_keys[row][-1]) if eval_set.context_keys is not None else None,
            "first_hit_rank": int(result.exact_ranks[row]),
            "retrieved": retrieved,
        })
    return out


def evaluate(
    predict_fn: PredictFn,
    payload: Payload,
    eval_set: EvalSet,
    *,
    training_data: TrainingData | None = None,
    ivf_index: faiss.Index | None = None,
    nprobe: int | None = None,
    bank_fn: BankFn | None = None,
    train_sample: int = 2000,
    ridge_windows: int = RIDGE_MAX_WINDOWS,
    seed: int = 0,
) -> GateEvaluation:
    """All gate metrics of one model: `predict_fn` maps contexts (M, C, D) to predictions (M, D).

    bank_fn: the two-tower payload encoder (None: one tower, the bank is the payload itself).
    training_data: needed for the ridge baseline and the generalization gap (both skipped without it).
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    contexts, targets = eval_set.contexts, eval_set.targets
    model_preds = np.asarray(predict_fn(contexts), dtype=np.float32)  # (M, D)
    seconds["predict_eval"] = time.perf_counter() - clock

    clock = time.perf_counter()
    baseline_preds = {"copy_last": base.copy_last(contexts), "mean_context": base.mean_of_context(contexts)}
    ridge_alpha = None
    train_rows = None
    if training_data is not None and training_data.count > 0:
        ridge_rows = sample_rows(training_data.count, ridge_windows, seed)
        ridge = base.fit_ridge(training_data.batch, ridge_rows)
        ridge_alpha = ridge.alpha
        baseline_preds["ridge"] = ridge(contexts)
        train_rows = sample_rows(training_data.count, train_sample, seed + 1)
    seconds["baselines"] = time.perf_counter() - clock

    bank_targets = targets if bank_fn is None else bank_fn(targets)
    sets = [_QuerySet(name, preds, targets, eval_set.truth_keys, eval_set.context_keys, False) for name, preds in baseline_preds.items()]
    sets.append(_QuerySet("oracle", l2_normalize(targets), targets, eval_set.truth_keys, eval_set.context_keys, False))
    sets.append(_QuerySet("model", model_preds, bank_targets, eval_set.truth_keys, eval_set.context_keys, bank_fn is not None))
    if train_rows is not None:
        clock = time.perf_counter()
        train_contexts, train_targets = training_data.batch(train_rows)
        train_preds = np.asarray(predict_fn(train_contexts), dtype=np.float32)
        seconds["predict_train"] = time.perf_counter() - clock
        sets.append(_QuerySet("train", train_preds, train_targets if bank_fn is None else bank_fn(train_targets), training_data.truth_keys[train_rows], training_data.context_keys[train_rows], bank_fn is not None))

    raw = [s for s in sets if not s.encoded_bank]
    encoded = [s for s in sets if s.encoded_bank]
    exact_found: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (scores, rows) of the exact pass
    ivf_found: dict[str, np.ndarray] = {}  # name -> rows of the IVF search

    def per_set(group: list[_QuerySet], *arrays: np.ndarray):
        """Each set's name and its slice of arrays stacked in `group` order."""
        start = 0
        for s in group:
            yield s.name, *(array[start : start + len(s.queries)] for array in arrays)
            start += len(s.queries)

    clock = time.perf_counter()
    raw_queries = np.concatenate([s.queries for s in raw]).astype(np.float32)  # (sum M, D)
    scores, rows = exact_search(payload.vectors, raw_queries, CONTAIN_K)  # ONE exact pass
    seconds["exact_search"] = time.perf_counter() - clock
    searched = {"exact_queries": len(raw_queries), "encoded_queries": 0, "ivf_queries": 0, "payload_rows": payload.count, "dim": payload.dim}
    exact_found |= {name: (set_scores, set_rows) for name, set_scores, set_rows in per_set(raw, scores, rows)}
    ivf_group = [s for s in raw if s.name in IVF_SETS]
    if ivf_index is not None and ivf_group:
        clock = time.perf_counter()
        _, ivf_rows = index_search(ivf_index, np.concatenate([s.queries for s in ivf_group]).astype(np.float32), CONTAIN_K, nprobe)  # ONE IVF search
        seconds["ivf_search"] = time.perf_counter() - clock
        searched["ivf_queries"] = len(ivf_rows)
        ivf_found |= dict(per_set(ivf_group, ivf_rows))
    if encoded:
        clock = time.perf_counter()
        encoded_queries = np.concatenate([s.queries for s in encoded])
        searched["encoded_queries"] = len(encoded_queries)
        scores, rows = exact_search(payload.vectors, encoded_queries, CONTAIN_K, transform=bank_fn)
        seconds["encoded_exact_search"] = time.perf_counter() - clock
        exact_found |= {name: (set_scores, set_rows) for name, set_scores, set_rows in per_set(encoded, scores, rows)}

    results: dict[str, QuerySetResult] = {}
    for s in sets:
        (set_scores, set_rows), set_ivf = exact_found[s.name], ivf_found.get(s.name)
        exact_ranks = hit_ranks(set_rows, payload.keys, s.truth_keys)
        ivf_ranks = None if set_ivf is None else hit_ranks(set_ivf, payload.keys, s.truth_keys)
        results[s.name] = QuerySetResult(
            name=s.name,
            exact=retrieval(set_rows, payload.keys, s.truth_keys),
            ivf=None if set_ivf is None else retrieval(set_ivf, payload.keys, s.truth_keys),
            cosine=mean_cosine(s.queries, s.targets),
            echo=None if s.context_keys is None else echo_rate(set_rows[:, 0], payload.keys, s.context_keys),
            ivf_agreement=None if ivf_ranks is None else hit_agreement(ivf_ranks, exact_ranks),
            exact_ranks=exact_ranks,
            ivf_ranks=ivf_ranks,
            top_rows=set_rows,
            top_scores=set_scores,
        )

    clock = time.perf_counter()
    sep = separation(model_preds, bank_targets, seed=seed)
    pos = np.einsum("md,md->m", l2_normalize(model_preds), l2_normalize(bank_targets))
    neg = np.einsum("md,md->m", l2_normalize(model_preds), l2_normalize(np.roll(bank_targets, 1, axis=0)))
    sweep = sweep_copy = {}
    if eval_set.context_keys is not None:
        last = eval_set.context_keys[:, -1, :]
        sweep = _offset_sweep(payload, model_preds, last, eval_set.context_length, bank_fn)
        sweep_copy = _offset_sweep(payload, baseline_preds["copy_last"], last, eval_set.context_length, None)
    seconds["metrics"] = time.perf_counter() - clock

    return GateEvaluation(
        model=results["model"],
        baselines={name: results[name] for name in baseline_preds},
        oracle=results["oracle"],
        train=results.get("train"),
        separation=sep,
        pos_hist=np.histogram(pos, HIST_BINS)[0].tolist(),
        neg_hist=np.histogram(neg, HIST_BINS)[0].tolist(),
        offset_sweep=sweep,
        offset_sweep_copy_last=sweep_copy,
        ridge_alpha=ridge_alpha,
        nprobe=nprobe,
        examples=_examples(payload, eval_set, results["model"], seed),
        seconds=seconds,
        searched=searched,
    )
