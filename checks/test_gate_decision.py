"""The decision gate (row 11): computed in code from metrics a dataclass guarantees exist.

`test_decision` builds `GateMetrics` from the evaluation: a metric that is missing is an
AttributeError or TypeError, so the test fails; it never reads 0 from an absent key.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest

from lvmcore.artifacts.checkpoint import CheckpointRecord
from lvmcore.gate.decision import ACTIONS, decide
from lvmcore.gate.evaluate import GateEvaluation

pytestmark = pytest.mark.gate


def test_decision(checkpoint_path, gate_evaluation: GateEvaluation, record) -> None:
    metrics = gate_evaluation.gate_metrics()
    decision = decide(metrics)
    assert decision.action in ACTIONS, f"decision {decision.action!r} is not one of {ACTIONS}"
    record("decision", decision.action, shown=decision.action, action=decision.action, reason=decision.reason, metrics=metrics.as_dict())


def test_gate_figures_for_report(checkpoint_path, gate_evaluation: GateEvaluation, checkpoint_record: CheckpointRecord, record) -> None:
    """Everything the report tables and plots need, as one record."""
    ev = gate_evaluation
    sets = {"model": ev.model, **{f"baseline:{k}": v for k, v in ev.baselines.items()}, "oracle": ev.oracle}
    if ev.train is not None:
        sets["train"] = ev.train
    assert ev.model.exact.count > 0, "no eval rows were evaluated"
    record(
        "gate_figures", ev.model.exact.r_at_5, shown=f"{100 * ev.model.exact.r_at_5:.2f}%",
        query_sets={name: result.summary() for name, result in sets.items()},
        separation=asdict(ev.separation),
        offset_sweep={str(k): v for k, v in ev.offset_sweep.items()},
        offset_sweep_copy_last={str(k): v for k, v in ev.offset_sweep_copy_last.items()},
        examples=ev.examples,
        seconds=ev.seconds,
        searched=ev.searched,
        nprobe=ev.nprobe,
        metrics=ev.gate_metrics().as_dict(),
        history_path=str(checkpoint_record.history_path),
        checkpoint={"path": str(checkpoint_path), "epoch": checkpoint_record.epoch, "step": checkpoint_record.step, "metrics": checkpoint_record.metrics},
    )
