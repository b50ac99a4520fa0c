"""What one checkpoint's evaluation holds: `QuerySetResult` per query set and `GateEvaluation`, which the checks read.

`lvmcore.gate.evaluate.evaluate` builds a `GateEvaluation`; the gate checks assert on its fields,
`GateEvaluation.comparisons` pairs the model with the best baseline, `figures()` turns it into the
report's typed record (`lvmcore.gate.report.GateFigures`) and `gate_metrics()` into the decision's
inputs (`lvmcore.gate.decision.GateMetrics`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from lvmcore.gate.comparison import HIGH_ECHO, Comparison, compare_to_best, model_kind
from lvmcore.gate.decision import GateMetrics
from lvmcore.gate.health import PredictionHealth
from lvmcore.gate.inputs import InputFindings
from lvmcore.gate.intervals import Interval
from lvmcore.gate.levels import eval_rows_needed
from lvmcore.gate.metrics import CONTAIN_K, Retrieval, Separation, generalization_gap, offset_margin, offset_peak, retrieval_intervals
from lvmcore.gate.report import HIST_BINS, GateFigures
from lvmcore.search.hits import recall_curve


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
                     leaked_eval_articles: int | None = None, nonfinite_weights: int | None = None, trained_epochs: int | None = None,
                     training_loss: tuple[float, float] | None = None) -> GateMetrics:
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
            training_loss=training_loss,
        )
