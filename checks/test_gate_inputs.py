"""Gate: are the eval set and training data this gate reads fit to judge a model? (rows 1, 2, 5, 7, 16)

Plumbing checks the same things before training, but nothing guarantees it ran on these files. A gate
that judged a model on foreign eval contexts (row 2) read a data bug as "the architecture cannot
learn" (row 16), so the gate measures its own inputs (`lvmcore.gate.inputs`) and the decision reads
them before any model figure. Levels: `lvmcore.gate.levels`.
"""

from __future__ import annotations

import pytest

from lvmcore.gate.evaluation import GateEvaluation
from lvmcore.gate.inputs import InputFindings
from lvmcore.gate.levels import GATE_LEVELS, eval_rows_needed

pytestmark = pytest.mark.gate


def _marker(name: str) -> pytest.MarkDecorator:
    return pytest.mark.threshold(name, **GATE_LEVELS[name].marker())


def _need_training(inputs: InputFindings) -> None:
    if inputs.training_target_aligned is None:
        pytest.skip("no training data (--train-data none): the gate cannot check its alignment or its overlap with the eval set, and no architecture verdict is given")


@_marker("gate_eval_context_aligned_fraction")
def test_gate_eval_contexts_are_payload_vectors(checkpoint_path, gate_inputs: InputFindings, threshold) -> None:
    threshold.check(gate_inputs.eval_context_aligned, cause=gate_inputs.eval_context_cause or "eval context vectors are not the payload's vectors of their keys (row 2)")


@_marker("gate_eval_target_aligned_fraction")
def test_gate_eval_targets_are_payload_vectors(checkpoint_path, gate_inputs: InputFindings, threshold) -> None:
    threshold.check(gate_inputs.eval_target_aligned, cause=gate_inputs.eval_target_cause or "eval targets are not the payload's vectors of their keys")


@_marker("gate_training_target_aligned_fraction")
def test_gate_training_targets_are_payload_vectors(checkpoint_path, gate_inputs: InputFindings, threshold) -> None:
    _need_training(gate_inputs)
    threshold.check(gate_inputs.training_target_aligned, cause=gate_inputs.training_cause or "training targets from another encoder or source than the payload (row 1)",
                    context=f"{gate_inputs.training_windows_checked} windows checked.")


@_marker("gate_training_context_aligned_fraction")
def test_gate_training_contexts_are_payload_vectors(checkpoint_path, gate_inputs: InputFindings, threshold) -> None:
    _need_training(gate_inputs)
    threshold.check(gate_inputs.training_context_aligned, cause=gate_inputs.training_cause or "training contexts from another encoder or source than the payload (row 1)",
                    context=f"{gate_inputs.training_windows_checked} windows checked.")


@_marker("gate_training_eval_article_overlap")
def test_gate_training_data_holds_no_eval_article(checkpoint_path, gate_inputs: InputFindings, threshold) -> None:
    _need_training(gate_inputs)
    threshold.check(gate_inputs.article_overlap, cause="the training data the gate was given holds eval articles: the held-out figures (and the ridge baseline) are not held out (row 5)")


@_marker("gate_training_eval_chunk_overlap")
def test_gate_training_data_holds_no_eval_chunk(checkpoint_path, gate_inputs: InputFindings, threshold) -> None:
    _need_training(gate_inputs)
    threshold.check(gate_inputs.chunk_overlap, cause="eval chunks appear in the training windows: overlapping windows split at random (row 5)")


@_marker("gate_training_eval_near_duplicate_fraction")
def test_gate_training_data_holds_no_near_duplicate_of_an_eval_target(checkpoint_path, gate_inputs: InputFindings, threshold) -> None:
    _need_training(gate_inputs)
    if gate_inputs.near_duplicate is None:
        pytest.skip("the training data is stored as arrays, not read from the payload: its near-duplicates are the plumbing check's (test_no_eval_target_has_a_near_duplicate_in_training)")
    threshold.check(gate_inputs.near_duplicate, cause="eval targets repeated (cos >= 0.995) in training rows: duplicated documents or boilerplate across the split (row 5)")


@_marker("gate_eval_rows_beyond_needed")
def test_gate_eval_set_resolves_the_r_at_5_levels(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    rows, needed = gate_evaluation.model.exact.count, eval_rows_needed()
    threshold.check(rows - needed, cause="too few eval rows for the gate's R@5 levels to mean anything: hold out more documents", context=f"{rows} rows, {needed} needed.")


@_marker("oracle_exact_r_at_1")
def test_oracle_finds_its_own_key(checkpoint_path, gate_evaluation: GateEvaluation, record, threshold) -> None:
    """The truth targets as queries (an upper bound, NOT a baseline: row 12), duplicate-aware; IVF recorded beside it."""
    oracle = gate_evaluation.oracle
    if oracle.ivf is not None:
        record("oracle_ivf_r_at_1", oracle.ivf.r_at_1, shown=f"{100 * oracle.ivf.r_at_1:.2f}%",
               note="IVF-Flat always probes the query's own list, so oracle IVF recall cannot reveal a too-small nprobe; ivf_exact_agreement on model queries does")
    threshold.check(oracle.exact.r_at_1, cause="eval targets are not payload vectors of their truth keys, or the payload repeats keys (run the plumbing checks)")
