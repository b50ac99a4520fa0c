"""Every gate metric of one checkpoint, in four steps: predict -> search -> measure -> figures.

`evaluate` reads top to bottom as those steps. What does not depend on the model (the context-only
baselines of `lvmcore.gate.baselines` and the oracle) is built and searched once by `fixed_results`
and passed back in for every further checkpoint (`lvmcore.gate.fixed_sets` caches it on disk by
content hashes), so a checkpoint costs only its own queries: the model on the eval set and on a
sample of training windows, searched in ONE blockwise exact pass over the payload memory map
(`lvmcore.search.exact.exact_search`) and, for the model and the oracle, whose IVF figures the gates
read, ONE IVF search. `measure` turns each set's result lists into its figures, raw and with the
query's own context chunks excluded. The model enters as `predict_fn(contexts) -> preds`, so the
maths is tested with plain numpy "models" (copy-last, random, oracle) and the checks pass a loaded
checkpoint's `predict`.

Two-tower models search `bank_fn(payload)` (their payload tower) instead of the raw payload; their
query sets are searched in a second streamed pass that encodes the bank block by block (no
encoded copy of the bank is kept), and have no IVF figures (the cached IVF index holds raw vectors).

The types live with their owners: the query sets and search results in `lvmcore.gate.query_sets`,
the evaluation the checks read (`GateEvaluation`, `QuerySetResult`, and its `figures()`) in
`lvmcore.gate.evaluation`, the report's examples and histogram bins in `lvmcore.gate.report`;
the checks and `fixtures/gate.py` import them from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

import faiss
import numpy as np

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData
from lvmcore.errors import ArtifactError
from lvmcore.gate import baselines as base
from lvmcore.gate.comparison import best_baseline
from lvmcore.gate.evaluation import GateEvaluation, QuerySetResult
from lvmcore.gate.health import prediction_health
from lvmcore.gate.metrics import (
    CONTAIN_K,
    echo_rate,
    exclude_context,
    hit_ranks,
    ivf_exact_agreement,
    mean_cosine,
    offset_keys,
    offset_range,
    retrieval_figures,
    separation,
)
from lvmcore.gate.query_sets import BankFn, FixedResults, Found, PredictFn, QuerySet
from lvmcore.gate.report import HIST_BINS, examples
from lvmcore.progress import phase
from lvmcore.sampling import sample_rows
from lvmcore.search.exact import exact_search
from lvmcore.search.ivf import index_search
from lvmcore.vectors import l2_normalize

IVF_SETS = ("model", "oracle")  # the query sets whose IVF figures a gate reads: IVF search is memory-bound, ~1.8 ms a query at seed scale
RIDGE_MAX_WINDOWS = 20_000  # X^T X at C*D = 3,840 features: ~300 GFLOP, under a minute on 2 cores
EXCLUDE_MARGIN = 8  # extra results per query beyond 50 + C, for context keys held by several payload rows


# --------------------------------------------------------------------------- step 1: predict


def checked_predictions(preds: Any, rows: int, dim: int) -> np.ndarray:
    """A predict function's output as (rows, dim) float32; any other shape is the model's error, named."""
    preds = np.asarray(preds, dtype=np.float32)
    if preds.shape != (rows, dim):
        raise ArtifactError(None, f"the model returned predictions of shape {preds.shape} for {rows} contexts; expected ({rows}, {dim})")
    return preds


def fixed_results(payload: Payload, eval_set: EvalSet, training_data: TrainingData | None, ivf_index: faiss.Index | None, nprobe: int | None,
                  ridge_windows: int = RIDGE_MAX_WINDOWS, seed: int = 0) -> FixedResults:
    """Build and search the baselines (contexts only) and the oracle (truth targets as queries)."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    contexts, targets = eval_set.contexts, eval_set.targets
    baseline_preds = {name: baseline(contexts) for name, baseline in base.CONTEXT_BASELINES.items()}
    ridge_alpha = None
    if training_data is not None and training_data.count > 0:
        with phase(f"gate: ridge baseline ({min(training_data.count, ridge_windows):,} training windows)"):
            ridge = base.fit_ridge(training_data.batch, sample_rows(training_data.count, ridge_windows, seed))
        ridge_alpha = ridge.alpha
        baseline_preds["ridge"] = ridge(contexts)
    seconds["baselines"] = time.perf_counter() - clock
    sets = [QuerySet(name, preds, targets, eval_set.truth_keys, eval_set.context_keys, False) for name, preds in baseline_preds.items()]
    sets.append(QuerySet("oracle", l2_normalize(targets), targets, eval_set.truth_keys, eval_set.context_keys, False))
    found, searched = search_once(sets, payload, ivf_index, nprobe, None, seconds, search_depth(eval_set))
    return FixedResults(sets, found, ridge_alpha, seconds, searched)


@dataclass
class ModelSets:
    """The model's query sets (eval rows, and training windows when there are any) and what building them measured."""

    sets: list[QuerySet]
    seconds: dict[str, float]
    nonfinite_predictions: int = 0


def model_query_sets(predict_fn: PredictFn | None, eval_set: EvalSet, training_data: TrainingData | None, bank_fn: BankFn | None, train_sample: int, seed: int,
                     stored_eval: np.ndarray | None = None, stored_train: tuple[np.ndarray, np.ndarray] | None = None) -> ModelSets:
    """The model's predictions on the eval set and on a sample of training windows.

    stored_eval / stored_train: predictions made elsewhere (a predictions file) instead of `predict_fn`;
    without stored training predictions and without `predict_fn` there is no training set.
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    model_preds = checked_predictions(predict_fn(eval_set.contexts) if stored_eval is None else stored_eval, eval_set.count, eval_set.dim)  # (M, D)
    finite = np.isfinite(model_preds).all(axis=1)
    model_preds = np.where(finite[:, None], model_preds, 0.0).astype(np.float32)  # searched as misses; the count fails a gate
    seconds["predict_eval"] = time.perf_counter() - clock
    bank_targets = eval_set.targets if bank_fn is None else bank_fn(eval_set.targets)
    sets = [QuerySet("model", model_preds, bank_targets, eval_set.truth_keys, eval_set.context_keys, bank_fn is not None)]
    if training_data is not None and training_data.count > 0 and (stored_train is not None or predict_fn is not None):
        clock = time.perf_counter()
        if stored_train is not None:
            train_rows, train_raw = stored_train_rows(stored_train, training_data.count)
            train_contexts, train_targets = training_data.batch(train_rows)
        else:
            train_rows = sample_rows(training_data.count, train_sample, seed + 1)
            train_contexts, train_targets = training_data.batch(train_rows)
            train_raw = predict_fn(train_contexts)
        train_preds = np.nan_to_num(checked_predictions(train_raw, len(train_rows), eval_set.dim), nan=0.0, posinf=0.0, neginf=0.0)
        seconds["predict_train"] = time.perf_counter() - clock
        sets.append(QuerySet("train", train_preds, train_targets if bank_fn is None else bank_fn(train_targets), training_data.truth_keys[train_rows], training_data.context_keys[train_rows], bank_fn is not None))
    return ModelSets(sets, seconds, int((~finite).sum()))


def stored_train_rows(stored: tuple[np.ndarray, np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Stored (window rows, predictions) sorted by row, checked against the training data's window count."""
    rows, preds = np.asarray(stored[0], dtype=np.int64), np.asarray(stored[1])
    if len(rows) and (rows.min() < 0 or rows.max() >= count):
        raise ArtifactError(None, f"stored train_rows run {rows.min()}..{rows.max()}, the training data has {count} windows")
    order = np.argsort(rows, kind="stable")
    return rows[order], preds[order]


# --------------------------------------------------------------------------- step 2: search once


def search_depth(eval_set: EvalSet) -> int:
    """Results per query of the exact passes: 50, plus room for the context chunks the excluded view drops."""
    return CONTAIN_K + (eval_set.context_length + EXCLUDE_MARGIN if eval_set.context_keys is not None else 0)


def per_set(group: list[QuerySet], *arrays: np.ndarray) -> Iterator[tuple]:
    """Each set's name and its slice of arrays stacked in `group` order."""
    start = 0
    for s in group:
        yield s.name, *(array[start : start + len(s.queries)] for array in arrays)
        start += len(s.queries)


def search_once(sets: list[QuerySet], payload: Payload, ivf_index: faiss.Index | None, nprobe: int | None, bank_fn: BankFn | None,
                seconds: dict[str, float], depth: int) -> tuple[dict[str, Found], dict[str, int]]:
    """ONE exact pass over the payload for every raw-bank set, ONE IVF search for the sets in IVF_SETS,
    and one streamed pass over the encoded bank for a two-tower model's sets. Returns each set's
    `Found` and what was searched (queries per pass, the bank's shape: what a speed floor needs)."""
    raw = [s for s in sets if not s.encoded_bank]
    encoded = [s for s in sets if s.encoded_bank]
    searched = {"exact_queries": 0, "encoded_queries": 0, "ivf_queries": 0, "payload_rows": payload.count, "dim": payload.dim}
    found: dict[str, Found] = {}
    if raw:
        clock = time.perf_counter()
        raw_queries = np.concatenate([s.queries for s in raw]).astype(np.float32)  # (sum M, D)
        scores, rows = exact_search(payload.vectors, raw_queries, depth)
        seconds["exact_search"] = time.perf_counter() - clock
        searched["exact_queries"] = len(raw_queries)
        found |= {name: Found(set_scores, set_rows) for name, set_scores, set_rows in per_set(raw, scores, rows)}
    ivf_group = [s for s in raw if s.name in IVF_SETS]
    if ivf_index is not None and ivf_group:
        clock = time.perf_counter()
        _, ivf_rows = index_search(ivf_index, np.concatenate([s.queries for s in ivf_group]).astype(np.float32), CONTAIN_K, nprobe)
        seconds["ivf_search"] = time.perf_counter() - clock
        searched["ivf_queries"] = len(ivf_rows)
        for name, set_ivf in per_set(ivf_group, ivf_rows):
            found[name].ivf_rows = set_ivf
    if encoded:
        clock = time.perf_counter()
        encoded_queries = np.concatenate([s.queries for s in encoded])
        searched["encoded_queries"] = len(encoded_queries)
        scores, rows = exact_search(payload.vectors, encoded_queries, depth, transform=bank_fn)
        seconds["encoded_exact_search"] = time.perf_counter() - clock
        found |= {name: Found(set_scores, set_rows) for name, set_scores, set_rows in per_set(encoded, scores, rows)}
    return found, searched


# --------------------------------------------------------------------------- step 3: metrics


def measure(s: QuerySet, found: Found, payload_keys: np.ndarray) -> QuerySetResult:
    """One query set's figures from its result lists; first-hit ranks are computed once per list."""
    rows, scores = found.rows[:, :CONTAIN_K], found.scores[:, :CONTAIN_K]
    exact_ranks = hit_ranks(rows, payload_keys, s.truth_keys)
    ivf_ranks = None if found.ivf_rows is None else hit_ranks(found.ivf_rows, payload_keys, s.truth_keys)
    excluded_rows = None if s.context_keys is None else exclude_context(found.rows, payload_keys, s.context_keys)
    excluded_ranks = None if excluded_rows is None else hit_ranks(excluded_rows, payload_keys, s.truth_keys)
    return QuerySetResult(
        name=s.name,
        exact=retrieval_figures(rows, payload_keys, s.truth_keys, ranks=exact_ranks),
        ivf=None if found.ivf_rows is None else retrieval_figures(found.ivf_rows, payload_keys, s.truth_keys, ranks=ivf_ranks),
        cosine=mean_cosine(s.queries, s.targets),
        echo=None if s.context_keys is None else echo_rate(rows[:, 0], payload_keys, s.context_keys),
        ivf_agreement=None if ivf_ranks is None else ivf_exact_agreement(ivf_ranks, exact_ranks),
        exact_ranks=exact_ranks,
        ivf_ranks=ivf_ranks,
        top_rows=rows,
        top_scores=scores,
        excluded=None if excluded_rows is None else retrieval_figures(excluded_rows, payload_keys, s.truth_keys, ranks=excluded_ranks),
        excluded_ranks=excluded_ranks,
    )


def offset_sweep(payload: Payload, preds: np.ndarray, last_keys: np.ndarray, context_length: int, bank_fn: BankFn | None) -> dict[int, float]:
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


# --------------------------------------------------------------------------- step 4: report data


def cosine_histograms(preds: np.ndarray, targets: np.ndarray) -> tuple[list[int], list[int]]:
    """Histograms (HIST_BINS) of cos(pred, own target) and cos(pred, the previous row's target)."""
    preds, targets = l2_normalize(preds), l2_normalize(targets)
    pos = np.einsum("md,md->m", preds, targets)
    neg = np.einsum("md,md->m", preds, np.roll(targets, 1, axis=0))
    return np.histogram(pos, HIST_BINS)[0].tolist(), np.histogram(neg, HIST_BINS)[0].tolist()


def evaluate(
    predict_fn: PredictFn | None,
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
    stored_eval: np.ndarray | None = None,
    stored_train: tuple[np.ndarray, np.ndarray] | None = None,
    fixed: FixedResults | None = None,
) -> GateEvaluation:
    """All gate metrics of one model: `predict_fn` maps contexts (M, C, D) to predictions (M, D).

    bank_fn: the two-tower payload encoder (None: one tower, the bank is the payload itself).
    training_data: needed for the ridge baseline and the generalization gap (both skipped without it).
    stored_eval, stored_train: predictions from a file instead of `predict_fn` (which may then be None).
    fixed: the baselines' and oracle's results from an earlier call on the same artifacts (`fixed_results`);
    without it they are computed here. Either way only the model's own queries are searched for it.
    """
    if predict_fn is None and stored_eval is None:
        raise ValueError("evaluate needs predict_fn or stored_eval")
    if fixed is None:  # step 1a: what does not depend on the model
        fixed = fixed_results(payload, eval_set, training_data, ivf_index, nprobe, ridge_windows, seed)
    with phase(f"gate: predict ({eval_set.count:,} eval rows)"):  # step 1b: the model's queries
        model_sets = model_query_sets(predict_fn, eval_set, training_data, bank_fn, train_sample, seed, stored_eval, stored_train)
    seconds = {**fixed.seconds, **model_sets.seconds}
    found, searched = search_once(model_sets.sets, payload, ivf_index, nprobe, bank_fn, seconds, search_depth(eval_set))  # step 2
    found = {**fixed.found, **found}
    searched = {"exact_queries": searched["exact_queries"], "encoded_queries": searched["encoded_queries"], "ivf_queries": searched["ivf_queries"],
                "fixed_exact_queries": fixed.searched["exact_queries"], "fixed_ivf_queries": fixed.searched["ivf_queries"],
                "payload_rows": payload.count, "dim": payload.dim}

    clock = time.perf_counter()  # step 3
    sets = [*fixed.sets, *model_sets.sets]
    results = {s.name: measure(s, found[s.name], payload.keys) for s in sets}
    model_set = model_sets.sets[0]
    sep = separation(model_set.queries, model_set.targets, seed=seed)
    sweep = sweep_copy = {}
    if eval_set.context_keys is not None:
        last = eval_set.context_keys[:, -1, :]
        sweep = offset_sweep(payload, model_set.queries, last, eval_set.context_length, bank_fn)
        copy_last = next(s for s in fixed.sets if s.name == "copy_last")
        sweep_copy = offset_sweep(payload, copy_last.queries, last, eval_set.context_length, None)
    pos_hist, neg_hist = cosine_histograms(model_set.queries, model_set.targets)  # step 4
    baseline_results = {name: results[name] for name in fixed.baseline_names}
    best = best_baseline({n: r.exact_ranks for n, r in baseline_results.items()}, {n: r.cosine for n, r in baseline_results.items()})
    truth_vectors, truth_found = payload.vectors_of(eval_set.truth_keys)
    health = prediction_health(model_set.queries, eval_set.contexts, model_set.targets, eval_set.truth_keys,
                               truth_vectors if bank_fn is None else bank_fn(truth_vectors), truth_found, baseline_results[best].cosine,
                               results["model"].top_rows, results["model"].exact_ranks, payload.keys, seed)
    seconds["metrics"] = time.perf_counter() - clock

    return GateEvaluation(
        model=results["model"],
        baselines={name: results[name] for name in fixed.baseline_names},
        oracle=results["oracle"],
        train=results.get("train"),
        separation=sep,
        pos_hist=pos_hist,
        neg_hist=neg_hist,
        offset_sweep=sweep,
        offset_sweep_copy_last=sweep_copy,
        ridge_alpha=fixed.ridge_alpha,
        nprobe=nprobe,
        examples=examples(payload, eval_set, results["model"].top_rows, results["model"].top_scores, results["model"].exact_ranks, seed),
        seconds=seconds,
        searched=searched,
        nonfinite_predictions=model_sets.nonfinite_predictions,
        health=health,
        seed=seed,
    )
