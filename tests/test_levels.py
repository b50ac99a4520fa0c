"""A figure's bound (lvmcore.gate.levels): the one comparison every gate check and the decision make.

Each test sits on a boundary: a strict bound is not met by its own value, a tolerance moves the
bound by exactly its amount, None and NaN never pass, and a level missing from a figure falls
back to the highest defined level below it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lvmcore.gate.levels import GATE_LEVELS, LEVEL_NAMES, Levels, bound_of, required_level, resolve


def bound(above: bool = True, strict: bool = False, tolerance: float = 0.0, percent: bool = False, **levels: float):
    return bound_of("figure", Levels("train_more", above=above, strict=strict, tolerance=tolerance, percent=percent, **(levels or {"minimum": 0.5})), "minimum")


@pytest.mark.parametrize(("above", "strict", "below", "at", "beyond"), [
    (True, False, False, True, True),
    (True, True, False, False, True),
    (False, False, True, True, False),
    (False, True, True, False, False),
])
def test_meets_at_below_and_beyond_the_bound(above, strict, below, at, beyond) -> None:
    b = bound(above=above, strict=strict, minimum=0.5)
    assert (b.meets(0.25), b.meets(0.5), b.meets(0.75)) == (below, at, beyond)


def test_a_lower_bound_of_exactly_zero_is_not_a_win() -> None:
    """The decision's win rule: the paired lower bound must be strictly above 0, in both views."""
    for name in ("r_at_5_over_best_baseline_lower95", "context_excluded_r_at_5_over_best_baseline_lower95"):
        b = resolve("minimum")[name]
        assert not b.meets(0.0) and b.meets(1e-12) and not b.meets(-1e-12), name


def test_tolerance_moves_the_bound_by_exactly_its_amount() -> None:
    up = bound(above=True, strict=True, tolerance=0.25, minimum=0.5)
    assert up.meets(0.3) and not up.meets(0.25) and not up.meets(0.2)
    down = bound(above=False, strict=True, tolerance=0.25, minimum=0.5)
    assert down.meets(0.7) and not down.meets(0.75) and not down.meets(0.8)
    assert bound(tolerance=0.25, minimum=0.5).value == 0.5  # the level itself is unchanged


@pytest.mark.parametrize("above", [True, False])
def test_none_and_nan_never_meet_a_bound(above) -> None:
    b = bound(above=above, minimum=0.5)
    assert not b.meets(None) and not b.meets(float("nan"))


def test_meets_takes_another_value_to_compare_with() -> None:
    b = bound(minimum=0.5, good=0.8)
    assert b.meets(0.6) and not b.meets(0.6, 0.8) and b.meets(0.9, 0.8)


def test_reached_is_the_highest_level_met() -> None:
    rising = bound(minimum=0.1, good=0.5, strong=0.9)
    assert [rising.reached(v) for v in (0.0, 0.1, 0.6, 0.95)] == [None, "minimum", "good", "strong"]
    falling = bound(above=False, minimum=0.5, good=0.1, strong=0.0)
    assert [falling.reached(v) for v in (0.6, 0.3, 0.05, 0.0)] == [None, "minimum", "good", "strong"]


@given(st.floats(-10, 10, allow_nan=False))
def test_meets_is_the_comparison_it_describes(measured: float) -> None:
    for above in (True, False):
        for strict in (True, False):
            b = bound(above=above, strict=strict, minimum=0.5)
            op = b.describe().split()[0]
            expected = {">": measured > 0.5, ">=": measured >= 0.5, "<": measured < 0.5, "<=": measured <= 0.5}[op]
            assert b.meets(measured) == expected


def test_describe_and_format() -> None:
    assert bound(above=True, strict=True, minimum=0.5).describe() == "> 0.5"
    assert bound(above=True, strict=False, minimum=0.5).describe() == ">= 0.5"
    assert bound(above=False, strict=True, minimum=0.5).describe() == "< 0.5"
    assert bound(above=False, strict=False, minimum=0.5).describe() == "<= 0.5"
    assert bound(minimum=0.05, percent=True).describe() == ">= 5.00%"
    assert bound(minimum=0.0, tolerance=1e-6).describe() == ">= 0 (tolerance 1e-06)"
    assert bound(minimum=0.5).describe(0.75) == ">= 0.75"
    plain = bound(minimum=0.5)
    assert [plain.format(v) for v in (None, 3.0, 0.123456, 1e16)] == ["n/a", "3", "0.1235", "1e+16"]
    assert plain.format(1e15 - 1) == "999999999999999" and plain.format(1e15) == "1e+15"  # whole numbers in full below 1e15
    assert bound(minimum=0.5, percent=True).format(0.1234) == "12.34%"


def test_required_level_falls_back_to_the_highest_defined_below() -> None:
    assert required_level({"minimum": 1.0, "good": 2.0, "strong": 3.0}, "good") == "good"
    assert required_level({"minimum": 1.0, "strong": 3.0}, "good") == "minimum"
    assert required_level({"minimum": 1.0, "good": 2.0}, "strong") == "good"
    assert required_level({"good": 2.0}, "minimum") == "good"  # nothing below: the first defined


def test_bound_of_applies_only_its_own_overrides_at_the_required_level() -> None:
    levels = Levels("check_index", minimum=0.8, good=0.9, strong=0.97, percent=True)
    b = bound_of("ivf_exact_agreement", levels, "good", {("ivf_exact_agreement", "good"): 0.85, ("other", "good"): 0.1})
    assert (b.name, b.level, b.value, b.implies, b.percent) == ("ivf_exact_agreement", "good", 0.85, "check_index", True)
    assert b.levels == {"minimum": 0.8, "good": 0.85, "strong": 0.97}
    with pytest.raises(ValueError, match="defines no level"):
        bound_of("empty", Levels("train_more"), "minimum")


def test_resolve_gives_every_figure_at_the_required_level() -> None:
    for required in LEVEL_NAMES:
        bounds = resolve(required)
        assert set(bounds) == set(GATE_LEVELS)
        r5 = bounds["r_at_5"]
        assert r5.level == required and r5.value == GATE_LEVELS["r_at_5"].defined()[required]
        assert bounds["oracle_exact_r_at_1"].level == "minimum"  # only a minimum is defined
    assert resolve() == resolve("minimum")  # a run's level is the minimum unless --level says otherwise
    overridden = resolve("good", {("r_at_5", "good"): 0.01})
    assert overridden["r_at_5"].value == 0.01 and overridden["echo_rate"].value == GATE_LEVELS["echo_rate"].good


def test_marker_arguments_carry_every_part_of_the_level() -> None:
    levels = Levels("train_more", minimum=0.0, strong=0.2, above=False, strict=True, percent=True, tolerance=1e-6)
    assert levels.marker() == {"minimum": 0.0, "strong": 0.2, "above": False, "strict": True, "percent": True, "tolerance": 1e-6}
    assert levels.with_overrides({"minimum": 0.1}).defined() == {"minimum": 0.1, "strong": 0.2}
