"""Every decision's full reason and failing list, word for word, against tests/golden/decision_reasons.json.

`tests/test_decision.py` asserts each row's action and the clauses that must appear; this pins the
rest of the sentence a user reads (every figure, level and number in it), so a changed clause, a
dropped figure or a wrong percentage fails here. After a deliberate change of wording, regenerate
with `LVM_REGENERATE_GOLDEN=1 pytest tests/test_decision_reasons.py` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lvmcore.gate.decision import decide
from lvmcore.gate.levels import resolve
from helpers.decision_cases import NOTHING_RETRIEVED, healthy
from test_decision import ROWS

GOLDEN = Path(__file__).parent / "golden" / "decision_reasons.json"
NO_CONTEXT_KEYS = {"excluded_r_at_5": None, "excluded_best_baseline": None, "excluded_beats_low": None, "excluded_beats_high": None,
                   "echo_rate": None, "offset_peak": None, "offset_peak_margin": None}

# (name, changes, level, overrides): beyond the table's rows, the clauses each row can add and the boundaries between rows
EXTRA = [
    ("training contexts from another source", {"training_context_aligned": 0.0, "training_cause": "cos 0.12"}, "minimum", {}),
    ("both training sides, and a leak", {"training_target_aligned": 0.0, "training_context_aligned": 0.5, "training_cause": "cos 0.14",
                                         "chunk_overlap": 0.3, "near_duplicate": 0.02, "leaked_eval_articles": 2, "route": "model_file"}, "minimum", {}),
    ("near duplicates only", {"near_duplicate": 0.02}, "minimum", {}),
    ("eval contexts and targets", {"eval_context_aligned": 0.2, "eval_context_cause": "cos 0.1", "eval_target_aligned": 0.5, "eval_target_cause": "cos 0.3"}, "minimum", {}),
    ("provenance, unknown route", {"provenance_mismatch": "dim: a=1, b=2; embedder: x", "route": "somewhere"}, "minimum", {}),
    ("oracle and rows", {"oracle_r_at_1": 0.3, "eval_rows": 100}, "minimum", {}),
    ("repeated rows", {"repeated_fraction": 0.5}, "minimum", {}),
    ("zero and constant rows", {"zero_rows": 2, "constant_rows": 3}, "minimum", {}),
    ("misfiled both ways", {"shift_p": 0.004, "shift": 1, "shift_closer": 9, "elsewhere_share": 0.8, "elsewhere_excess_low": 0.55, "information_z": 0.3}, "minimum", {}),
    ("leaked both ways", {"answer_copy_fraction": 0.5, "oracle_closure": 0.95, "r_at_1": 0.9}, "minimum", {}),
    ("raw tie at exactly 0, clear excluded win", {"beats_low": 0.0, "beats_high": 0.05}, "minimum", {}),
    ("excluded tie at exactly 0, clear raw win", {"excluded_beats_low": 0.0, "excluded_beats_high": 0.05}, "minimum", {}),
    ("no context keys", NO_CONTEXT_KEYS, "minimum", {}),
    ("no context keys, nothing beaten", {**NO_CONTEXT_KEYS, "beats_low": -0.05, "beats_high": 0.01}, "minimum", {}),
    ("half an excluded view: no high", {"excluded_beats_high": None}, "minimum", {}),
    ("half an excluded view: no R@5", {"excluded_r_at_5": None}, "minimum", {}),
    ("half an excluded view: no low", {"excluded_beats_low": None, "beats_low": -0.01}, "minimum", {}),
    ("learning, every clause", {"beats_low": -0.01, "beats_high": 0.04, "r_at_5": 0.02, "r_at_5_low": 0.01, "r_at_5_high": 0.04, "delta": 0.07,
                                "echo_rate": 0.3, "offset_peak": 2, "offset_peak_margin": -0.1}, "good", {}),
    ("under the good level", {"r_at_5": 0.02, "r_at_5_low": 0.01, "r_at_5_high": 0.04, "ivf_r_at_5": 0.02}, "good", {}),
    ("under a raised minimum: retrieves nothing", {"r_at_5": 0.005, "r_at_5_low": 0.001, "r_at_5_high": 0.02, "ivf_r_at_5": 0.005, "delta": 0.3}, "good", {("r_at_5", "minimum"): 0.01}),
    ("between the raised minimum and good", {"r_at_5": 0.02, "r_at_5_low": 0.01, "r_at_5_high": 0.04, "ivf_r_at_5": 0.02}, "good", {("r_at_5", "minimum"): 0.01}),
    ("IVF agreement between minimum and good", {"ivf_agreement": 0.85}, "good", {}),
    ("overfits past the strong level only", {"train_minus_eval_r_at_5": 0.07}, "strong", {}),
    ("strong level", {}, "strong", {}),
    ("separates at exactly the separating delta, finds nothing", {"delta": 0.10, **NOTHING_RETRIEVED}, "minimum", {}),
    ("nothing retrieved, unknown route, no epochs", {"delta": 0.01, "route": "somewhere", "trained_epochs": None, **NOTHING_RETRIEVED}, "minimum", {}),
    ("nothing retrieved, no training data and no epochs", {"delta": 0.01, "training_target_aligned": None, "training_context_aligned": None, "article_overlap": None,
                                                           "chunk_overlap": None, "near_duplicate": None, "trained_epochs": None, **NOTHING_RETRIEVED}, "minimum", {}),
    ("recorded leak, unknown route", {"leaked_eval_articles": 3, "route": "somewhere"}, "minimum", {}),
    ("no torch weights to read", {"nonfinite_weights": None}, "minimum", {}),
    ("figures no row reads, in priority order", {"excluded_beats_low": 0.0, "excluded_beats_high": 0.05, "train_minus_eval_r_at_5": 0.4}, "minimum", {}),
]
CASES = [(name, changes, "minimum", {}) for name, changes, _, _ in ROWS] + EXTRA


def decisions() -> dict[str, dict]:
    return {name: decide(healthy(**changes), resolve(level, overrides)).as_dict() for name, changes, level, overrides in CASES}


def test_case_names_are_unique() -> None:
    assert len({name for name, *_ in CASES}) == len(CASES)


def test_every_reason_word_for_word() -> None:
    found = decisions()
    if os.environ.get("LVM_REGENERATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n")
        pytest.skip(f"regenerated {GOLDEN}")
    expected = json.loads(GOLDEN.read_text())
    assert set(found) == set(expected)
    for name in expected:
        assert found[name] == expected[name], name


def test_without_an_r_at_5_bound_the_level_is_named_required() -> None:
    bounds = {name: bound for name, bound in resolve("minimum").items() if name != "r_at_5"}
    decision = decide(healthy(), bounds)
    assert decision.action == "continue" and decision.reason.startswith("every gate figure passes at the required level: ")
    assert decide(healthy(), resolve("good")).reason.startswith("every gate figure passes at the good level: ")
