"""Gate: the model must beat trivial predictors computed from the CONTEXTS ONLY (rows 12, 13).

copy-last, mean of context and a linear ridge map (fitted on training windows; see
`lvmcore.gate.baselines`) are searched exactly like the model, in the same batched pass.
"""

from __future__ import annotations

import pytest

from lvmcore.gate.evaluate import GateEvaluation

pytestmark = pytest.mark.gate


@pytest.mark.threshold("r_at_5_over_best_baseline", minimum=0.0, strict=True, percent=True)
def test_model_beats_best_baseline_r_at_5(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """Model R@5 minus the best baseline's R@5 must be above zero."""
    best = gate_evaluation.best_baseline
    model = gate_evaluation.model
    threshold.check(
        model.exact.r_at_5 - best.exact.r_at_5,
        cause=f"the model is no better than the {best.name} baseline computed from its context alone: it copies or averages its input instead of predicting (row 13)",
        context=f"model R@5 {100 * model.exact.r_at_5:.2f}% (cosine {model.cosine:.4f}) vs {best.name} R@5 {100 * best.exact.r_at_5:.2f}% (cosine {best.cosine:.4f}).",
        details={"best_baseline": best.name, "model_cosine": model.cosine, "baseline_cosine": best.cosine},
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
