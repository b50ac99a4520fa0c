"""The decision gate as a pure function: the public rules, our extensions, and no silent zeros (row 11)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lvmcore.gate.decision import ACTIONS, GateMetrics, decide

BASE = GateMetrics(
    r_at_5=0.12, r_at_1=0.04, delta=0.2, ivf_r_at_5=0.12, ivf_agreement=0.98,
    best_baseline="copy_last", best_baseline_r_at_5=0.03, copy_last_r_at_5=0.03, echo_rate=0.05, offset_peak=1,
    r_at_5_low=0.09, r_at_5_high=0.15, beats_low=0.05, beats_high=0.13,
    excluded_r_at_5=0.14, excluded_best_baseline="copy_last", excluded_beats_low=0.06, excluded_beats_high=0.15,
    model_kind="predictor", nonfinite_predictions=0, eval_rows=421, rows_needed=153,
    provenance_mismatch=None, leaked_eval_articles=None,
)
TIED = {"beats_low": -0.02, "beats_high": 0.03}  # the paired interval includes 0: not a win
TIED_EXCLUDED = {"excluded_beats_low": -0.01, "excluded_beats_high": 0.04}


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
        # a copier: ties raw, ties context-excluded -> never continue
        ({**TIED, **TIED_EXCLUDED, "echo_rate": 0.97, "model_kind": "copier"}, "below_baseline"),
        # a better neighbour finder: ties raw, wins context-excluded
        ({**TIED, "model_kind": "better neighbour finder"}, "train_more"),
        # a one-row raw margin is a tie, not a win
        ({"beats_low": -0.001, "beats_high": 0.006, **TIED_EXCLUDED}, "below_baseline"),
        # issue 10: R@5 1.3% against copy-last 48.7% used to get train_more while the beats-baseline check failed
        ({"r_at_5": 0.013, "ivf_r_at_5": 0.013, "best_baseline_r_at_5": 0.487, "copy_last_r_at_5": 0.487,
          "beats_low": -0.52, "beats_high": -0.43, "excluded_beats_low": -0.5, "excluded_beats_high": -0.4}, "below_baseline"),
        ({"provenance_mismatch": "embedder: checkpoint=a, payload=b"}, "check_data"),
        ({"leaked_eval_articles": 3}, "check_data"),
        ({"nonfinite_predictions": 421, "delta": float("nan")}, "check_model"),
        ({"eval_rows": 3}, "check_data"),
    ],
)
def test_decision_table(changes, action) -> None:
    decision = decide(replace(BASE, **changes))
    assert decision.action == action, decision.reason
    assert decision.action in ACTIONS


def test_the_first_rule_that_applies_decides() -> None:
    """Provenance before leakage before broken figures before a small eval set before the index."""
    everything = replace(BASE, provenance_mismatch="dim: checkpoint=768, payload=384", leaked_eval_articles=2, nonfinite_predictions=5, eval_rows=3, ivf_agreement=0.1)
    assert "trained on other data" in decide(everything).reason
    assert "eval article" in decide(replace(everything, provenance_mismatch=None)).reason
    assert decide(replace(everything, provenance_mismatch=None, leaked_eval_articles=None)).action == "check_model"
    assert "needs 153" in decide(replace(everything, provenance_mismatch=None, leaked_eval_articles=None, nonfinite_predictions=0)).reason
    assert decide(replace(everything, provenance_mismatch=None, leaked_eval_articles=None, nonfinite_predictions=0, eval_rows=421)).action == "check_index"


def test_reason_names_the_figures() -> None:
    reason = decide(replace(BASE, r_at_5=0.02, ivf_r_at_5=0.02)).reason
    assert "2.0%" in reason and "5%" in reason and "[+5.00, +13.00] points" in reason


def test_high_echo_and_wrong_offset_peak_are_said() -> None:
    reason = decide(replace(BASE, echo_rate=0.8, offset_peak=0)).reason
    assert "echo rate 80.0%" in reason and "k=+0" in reason


def test_below_copy_last_is_said_with_the_interval() -> None:
    decision = decide(replace(BASE, r_at_5=0.02, ivf_r_at_5=0.02, best_baseline_r_at_5=0.3, beats_low=-0.33, beats_high=-0.23, excluded_beats_low=-0.3, excluded_beats_high=-0.2))
    assert decision.action == "below_baseline" and "does not beat" in decision.reason and "[-33.00, -23.00] points" in decision.reason


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
    broken = replace(BASE, r_at_5=float("nan"), delta=3.0, echo_rate=1.5, beats_low=-1.5, nonfinite_predictions=7)
    assert broken.invalid_figures() == ["7 of 421 predictions hold NaN or inf", "r_at_5 = nan", "echo_rate = 1.5", "beats_low = -1.5", "delta = 3.0"]
