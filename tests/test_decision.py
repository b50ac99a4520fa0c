"""The decision gate as a pure function: the public rules, our extensions, and no silent zeros (row 11)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lvmcore.gate.decision import ACTIONS, GateMetrics, decide

BASE = GateMetrics(
    r_at_5=0.12, r_at_1=0.04, delta=0.2, ivf_r_at_5=0.12, ivf_agreement=0.98,
    best_baseline="copy_last", best_baseline_r_at_5=0.03, copy_last_r_at_5=0.03, echo_rate=0.05, offset_peak=1,
)


@pytest.mark.parametrize(
    ("changes", "action"),
    [
        ({}, "continue"),
        ({"r_at_5": 0.05, "ivf_r_at_5": 0.05}, "continue"),
        ({"r_at_5": 0.049, "ivf_r_at_5": 0.049}, "train_more"),
        ({"r_at_5": 0.001, "ivf_r_at_5": 0.001}, "train_more"),
        ({"r_at_5": 0.0, "ivf_r_at_5": 0.0, "ivf_agreement": None, "delta": 0.10}, "check_data"),
        ({"r_at_5": 0.0, "ivf_r_at_5": 0.0, "ivf_agreement": None, "delta": 0.099}, "pivot_two_tower"),
        ({"ivf_r_at_5": 0.0, "ivf_agreement": 0.1}, "check_index"),
        ({"r_at_5": 0.0, "ivf_r_at_5": 0.0, "ivf_agreement": 0.0, "delta": 0.3}, "check_index"),
        ({"best_baseline_r_at_5": 0.5, "best_baseline": "ridge"}, "below_baseline"),
        ({"best_baseline_r_at_5": 0.12}, "below_baseline"),
    ],
)
def test_decision_table(changes, action) -> None:
    decision = decide(replace(BASE, **changes))
    assert decision.action == action, decision.reason
    assert decision.action in ACTIONS


def test_reason_names_the_figures() -> None:
    reason = decide(replace(BASE, r_at_5=0.02, ivf_r_at_5=0.02)).reason
    assert "2.0%" in reason and "5%" in reason


def test_high_echo_and_wrong_offset_peak_are_said() -> None:
    reason = decide(replace(BASE, echo_rate=0.8, offset_peak=0)).reason
    assert "echo rate 80.0%" in reason and "k=+0" in reason


def test_below_copy_last_is_said_even_while_training_more() -> None:
    decision = decide(replace(BASE, r_at_5=0.02, ivf_r_at_5=0.02, best_baseline_r_at_5=0.3))
    assert decision.action == "train_more" and "does not beat" in decision.reason


def test_a_missing_metric_is_an_error_not_a_zero() -> None:
    fields = BASE.as_dict()
    del fields["r_at_5"]
    with pytest.raises(TypeError, match="r_at_5"):
        GateMetrics(**fields)
    # the report, reading recorded figures, says the metric is missing instead of deciding on a 0
    from lvmcore.gate.report import decision_of

    decision = decision_of({"subject": "epoch_001", "records": [{"check": "gate_figures", "details": {"metrics": fields}}]})
    assert decision["action"] == "unknown" and "r_at_5" in decision["reason"], decision


def test_nan_or_out_of_range_figures_are_named_before_any_decision() -> None:
    assert BASE.invalid_figures() == []
    broken = replace(BASE, r_at_5=float("nan"), delta=3.0, echo_rate=1.5)
    assert broken.invalid_figures() == ["r_at_5 = nan", "echo_rate = 1.5", "delta = 3.0"]
