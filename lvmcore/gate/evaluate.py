"""Every gate metric of one checkpoint, in four steps: predict -> search -> metrics -> report data.

`evaluate` reads top to bottom as those steps. What does not depend on the model (the three
context-only baselines and the oracle) is built and searched once by `fixed_results` and passed
back in for every further checkpoint (`lvmcore.gate.fixed_sets` caches it on disk by content
hashes), so a checkpoint costs only its own queries: the model on the eval set and on a sample of
training windows, searched in ONE blockwise exact pass over the payload memory map
(`lvmcore.search.exact.exact_search`) and, for the model and the oracle, whose IVF figures the gates
read, ONE IVF search. `measure` turns each set's result lists into its figures, raw and with the
query's own context chunks excluded. The model enters as `predict_fn(contexts) -> preds`, so the
maths is tested with plain numpy "models" (copy-last, random, oracle) and the checks pass a loaded
checkpoint's `predict`.

Two-tower models search `bank_fn(payload)` (their payload tower) instead of the raw payload; their
query sets are searched in a second streamed pass that encodes the bank block by block (no
encoded copy of the bank is kept), and have no IVF figures (the cached IVF index holds raw vectors).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator

import faiss
import numpy as np

from lvmcore.gate import baselines as base
from lvmcore.errors import ArtifactError
from lvmcore.gate.comparison import HIGH_ECHO, Comparison, best_baseline, compare_to_best, model_kind
from lvmcore.gate.decision import GateMetrics
from lvmcore.gate.health import PredictionHealth, prediction_health
from lvmcore.gate.inputs import InputFindings
from lvmcore.gate.levels import eval_rows_needed
from lvmcore.gate.intervals import Interval
from lvmcore.gate.report import GateFigures
from lvmcore.artifacts.evalset import EvalSet
from lvmcore.search.exact import exact_search
from lvmcore.search.hits import recall_curve
from lvmcore.search.ivf import index_search
from lvmcore.gate.metrics import (
    CONTAIN_K,
    Retrieval,
    Separation,
    echo_rate,
    exclude_context,
    generalization_gap,
    hit_ranks,
    ivf_exact_agreement,
    mean_cosine,
    offset_keys,
    offset_margin,
    offset_peak,
    offset_range,
    retrieval_figures,
    retrieval_intervals,
    separation,
)
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData
from lvmcore.progress import phase
from lvmcore.sampling import sample_rows
from lvmcore.vectors import l2_normalize

PredictFn = Callable[[np.ndarray], np.ndarray]  # contexts (M, C, D) -> predictions (M, D)
BankFn = Callable[[np.ndarray], np.ndarray]  # payload vectors (N, D) -> the bank a two-tower model's predictions are searched in
IVF_SETS = ("model", "oracle")  # the query sets whose IVF figures a gate reads: IVF search is memory-bound, ~1.8 ms a query at seed scale
RIDGE_MAX_WINDOWS = 20_000  # X^T X at C*D = 3,840 features: ~300 GFLOP, under a minute on 2 cores
HIST_BINS = np.linspace(-1.0, 1.0, 81)
EXAMPLE_ROWS = 5
EXCLUDE_MARGIN = 8  # extra results per query beyond 50 + C, for context keys held by several payload rows
TEXT_CHARS = 240


@dataclass
class QuerySetResult:
    """One query set's figures: exact search always (raw and, with context keys, context-excluded), IVF when searched."""

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
    excluded: Retrieval | None = None  # the same lists with the query's own context chunks removed
    excluded_ranks: np.ndarray | None = field(default=None, repr=False)

    def recall_curve(self, ivf: bool = False) -> list[float]:
        """R@k for k = 1..50."""
        ranks = self.ivf_ranks if ivf else self.exact_ranks
        return [] if ranks is None else recall_curve(ranks, CONTAIN_K)

    @cached_property
    def intervals(self) -> dict[str, Interval]:
        """95% intervals of the exact R@1/5/10/50 (Wilson) and MRR (bootstrap), computed once."""
        return retrieval_intervals(self.exact_ranks)

    @cached_property
    def excluded_intervals(self) -> dict[str, Interval] | None:
        return None if self.excluded_ranks is None else retrieval_intervals(self.excluded_ranks)

    def summary(self) -> dict[str, Any]:
        """Every figure of the set, with a 95% interval `<figure>_ci` [low, high] beside each R@K and MRR."""
        def with_intervals(prefix: str, figures: Retrieval, intervals: dict[str, Interval]) -> dict[str, Any]:
            out = {f"{prefix}_{k}": v for k, v in figures.as_dict().items()}
            out |= {f"{prefix}_{k}_ci": [i.low, i.high] for k, i in intervals.items()}
            return out

        return {
            "name": self.name,
            "cosine": self.cosine,
            "echo_rate": self.echo,
            "ivf_agreement": self.ivf_agreement,
            **with_intervals("exact", self.exact, self.intervals),
            **(with_intervals("excluded", self.excluded, self.excluded_intervals) if self.excluded is not None else {}),
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
    nonfinite_predictions: int = 0  # eval rows whose prediction held NaN or inf (searched as zero vectors, and failed)
    health: PredictionHealth | None = None  # zero/constant/repeated rows, information, copies of the answer, row order
    seed: int = 0

    @property
    def best_baseline(self) -> QuerySetResult:
        """The baseline the raw comparison is made against (`lvmcore.gate.comparison.best_baseline`: R@5, ties by cosine)."""
        return self.baselines[self.comparisons["raw"].baseline]

    @cached_property
    def comparisons(self) -> dict[str, Comparison]:
        """The model against the best baseline of each view, paired over the same rows (see `lvmcore.gate.comparison`);
        computed once (each is a 2,000-resample bootstrap)."""
        cosines = {n: b.cosine for n, b in self.baselines.items()}
        out = {"raw": compare_to_best("raw", self.model.exact_ranks, {n: b.exact_ranks for n, b in self.baselines.items()}, self.seed, cosines)}
        if self.model.excluded_ranks is not None:
            out["context_excluded"] = compare_to_best("context_excluded", self.model.excluded_ranks, {n: b.excluded_ranks for n, b in self.baselines.items()}, self.seed, cosines)
        return out

    def kind(self, high_echo: float = HIGH_ECHO) -> tuple[str, str]:
        """What the comparisons make the model: (kind, sentence), at the run's echo level."""
        comparisons = self.comparisons
        return model_kind(comparisons["raw"], comparisons.get("context_excluded"), self.model.echo, high_echo)

    @property
    def offset_peak(self) -> int | None:
        return offset_peak(self.offset_sweep)

    @property
    def offset_margin(self) -> float | None:
        """cos at k=+1 minus the highest cos at any other offset (None without context keys)."""
        return offset_margin(self.offset_sweep) if self.offset_sweep else None

    @property
    def generalization(self) -> dict[str, float] | None:
        if self.train is None:
            return None
        return generalization_gap(self.train.exact, self.model.exact, self.train.cosine, self.model.cosine)

    def figures(self, history_path: str | None = None, checkpoint: dict[str, Any] | None = None, metrics: GateMetrics | None = None,
                high_echo: float = HIGH_ECHO, eval_fingerprint: str | None = None) -> GateFigures:
        """The report's typed data for this evaluation (tables, plots, examples, timings)."""
        kind = self.kind(high_echo)
        sets = {"model": self.model, **{f"baseline:{k}": v for k, v in self.baselines.items()}, "oracle": self.oracle}
        if self.train is not None:
            sets["train"] = self.train
        return GateFigures(
            query_sets={name: result.summary() for name, result in sets.items()},
            separation=asdict(self.separation),
            offset_sweep={str(k): v for k, v in self.offset_sweep.items()},
            offset_sweep_copy_last={str(k): v for k, v in self.offset_sweep_copy_last.items()},
            examples=self.examples,
            seconds=self.seconds,
            searched=self.searched,
            nprobe=self.nprobe,
            metrics=metrics.as_dict() if metrics is not None else {},
            history_path=history_path,
            checkpoint=checkpoint or {},
            hist_edges=HIST_BINS.tolist(),
            pos_hist=self.pos_hist,
            neg_hist=self.neg_hist,
            recall_curves={name: result.recall_curve() for name, result in [("model", self.model), *self.baselines.items(), ("oracle", self.oracle)]},
            ivf_curve=self.model.recall_curve(ivf=True),
            comparisons={view: c.as_dict() for view, c in self.comparisons.items()},
            model_kind=kind[0],
            model_kind_sentence=kind[1],
            row_ranks={"raw": self.model.exact_ranks.tolist(),
                       **({"context_excluded": self.model.excluded_ranks.tolist()} if self.model.excluded_ranks is not None else {})},
            eval_fingerprint=eval_fingerprint,
        )

    def gate_metrics(self, inputs: InputFindings, *, route: str = "checkpoint", provenance_mismatch: str | None = None,
                     leaked_eval_articles: int | None = None, nonfinite_weights: int | None = None, trained_epochs: int | None = None) -> GateMetrics:
        """The decision's inputs: this evaluation's figures, the gate's input findings, and what the model records."""
        comparisons = self.comparisons
        raw, excluded = comparisons["raw"], comparisons.get("context_excluded")
        best = self.baselines[raw.baseline]
        r5 = self.model.intervals["r_at_5"]
        health = self.health
        if health is None:
            raise ValueError("gate_metrics needs the prediction health figures (evaluate computes them)")
        gap = self.generalization
        return GateMetrics(
            r_at_5=self.model.exact.r_at_5,
            r_at_1=self.model.exact.r_at_1,
            r_at_5_low=r5.low,
            r_at_5_high=r5.high,
            oracle_r_at_1=self.oracle.exact.r_at_1,
            delta=self.separation.delta,
            ivf_r_at_5=None if self.model.ivf is None else self.model.ivf.r_at_5,
            ivf_agreement=self.model.ivf_agreement,
            best_baseline=best.name,
            best_baseline_r_at_5=best.exact.r_at_5,
            copy_last_r_at_5=self.baselines["copy_last"].exact.r_at_5,
            beats_low=raw.paired.interval.low,
            beats_high=raw.paired.interval.high,
            excluded_r_at_5=None if self.model.excluded is None else self.model.excluded.r_at_5,
            excluded_best_baseline=None if excluded is None else excluded.baseline,
            excluded_beats_low=None if excluded is None else excluded.paired.interval.low,
            excluded_beats_high=None if excluded is None else excluded.paired.interval.high,
            echo_rate=self.model.echo,
            offset_peak=None if not self.offset_sweep else self.offset_peak,
            offset_peak_margin=self.offset_margin,
            train_minus_eval_r_at_5=None if gap is None else gap["r_at_5_gap"],
            nonfinite_predictions=self.nonfinite_predictions,
            nonfinite_weights=nonfinite_weights,
            zero_rows=health.degenerate.zero,
            constant_rows=health.degenerate.constant,
            repeated_fraction=health.degenerate.repeated_share,
            answer_copy_fraction=health.copies.copied_share,
            oracle_closure=health.copies.oracle_closure,
            model_cosine=health.copies.model_cosine,
            baseline_cosine=health.copies.baseline_cosine,
            information_z=health.information.z,
            shift_p=health.order.shift_p,
            shift=health.order.worst_shift,
            shift_rows=health.order.shift_rows,
            shift_closer=health.order.shift_closer,
            elsewhere_share=health.order.elsewhere_share,
            elsewhere_chance=health.order.chance_share,
            elsewhere_excess_low=health.order.elsewhere_excess_low,
            eval_context_aligned=inputs.eval_context_aligned,
            eval_context_cause=inputs.eval_context_cause,
            eval_target_aligned=inputs.eval_target_aligned,
            eval_target_cause=inputs.eval_target_cause,
            training_target_aligned=inputs.training_target_aligned,
            training_context_aligned=inputs.training_context_aligned,
            training_cause=inputs.training_cause,
            article_overlap=inputs.article_overlap,
            chunk_overlap=inputs.chunk_overlap,
            near_duplicate=inputs.near_duplicate,
            eval_rows=self.model.exact.count,
            rows_needed=eval_rows_needed(),
            route=route,
            provenance_mismatch=provenance_mismatch,
            leaked_eval_articles=leaked_eval_articles,
            trained_epochs=trained_epochs,
        )


@dataclass
class QuerySet:
    """One set of queries with what a hit means for it."""

    name: str
    queries: np.ndarray  # (M, D)
    targets: np.ndarray  # (M, D), in the bank's space
    truth_keys: np.ndarray  # (M, 2)
    context_keys: np.ndarray | None  # (M, C, 2)
    encoded_bank: bool  # search bank_fn(payload) instead of the payload


@dataclass
class Found:
    """What the one search returned for a query set: exact top-(50 + C + margin) scores and rows
    (deep enough to drop the query's own context chunks and keep 50), IVF top-50 rows if searched."""

    scores: np.ndarray  # (M, K >= 50)
    rows: np.ndarray  # (M, K >= 50)
    ivf_rows: np.ndarray | None = None  # (M, 50)


# --------------------------------------------------------------------------- step 1: predict


@dataclass
class FixedResults:
    """The query sets that do not depend on the model (the baselines and the oracle) and their search results.

    Computed once per (payload, eval set, training data, search settings) and reused for every
    checkpoint: in one session through the gate fixture, across sessions through
    `lvmcore.gate.fixed_sets` (an on-disk cache keyed by content hashes).
    """

    sets: list[QuerySet]  # the baselines, then the oracle
    found: dict[str, Found]
    ridge_alpha: float | None
    seconds: dict[str, float]
    searched: dict[str, int]

    @property
    def baseline_names(self) -> list[str]:
        return [s.name for s in self.sets if s.name != "oracle"]


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


def examples(payload: Payload, eval_set: EvalSet, result: QuerySetResult, seed: int) -> list[dict[str, Any]]:
    """A few eval rows with their context, truth and the model's top 5, with texts when the payload has them."""

    def text(key: np.ndarray) -> str | None:
        if payload.texts is None:
            return None
        row = int(payload.rows_of(np.asarray(key)[None])[0])
        return None if row < 0 else payload.texts[row][:TEXT_CHARS]

    out = []
    for row in sample_rows(eval_set.count, EXAMPLE_ROWS, seed):
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
        examples=examples(payload, eval_set, results["model"], seed),
        seconds=seconds,
        searched=searched,
        nonfinite_predictions=model_sets.nonfinite_predictions,
        health=health,
        seed=seed,
    )
