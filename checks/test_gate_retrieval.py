"""Gate: does the model retrieve the true next chunk from the whole payload? (rows 7, 11, 14)

Hits are decided by key, duplicate aware. The figures come from ONE exact (Flat) pass and ONE IVF
search over all query sets (see `lvmcore.gate.evaluate`); queries are vectors only, never keys, so no
metadata can leak into retrieval (row 14). A large IVF/exact gap is an index problem, reported as
such, not a model problem (row 7).
"""

from __future__ import annotations

import pytest

from lvmcore.gate.levels import GATE_LEVELS

from lvmcore.gate.evaluation import GateEvaluation

pytestmark = pytest.mark.gate


@pytest.mark.threshold("r_at_5", **GATE_LEVELS["r_at_5"].marker())
def test_model_retrieves_next_chunk_r_at_5(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """R@5 of exact search over the whole payload: the truth key among the top 5."""
    exact = gate_evaluation.model.exact
    ivf = gate_evaluation.model.ivf
    intervals = gate_evaluation.model.intervals
    r5 = intervals["r_at_5"]
    threshold.check(
        exact.r_at_5,
        cause="the model's prediction is not near its true next chunk among all payload chunks: undertrained, or trained on targets from another source than the payload (row 1)",
        context=f"95% interval {100 * r5.low:.2f}%-{100 * r5.high:.2f}% over {exact.count} rows; R@1 {100 * exact.r_at_1:.2f}%, R@10 {100 * exact.r_at_10:.2f}%, MRR {exact.mrr:.4f}, median rank {exact.median_rank:g}"
        + ("" if ivf is None else f"; IVF R@5 {100 * ivf.r_at_5:.2f}%") + ".",
        details={"exact": exact.as_dict(), "ivf": None if ivf is None else ivf.as_dict(), "intervals": {k: v.as_dict() for k, v in intervals.items()}},
    )


def test_retrieval_figures_recorded(checkpoint_path, gate_evaluation: GateEvaluation, record) -> None:
    """R@1/5/10/50, MRR, Contain@50, Article@50 on exact search and on IVF, with R@k curves."""
    model = gate_evaluation.model
    assert model.exact.count == len(model.exact_ranks) > 0, "no eval rows were searched"
    for name, figures in (("exact", model.exact), ("ivf", model.ivf)):
        if figures is None:
            continue
        for metric in ("r_at_1", "r_at_10", "r_at_50", "mrr", "contain_at_50", "article_at_50", "median_rank"):
            value = getattr(figures, metric)
            record(f"{name}_{metric}", value, shown=f"{value:g}" if metric == "median_rank" else (f"{value:.4f}" if metric == "mrr" else f"{100 * value:.2f}%"))
    record("recall_curves", model.exact.r_at_5, shown=f"{100 * model.exact.r_at_5:.2f}%",
           curves={name: result.recall_curve() for name, result in [("model", model), *gate_evaluation.baselines.items(), ("oracle", gate_evaluation.oracle)]},
           ivf_curve=model.recall_curve(ivf=True), nprobe=gate_evaluation.nprobe)


@pytest.mark.threshold("ivf_exact_agreement", **GATE_LEVELS["ivf_exact_agreement"].marker())
def test_ivf_finds_what_exact_search_finds(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """Of the eval rows whose truth exact search puts in its top 50, the share the IVF index also finds."""
    model = gate_evaluation.model
    if model.ivf is None:
        pytest.skip("no IVF figures for this model (a two-tower model searches its own encoded bank)")
    if model.ivf_agreement is None:
        pytest.skip("exact search finds no truth in its top 50: nothing for the index to agree on (see r_at_5)")
    threshold.check(
        model.ivf_agreement,
        cause=f"index problem, not a model problem: the IVF index at nprobe={gate_evaluation.nprobe} misses truths that exact search finds (too few lists probed, or an index built from another bank)",
        context=f"IVF R@5 {100 * model.ivf.r_at_5:.2f}% vs exact R@5 {100 * model.exact.r_at_5:.2f}%.",
        details={"ivf_r_at_5": model.ivf.r_at_5, "exact_r_at_5": model.exact.r_at_5, "nprobe": gate_evaluation.nprobe},
    )
