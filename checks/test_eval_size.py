"""Plumbing: is the eval set large enough for the gate's R@5 levels to mean anything? (statistical power)

The public run's 5,244 eval rows made R@5 = 0.0% a finding; 3 rows make nothing a finding. The rule
(`lvmcore.gate.intervals`, justified in its docstring): a model observed exactly at the 'good' R@5
level (5%) must be told apart at 95% (Wilson) from the 'strong' level (10%) and from the 'minimum'
(0%). 5% vs 10% binds: every eval set of at least 153 rows resolves it, 152 does not.
"""

from __future__ import annotations

import pytest

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.gate.levels import R_AT_5_LEVELS, eval_rows_needed

pytestmark = pytest.mark.plumbing


@pytest.mark.threshold("eval_rows_beyond_needed", minimum=0)
def test_eval_set_is_large_enough_to_resolve_r_at_5_levels(eval_set: EvalSet, threshold) -> None:
    """Eval rows minus the rows needed for the 'good' R@5 level to be told from 'strong' and from 'minimum'."""
    good = R_AT_5_LEVELS["good"]
    needed = eval_rows_needed()
    threshold.check(
        eval_set.count - needed,
        cause=f"too few eval rows: a model at R@5 {100 * good:.0f}% cannot be told from {100 * R_AT_5_LEVELS['strong']:.0f}% "
        f"(or a lucky row from 0%) at 95%; hold out more documents",
        context=f"{eval_set.count} rows, {needed} needed.",
        details={"rows": eval_set.count, "needed": needed},
    )
