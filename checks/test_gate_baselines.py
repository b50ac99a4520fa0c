"""Gate: the model must beat trivial predictors computed from the CONTEXTS ONLY (rows 12, 13).

copy-last, mean of context and a linear ridge map (fitted on training windows; see
`lvmcore.gate.baselines`) are searched exactly like the model, in the same batched pass.
"""

from __future__ import annotations

import pytest

from lvmcore.gate.levels import GATE_LEVELS

from lvmcore.gate.evaluation import GateEvaluation

pytestmark = pytest.mark.gate


@pytest.mark.threshold("r_at_5_over_best_baseline_lower95", **GATE_LEVELS["r_at_5_over_best_baseline_lower95"].marker())
def test_model_beats_best_baseline_r_at_5(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """Lower bound of the paired 95% interval of (model - best baseline) R@5 over the same eval rows, raw view."""
    comparison = gate_evaluation.comparisons["raw"]
    best = gate_evaluation.baselines[comparison.baseline]
    threshold.check(
        comparison.paired.interval.low,
        cause=f"the model is not shown better than the {comparison.baseline} baseline computed from its context alone: it copies or averages its input instead of predicting (row 13), or the eval set is too small to tell",
        context=f"{comparison.sentence()} (McNemar p {comparison.paired.mcnemar_p:.3g}; cosine {gate_evaluation.model.cosine:.4f} vs {best.cosine:.4f}).",
        details=comparison.as_dict(),
    )


@pytest.mark.threshold("context_excluded_r_at_5_over_best_baseline_lower95", **GATE_LEVELS["context_excluded_r_at_5_over_best_baseline_lower95"].marker())
def test_model_beats_best_baseline_with_context_excluded(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """The same paired comparison with each query's own context chunks removed from its candidates.

    Copy-last's rank 1 is always its own last chunk, so raw R@5 can tie a copier with copy-last;
    with the context excluded a model that finds better neighbours than copying shows it.
    """
    comparison = gate_evaluation.comparisons.get("context_excluded")
    if comparison is None:
        pytest.skip("the eval set has no context keys: the context chunks cannot be excluded (see the context alignment checks)")
    threshold.check(
        comparison.paired.interval.low,
        cause=f"even with its own context excluded the model is not shown better than {comparison.baseline}: it has learned nothing beyond its input (row 13)",
        context=f"{comparison.sentence()} (McNemar p {comparison.paired.mcnemar_p:.3g}).",
        details=comparison.as_dict(),
    )


def test_baselines_recorded(checkpoint_path, gate_evaluation: GateEvaluation, record) -> None:
    """Each baseline's R@5 and cosine beside the model's; the ridge is absent only without training data."""
    names = set(gate_evaluation.baselines)
    assert {"copy_last", "mean_context"} <= names, f"baselines computed: {sorted(names)}"
    for name, result in gate_evaluation.baselines.items():
        record(f"baseline_{name}_r_at_5", result.exact.r_at_5, shown=f"{100 * result.exact.r_at_5:.2f}%",
               cosine=result.cosine, echo_rate=result.echo, summary=result.summary())
    record("model_cosine", gate_evaluation.model.cosine, copy_last_cosine=gate_evaluation.baselines["copy_last"].cosine,
           ridge_alpha=gate_evaluation.ridge_alpha)
