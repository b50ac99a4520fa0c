"""The decision as a pure function: every row of its table, its reason clauses, its levels, and no silent zeros (rows 11, 16).

Each case changes the healthy model's figures the way a real failure does and asserts the action and
the clauses of the reason together. The end-to-end cases (a gate session on each kind of model, with
its exit code) are `tests/test_gate_verdicts.py`.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.gate.decision import ACTIONS, GateMetrics, decide, evidence
from lvmcore.gate.levels import GATE_LEVELS, resolve
from helpers.decision_cases import HEALTHY, NOTHING_RETRIEVED, healthy

BOUNDS = resolve("minimum")

ROWS = [
    # (name, changes, action, clauses that must be in the reason)
    ("healthy", {}, "continue", ["every gate figure passes", "R@5 12.0%"]),
    ("provenance", {"provenance_mismatch": "embedder: checkpoint=a, payload=b"}, "check_data", ["the checkpoint records other data", "embedder: checkpoint=a"]),
    ("provenance, predictions route", {"provenance_mismatch": "dim: checkpoint=8, payload=16", "route": "predictions"}, "check_data", ["the predictions file records other data"]),
    ("contexts from another encoder", {"eval_context_aligned": 0.0, "eval_context_cause": "mean cosine 0.12", "delta": 0.0, **NOTHING_RETRIEVED},
     "check_data", ["eval contexts are not the payload's vectors", "gate_eval_context_aligned_fraction = 0.00%", "mean cosine 0.12", "row 2"]),
    ("targets misaligned", {"eval_target_aligned": 0.7}, "check_data", ["eval targets are not the payload's vectors", "70.00%"]),
    ("training targets from another source", {"training_target_aligned": 0.0, "training_cause": "cos 0.14"}, "check_data", ["training data is not the payload's vectors", "row 1"]),
    ("training data holds eval articles", {"article_overlap": 0.9, "chunk_overlap": 0.7}, "check_data", ["overlaps the eval set", "90.00%", "row 5"]),
    ("recorded training articles leak", {"leaked_eval_articles": 3}, "check_data", ["3 eval article(s)", "the checkpoint records"]),
    ("oracle broken", {"oracle_r_at_1": 0.3}, "check_data", ["truth targets do not retrieve their own keys"]),
    ("eval set too small", {"eval_rows": 100}, "check_data", ["100 rows", "needs 153"]),
    ("NaN predictions", {"nonfinite_predictions": 421, "delta": float("nan")}, "check_model", ["421 of 421 predictions hold NaN"]),
    ("NaN weights", {"nonfinite_weights": 12}, "check_model", ["NaN or inf weights"]),
    ("zero rows", {"zero_rows": 3}, "check_model", ["prediction_zero_rows = 3", "not a prediction per row"]),
    ("constant output", {"constant_rows": 421, "repeated_fraction": 1.0, "information_z": float("nan")}, "check_model", ["prediction_constant_rows = 421"]),
    ("rows shifted", {"shift_p": 0.004, "shift": 1, "shift_closer": 9}, "check_data", ["9 of 9 rows", "shifted by +1"]),
    ("rows shuffled", {"elsewhere_share": 0.8, "elsewhere_excess_low": 0.55, "information_z": 0.3, **NOTHING_RETRIEVED}, "check_data", ["belong to other rows", "80.0%"]),
    ("leaked targets", {"answer_copy_fraction": 1.0, "oracle_closure": 1.0, "r_at_1": 1.0}, "check_data", ["too good to be true", "equal their own truth", "R@1 100.0%"]),
    ("noisy targets", {"oracle_closure": 0.9, "model_cosine": 0.95}, "check_data", ["too good to be true", "closes 90%"]),
    ("random output", {"information_z": 0.4, "delta": 0.0, **NOTHING_RETRIEVED}, "check_model", ["no information about its input", "prediction_input_information_z = 0.4"]),
    ("index", {"ivf_agreement": 0.4, "ivf_r_at_5": 0.05}, "check_index", ["IVF finds 40.0%"]),
    ("separates but finds nothing", {"delta": 0.3, **NOTHING_RETRIEVED}, "check_data", ["R@5 0% with separation delta 0.300"]),
    ("informative, no separation, all verified", {"delta": 0.01, **NOTHING_RETRIEVED}, "pivot_two_tower", ["similarity z 80.0", "trained for 4 epoch(s)", "4.2000 -> 3.1000"]),
    ("informative, no separation, loss flat", {"delta": 0.01, "training_loss": (4.2, 4.18), **NOTHING_RETRIEVED}, "check_training",
     ["training loss did not fall", "4.2000 at the first recorded epoch, 4.1800 at this one", "says nothing about the architecture", "r_at_5 = 0.00%"]),
    ("below the baseline, loss flat", {"beats_low": -0.05, "beats_high": 0.01, "excluded_beats_low": -0.04, "excluded_beats_high": 0.02, "training_loss": (3.47, 3.47)},
     "check_training", ["did not learn", "r_at_5_over_best_baseline_lower95"]),
    ("passes every gate, loss flat", {"training_loss": (3.47, 3.47)}, "continue", ["every gate figure passes"]),
    ("separates but finds nothing, loss flat", {"delta": 0.3, "training_loss": (3.47, 3.47), **NOTHING_RETRIEVED}, "check_data", ["R@5 0% with separation delta 0.300"]),
    ("informative, no separation, no loss record", {"delta": 0.01, "training_loss": None, **NOTHING_RETRIEVED}, "below_baseline",
     ["no architecture verdict", "no training record shows its loss fell", "random weights"]),
    ("informative, no separation, no training data", {"delta": 0.01, "training_target_aligned": None, "training_context_aligned": None,
     "article_overlap": None, "chunk_overlap": None, "near_duplicate": None, **NOTHING_RETRIEVED}, "below_baseline", ["no architecture verdict", "--train-data"]),
    ("informative, no separation, predictions route", {"delta": 0.01, "route": "predictions", "trained_epochs": None, **NOTHING_RETRIEVED},
     "below_baseline", ["no architecture verdict", "the predictions file records no trained epoch"]),
    ("copier retrieving nothing", {"echo_rate": 1.0, "delta": -0.1, **NOTHING_RETRIEVED}, "below_baseline", ["it copies its input", "echo_rate = 100.00%"]),
    ("copier", {"beats_low": 0.0, "beats_high": 0.0, "excluded_beats_low": 0.0, "excluded_beats_high": 0.0, "echo_rate": 1.0, "offset_peak": 0, "offset_peak_margin": -0.5},
     "below_baseline", ["not shown better", "echo_rate = 100.00%", "copies its input"]),
    ("no better, low echo", {"beats_low": -0.05, "beats_high": 0.01, "excluded_beats_low": -0.04, "excluded_beats_high": 0.02, "echo_rate": 0.02},
     "below_baseline", ["no better than copying or averaging"]),
    ("better neighbour finder", {"beats_low": -0.02, "beats_high": 0.03, "echo_rate": 0.7}, "train_more", ["only with its own context excluded", "echo_rate = 70.00%"]),
    ("wrong position", {"offset_peak": 2, "offset_peak_margin": -0.1}, "train_more", ["peaks at k=+2"]),
    ("a rounding tie at the offset peak", {"offset_peak": 3, "offset_peak_margin": -6e-08}, "continue", ["every gate figure passes"]),
    ("low separation", {"delta": 0.03}, "train_more", ["separation_delta = 0.03"]),
    ("overfits", {"train_minus_eval_r_at_5": 0.4}, "check_model", ["train_minus_eval_r_at_5 = 40.00%"]),
]


@pytest.mark.parametrize(("name", "changes", "action", "clauses"), ROWS, ids=[row[0] for row in ROWS])
def test_every_row_of_the_table(name, changes, action, clauses) -> None:
    decision = decide(healthy(**changes), BOUNDS)
    assert decision.action == action, decision.reason
    for clause in clauses:
        assert clause in decision.reason, (clause, decision.reason)
    assert decision.action in ACTIONS


def test_reasons_never_state_what_the_figures_do_not_hold() -> None:
    """Clauses come from figures past their level: no echo story at 5% echo, no offset story at the right peak."""
    low_echo = decide(healthy(beats_low=-0.05, beats_high=0.01, excluded_beats_low=-0.04, excluded_beats_high=0.02, echo_rate=0.05), BOUNDS)
    assert "copies" not in low_echo.reason and "echo_rate" not in low_echo.reason
    random = decide(healthy(information_z=0.4, **NOTHING_RETRIEVED), BOUNDS)
    assert "copies" not in random.reason and "last context chunk" not in random.reason and "k=" not in random.reason
    zero = decide(healthy(zero_rows=421, information_z=float("nan"), offset_peak=-5, offset_peak_margin=0.0, **NOTHING_RETRIEVED), BOUNDS)
    assert zero.action == "check_model" and "k=-5" not in zero.reason
    predictions = decide(healthy(route="predictions", leaked_eval_articles=2), BOUNDS)
    assert "the checkpoint" not in predictions.reason and "the predictions file records" in predictions.reason


def test_data_comes_before_the_model_and_the_model_before_architecture() -> None:
    everything = healthy(eval_context_aligned=0.0, zero_rows=5, information_z=0.1, delta=0.0, **NOTHING_RETRIEVED)
    assert decide(everything, BOUNDS).action == "check_data"
    assert decide(healthy(zero_rows=5, information_z=0.1, delta=0.0, **NOTHING_RETRIEVED), BOUNDS).action == "check_model"
    assert decide(healthy(information_z=0.1, delta=0.0, **NOTHING_RETRIEVED), BOUNDS).action == "check_model"
    assert decide(healthy(delta=0.0, **NOTHING_RETRIEVED), BOUNDS).action == "pivot_two_tower"


def test_the_runs_level_and_overrides_reach_the_decision() -> None:
    """R@5 2% beating the baseline passes at the minimum level and is train_more at good; an override moves the bound."""
    modest = healthy(r_at_5=0.02, r_at_5_low=0.01, r_at_5_high=0.04, ivf_r_at_5=0.02)
    assert decide(modest, resolve("minimum")).action == "continue"
    good = decide(modest, resolve("good"))
    assert good.action == "train_more" and "under the good level > 5.00%" in good.reason
    assert decide(modest, resolve("good", {("r_at_5", "good"): 0.01})).action == "continue"
    assert decide(healthy(echo_rate=0.4), resolve("minimum", {("echo_rate", "minimum"): 0.3})).action == "train_more"


def test_a_win_needs_a_lower_bound_above_zero() -> None:
    """A paired lower bound of exactly 0 is a tie, not a win, in both views."""
    tie = healthy(beats_low=0.0, beats_high=0.04, excluded_beats_low=0.0, excluded_beats_high=0.05)
    assert decide(tie, BOUNDS).action == "below_baseline"
    assert decide(healthy(beats_low=1e-9), BOUNDS).action == "continue"


def test_a_raw_lower_bound_of_exactly_zero_is_not_a_raw_win() -> None:
    """Each view on its own: a raw tie at exactly 0 beside a clear context-excluded win is a neighbour finder
    (train_more), and a context-excluded tie at exactly 0 beside a clear raw win is below the baseline; neither continues."""
    raw_tie = decide(healthy(beats_low=0.0, beats_high=0.05), BOUNDS)
    assert raw_tie.action == "train_more" and "only with its own context excluded" in raw_tie.reason, raw_tie.reason
    excluded_tie = decide(healthy(excluded_beats_low=0.0, excluded_beats_high=0.05), BOUNDS)
    assert excluded_tie.action == "below_baseline", excluded_tie.reason
    assert "context_excluded_r_at_5_over_best_baseline_lower95 = 0.00% (required > 0.00%)" in excluded_tie.reason


def test_a_missing_metric_is_an_error_not_a_zero() -> None:
    values = HEALTHY.as_dict()
    del values["r_at_5"]
    with pytest.raises(TypeError, match="r_at_5"):
        GateMetrics(**values)


def test_every_gate_level_is_a_figure_the_decision_reads() -> None:
    assert set(HEALTHY.figures()) | {"negatives_per_positive_over_batch", "negatives_shortfall_vs_configured_loss", "lr_trace_max_relative_error"} == set(GATE_LEVELS)
    assert {levels.implies for levels in GATE_LEVELS.values()} <= set(ACTIONS)


FIGURES = [f.name for f in fields(GateMetrics) if f.type in ("float", "float | None")]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIGURES), st.floats(-1.0, 100.0, allow_nan=False), max_size=4))
def test_continue_exactly_when_every_figure_passes(changes) -> None:
    """The property behind 'exit code and decision never disagree': continue <=> no gate figure past its level."""
    metrics = healthy(**changes)
    if metrics.invalid_figures():
        assert decide(metrics, BOUNDS).action in ("check_data", "check_model")  # data rows may come first; never continue
        return
    failing = evidence(metrics, BOUNDS).failing
    assert (decide(metrics, BOUNDS).action == "continue") == (not failing), failing


def test_figures_at_the_edges_of_their_ranges_are_read_and_beyond_them_are_not() -> None:
    """Shares live in [0, 1], paired differences in [-1, 1], delta in [-2, 2]: the edges are figures, past them a broken model."""
    edges = healthy(r_at_1=1.0, echo_rate=0.0, excluded_beats_low=-1.0, excluded_beats_high=1.0, beats_high=1.0, delta=2.0)
    assert edges.invalid_figures() == []
    assert healthy(delta=-2.0).invalid_figures() == [] and healthy(beats_low=-1.0).invalid_figures() == []
    beyond = healthy(r_at_1=1.5, beats_high=1.5, excluded_beats_low=-1.5, delta=2.5)
    assert beyond.invalid_figures() == ["r_at_1 = 1.5", "beats_high = 1.5", "excluded_beats_low = -1.5", "delta = 2.5"]
    assert healthy(delta=-2.5).invalid_figures() == ["delta = -2.5"]
    assert healthy(echo_rate=-0.1).invalid_figures() == ["echo_rate = -0.1"]
    decision = decide(beyond, BOUNDS)
    assert decision.action == "check_model" and "r_at_1 = 1.5; beats_high = 1.5; excluded_beats_low = -1.5; delta = 2.5" in decision.reason


def test_the_loss_must_fall_by_one_percent_to_count_as_learning() -> None:
    """The boundary of the pivot's training evidence: exactly 1% below the first epoch counts, a hair less does not."""
    from lvmcore.gate.decision import loss_fell

    assert loss_fell((4.0, 3.96)) and not loss_fell((4.0, 3.9601)) and not loss_fell((4.0, 4.5))
    assert loss_fell((-2.0, -2.02)) and not loss_fell((-2.0, -2.0))  # a negative loss (some objectives) by its size
    assert decide(healthy(delta=0.0, training_loss=(4.0, 3.96), **NOTHING_RETRIEVED), BOUNDS).action == "pivot_two_tower"
    assert decide(healthy(delta=0.0, training_loss=(4.0, 3.9601), **NOTHING_RETRIEVED), BOUNDS).action == "check_training"
