"""Gate: the same retrieval on a sample of TRAINING windows vs the held-out eval rows (rows 8, 15).

A model far better on rows it trained on than on held-out documents memorised its rows; the
public team's validation figures came from leaked rows and hid exactly this.
"""

from __future__ import annotations

import pytest

from lvmcore.gate.levels import GATE_LEVELS

from lvmcore.gate.evaluation import GateEvaluation

pytestmark = pytest.mark.gate


@pytest.mark.threshold("train_minus_eval_r_at_5", **GATE_LEVELS["train_minus_eval_r_at_5"].marker())
def test_generalization_gap_r_at_5(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    if gate_evaluation.train is None:
        pytest.skip("no predictions on training windows: no training data given (--train-data none), or a --predictions file "
                    "without train_predictions; the generalization gap needs them")
    gap = gate_evaluation.generalization
    train, held = gate_evaluation.train, gate_evaluation.model
    threshold.check(
        gap["r_at_5_gap"],
        cause="the model retrieves far better on windows it trained on than on held-out documents: it memorised training rows (overfitting, or eval documents unlike training ones)",
        context=f"train R@5 {100 * train.exact.r_at_5:.2f}% on {train.exact.count} windows vs eval R@5 {100 * held.exact.r_at_5:.2f}%; cosine gap {gap['cosine_gap']:+.4f}.",
        details={"train": train.summary(), "eval": held.summary(), **gap},
    )
