"""The decision gate (row 11): computed in code from metrics a dataclass guarantees exist.

`test_decision` builds `GateMetrics` from the evaluation: a metric that is missing is a TypeError,
so the test fails; it never reads 0 from an absent key. It also fails when a figure the decision
reads is NaN or out of its range (`GateMetrics.invalid_figures`), before any decision is taken.
"""

from __future__ import annotations

import pytest

from lvmcore.artifacts.checkpoint import CheckpointRecord
from lvmcore.gate.decision import decide
from lvmcore.gate.evaluate import GateEvaluation
from lvmcore.gate.record_checks import RecordFindings
from lvmcore.gate.report import DECISION_RECORD, FIGURES_RECORD

pytestmark = pytest.mark.gate


def test_decision(checkpoint_path, gate_evaluation: GateEvaluation, checkpoint_findings: RecordFindings, record) -> None:
    metrics = gate_evaluation.gate_metrics(provenance_mismatch=checkpoint_findings.provenance_mismatch, leaked_eval_articles=checkpoint_findings.leaked_eval_articles)
    invalid = metrics.invalid_figures()
    decision = decide(metrics)
    record(DECISION_RECORD, decision.action, shown=decision.action, action=decision.action, reason=decision.reason, metrics=metrics.as_dict())
    assert not invalid, f"no decision can be read from these figures: {', '.join(invalid)} (NaN predictions or weights, or a broken metric; see test_predictions_are_finite)"


def test_gate_figures_for_report(checkpoint_path, gate_evaluation: GateEvaluation, checkpoint_record: CheckpointRecord, record) -> None:
    """Everything the report tables and plots need, as one typed record (`lvmcore.gate.report.GateFigures`)."""
    ev = gate_evaluation
    assert ev.model.exact.count > 0, "no eval rows were evaluated"
    figures = ev.figures(
        history_path=str(checkpoint_record.history_path),
        checkpoint={"path": str(checkpoint_path), "epoch": checkpoint_record.epoch, "step": checkpoint_record.step, "metrics": checkpoint_record.metrics},
    )
    record(FIGURES_RECORD, ev.model.exact.r_at_5, shown=f"{100 * ev.model.exact.r_at_5:.2f}%", **figures.as_dict())
