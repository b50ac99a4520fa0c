"""The decision (rows 11, 16): computed in code from every figure the session measured, at the run's levels.

`test_decision` builds `GateMetrics` (a dataclass with no defaults: a missing figure is a TypeError,
never a silent 0) and decides with the same resolved levels the checks use (`gate_bounds`:
`lvmcore.gate.levels` with `--level` and every override). It fails unless the decision is
`continue`, so the session's exit code and the decision cannot disagree: `continue` is exit 0,
anything else exit 1 with the decision and its reason in the failure message and the report.
"""

from __future__ import annotations

import pytest

from lvmcore.artifacts.checkpoint import CheckpointRecord
from lvmcore.gate.decision import GateMetrics, decide
from lvmcore.gate.evaluation import GateEvaluation
from lvmcore.gate.levels import Bound
from lvmcore.gate.report import DECISION_RECORD, FIGURES_RECORD

pytestmark = pytest.mark.gate


def test_decision(checkpoint_path, gate_metrics: GateMetrics, gate_bounds: dict[str, Bound], record) -> None:
    decision = decide(gate_metrics, gate_bounds)
    record(DECISION_RECORD, decision.action, shown=decision.action, **decision.as_dict(), metrics=gate_metrics.as_dict(),
           levels={name: bound.describe() for name, bound in gate_bounds.items()})
    assert decision.action == "continue", f"decision {decision.action}: {decision.reason}"


def test_gate_figures_for_report(checkpoint_path, gate_evaluation: GateEvaluation, gate_metrics: GateMetrics, gate_bounds: dict[str, Bound],
                                 checkpoint_record: CheckpointRecord, gate_eval_fingerprint: str, record) -> None:
    """Everything the report tables and plots need, as one typed record (`lvmcore.gate.report.GateFigures`)."""
    ev = gate_evaluation
    assert ev.model.exact.count > 0, "no eval rows were evaluated"
    figures = ev.figures(
        history_path=str(checkpoint_record.history_path),
        checkpoint={"path": str(checkpoint_path), "epoch": checkpoint_record.epoch, "step": checkpoint_record.step, "metrics": checkpoint_record.metrics},
        metrics=gate_metrics, high_echo=gate_bounds["echo_rate"].value, eval_fingerprint=gate_eval_fingerprint,
    )
    record(FIGURES_RECORD, ev.model.exact.r_at_5, shown=f"{100 * ev.model.exact.r_at_5:.2f}%", **figures.as_dict())
