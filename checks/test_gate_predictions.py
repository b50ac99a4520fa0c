"""Gate: is the output a prediction per row, for the right rows, and not the answer itself? (rows 13, 16)

Retrieval figures cannot say why they are zero or perfect. These checks can: a broken model (zero,
constant or repeated rows; output unrelated to its input), predictions written under the wrong rows
(shifted or shuffled), and a leaked target ("too good to be true"). Each figure and its statistic is
`lvmcore.gate.health`; the levels and the decision each failure implies are `lvmcore.gate.levels`.
"""

from __future__ import annotations

import pytest

from lvmcore.gate.evaluation import GateEvaluation
from lvmcore.gate.health import COPY_COSINE, PERMUTATIONS
from lvmcore.gate.levels import GATE_LEVELS

pytestmark = pytest.mark.gate


def _marker(name: str) -> pytest.MarkDecorator:
    return pytest.mark.threshold(name, **GATE_LEVELS[name].marker())


@_marker("prediction_zero_rows")
def test_no_prediction_row_is_zero(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    rows = gate_evaluation.health.degenerate
    threshold.check(rows.zero, cause="zero prediction rows have no direction to search with: a masked or dead output, a failed export, or rows never written",
                    context=f"of {rows.rows} eval rows.")


@_marker("prediction_constant_rows")
def test_no_prediction_row_is_constant(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    rows = gate_evaluation.health.degenerate
    threshold.check(rows.constant, cause="prediction rows with every coordinate equal: a saturated or placeholder output, not an embedding",
                    context=f"of {rows.rows} eval rows.")


@_marker("prediction_repeated_fraction")
def test_predictions_differ_when_contexts_differ(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    rows = gate_evaluation.health.degenerate
    threshold.check(rows.repeated_share, cause="one prediction repeated for different contexts: a collapsed model, or a prediction script that reuses a row",
                    context=f"{rows.repeated} of {rows.rows} rows share their prediction with a row of another context.")


@_marker("prediction_input_information_z")
def test_output_carries_information_about_its_input(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """z of the correlation between context and prediction similarities, against row-permuted predictions."""
    info = gate_evaluation.health.information
    threshold.check(info.z, cause="the output does not depend on the input: random or broken output, an untrained model, or predictions filed under other rows",
                    context=f"r {info.correlation:.4f} over {info.rows} rows vs {PERMUTATIONS} row permutations: null mean {info.null_mean:.4f}, sd {info.null_sd:.4f}.",
                    details={"correlation": info.correlation, "null_mean": info.null_mean, "null_sd": info.null_sd, "rows": info.rows})


@_marker("prediction_answer_copy_fraction")
def test_predictions_are_not_copies_of_their_truth(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    copies = gate_evaluation.health.copies
    threshold.check(copies.copied_share, cause=f"predictions at cosine >= {COPY_COSINE} to their own truth vector where no context chunk is that vector: the target leaked into the predictions",
                    context=f"{copies.copied_rows} of {copies.rows} rows; R@1 {100 * gate_evaluation.model.exact.r_at_1:.1f}% vs oracle {100 * gate_evaluation.oracle.exact.r_at_1:.1f}%.")


@_marker("prediction_oracle_closure")
def test_predictions_are_not_too_close_to_the_oracle(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """(cos(model, target) - cos(best baseline, target)) / (1 - cos(best baseline, target)): too good to be true near 1."""
    copies = gate_evaluation.health.copies
    threshold.check(copies.oracle_closure, cause="the predictions are nearly the targets: a leaked target (the truth, or the truth plus noise, reached the model or the prediction script)",
                    context=f"mean cosine to the target {copies.model_cosine:.4f} vs best baseline {copies.baseline_cosine:.4f} and oracle 1.0; "
                            f"R@1 {100 * gate_evaluation.model.exact.r_at_1:.1f}% vs oracle {100 * gate_evaluation.oracle.exact.r_at_1:.1f}%.")


@_marker("row_shift_sign_test_p")
def test_predictions_are_not_shifted_by_a_row(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """Sign test over rows whose neighbour row is another document: closer to the neighbour's target than to their own?"""
    order = gate_evaluation.health.order
    threshold.check(order.shift_p, cause=f"predictions are closer to the target of row i{order.worst_shift:+d} (another document) than to their own: the prediction file is shifted by {order.worst_shift:+d} row(s)",
                    context=f"{order.shift_closer} of {order.shift_rows} such rows at shift {order.worst_shift:+d}; Bonferroni p over shifts -1, +1.",
                    details=order.as_dict())


@_marker("other_rows_truth_excess_lower95")
def test_predictions_do_not_find_other_rows_answers(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """Lower 95% bound of (top 5 holds another document's eval truth - holds its own - chance), over rows."""
    order = gate_evaluation.health.order
    threshold.check(order.elsewhere_excess_low, cause="the predictions retrieve other eval rows' answers instead of their own: predictions filed under the wrong rows (a shuffled or re-sorted prediction file)",
                    context=f"another row's truth in the top 5 for {100 * order.elsewhere_share:.1f}% of rows, own truth {100 * order.own_share:.1f}%, chance {100 * order.chance_share:.1f}%.",
                    details=order.as_dict())
