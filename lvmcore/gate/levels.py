"""The one home of every gate figure's levels, and the decision each figure implies when it fails.

The gate checks' `@pytest.mark.threshold` markers are built from this table (`GATE_LEVELS[name].marker()`),
`--threshold NAME.LEVEL=VALUE` and the `lvm_thresholds` ini option override it in one place
(`resolve`), and the decision (`lvmcore.gate.decision.decide`) compares the same figures with the same
resolved bounds: a check that fails at the chosen `--level` is always a decision other than
`continue`, and `continue` is only given when every one of them passes.

`tolerance` widens a bound by a stated amount for figures that are differences of floats (the
offset sweep's margin ties at -6e-08 when two offsets hold the same chunk): it is part of the level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

LEVEL_NAMES = ("minimum", "good", "strong")


@dataclass(frozen=True)
class Levels:
    """A figure's levels, its direction, and what its failure implies for the decision."""

    implies: str  # the decision a failure at the required level leads to (see lvmcore.gate.decision.ACTIONS)
    minimum: float | None = None
    good: float | None = None
    strong: float | None = None
    above: bool = True  # True: the figure must be >= (or > when strict) the level; False: <= (or <)
    strict: bool = False
    percent: bool = False
    tolerance: float = 0.0

    def defined(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in LEVEL_NAMES if getattr(self, name) is not None}

    def marker(self) -> dict[str, Any]:
        """Keyword arguments of the `threshold` marker (the figure's name goes first, positionally)."""
        return {**self.defined(), "above": self.above, "strict": self.strict, "percent": self.percent, "tolerance": self.tolerance}

    def with_overrides(self, overrides: dict[str, float]) -> "Levels":
        return replace(self, **overrides)


@dataclass(frozen=True)
class Bound:
    """One figure's level as this run requires it: the comparison every check and the decision make."""

    name: str
    level: str  # the level required (or the highest defined below it)
    value: float
    above: bool
    strict: bool
    percent: bool
    tolerance: float
    implies: str
    levels: dict[str, float] = field(default_factory=dict)

    def meets(self, measured: float | None, value: float | None = None) -> bool:
        """True when `measured` reaches the bound (None and NaN never do)."""
        bound = self.value if value is None else value
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            return False
        if self.above:
            bound -= self.tolerance
            return measured > bound if self.strict else measured >= bound
        bound += self.tolerance
        return measured < bound if self.strict else measured <= bound

    def reached(self, measured: float | None) -> str | None:
        """The highest defined level the figure meets (levels are nested), or None."""
        best = None
        for level, value in self.levels.items():
            if self.meets(measured, value):
                best = level
        return best

    def format(self, measured: float | None) -> str:
        if measured is None:
            return "n/a"
        if self.percent:
            return f"{100 * measured:.2f}%"
        if float(measured).is_integer() and abs(measured) < 1e15:
            return f"{int(measured)}"
        return f"{measured:.4g}"

    def describe(self, value: float | None = None) -> str:
        op = (">" if self.strict else ">=") if self.above else ("<" if self.strict else "<=")
        tolerance = f" (tolerance {self.tolerance:g})" if self.tolerance else ""
        return f"{op} {self.format(self.value if value is None else value)}{tolerance}"


def required_level(levels: dict[str, float], required: str) -> str:
    """The required level, or the highest defined level below it when the figure lacks it."""
    if required in levels:
        return required
    below = [level for level in LEVEL_NAMES[: LEVEL_NAMES.index(required)] if level in levels]
    return below[-1] if below else next(iter(levels))


def bound_of(name: str, levels: Levels, required: str, overrides: dict[tuple[str, str], float] | None = None) -> Bound:
    """The resolved bound of one figure: its levels with the overrides for `name`, at the required level."""
    changed = {level: value for (figure, level), value in (overrides or {}).items() if figure == name}
    resolved = levels.with_overrides(changed).defined()
    if not resolved:
        raise ValueError(f"threshold {name!r} defines no level (minimum, good or strong)")
    level = required_level(resolved, required)
    return Bound(name, level, resolved[level], levels.above, levels.strict, levels.percent, levels.tolerance, levels.implies, resolved)


def resolve(required: str = "minimum", overrides: dict[tuple[str, str], float] | None = None) -> dict[str, Bound]:
    """Every gate figure's bound for a run at `required` level with `overrides` {(name, level): value}."""
    return {name: bound_of(name, levels, required, overrides) for name, levels in GATE_LEVELS.items()}


def eval_rows_needed() -> int:
    """Eval rows for a model at the 'good' R@5 level to be told at 95% (Wilson) from 'strong' and from
    'minimum' (`lvmcore.gate.intervals.rows_to_resolve`; 153 rows, the 5%-vs-10% bound binding)."""
    from lvmcore.gate.intervals import rows_to_resolve

    r5 = GATE_LEVELS["r_at_5"]
    return max(rows_to_resolve(r5.good, r5.strong), rows_to_resolve(r5.good, r5.minimum))


R_AT_5 = Levels("train_more", minimum=0.0, good=0.05, strong=0.10, strict=True, percent=True)
R_AT_5_LEVELS = R_AT_5.defined()

GATE_LEVELS: dict[str, Levels] = {
    # the gate's own inputs (lvmcore.gate.inputs): measured at gate time, whatever plumbing said
    "gate_eval_context_aligned_fraction": Levels("check_data", minimum=1.0, percent=True),
    "gate_eval_target_aligned_fraction": Levels("check_data", minimum=1.0, percent=True),
    "gate_training_target_aligned_fraction": Levels("check_data", minimum=1.0, percent=True),
    "gate_training_context_aligned_fraction": Levels("check_data", minimum=1.0, percent=True),
    "gate_training_eval_article_overlap": Levels("check_data", minimum=0.0, above=False, percent=True),
    "gate_training_eval_chunk_overlap": Levels("check_data", minimum=0.0, above=False, percent=True),
    "gate_training_eval_near_duplicate_fraction": Levels("check_data", minimum=0.0, above=False, percent=True),
    "gate_eval_rows_beyond_needed": Levels("check_data", minimum=0),
    "oracle_exact_r_at_1": Levels("check_data", minimum=0.5, strict=True, percent=True),
    # what the model under test records (lvmcore.gate.record_checks)
    "checkpoint_provenance_disagreements": Levels("check_data", minimum=0, above=False),
    "checkpoint_eval_article_overlap": Levels("check_data", minimum=0, above=False),
    "nonfinite_weights": Levels("check_model", minimum=0, above=False),
    "nonfinite_predictions": Levels("check_model", minimum=0, above=False),
    # prediction health (lvmcore.gate.health)
    "prediction_zero_rows": Levels("check_model", minimum=0, above=False),
    "prediction_constant_rows": Levels("check_model", minimum=0, above=False),
    "prediction_repeated_fraction": Levels("check_model", minimum=0.05, good=0.01, strong=0.0, above=False, percent=True),
    "prediction_answer_copy_fraction": Levels("check_data", minimum=0.01, good=0.0, above=False, percent=True),
    "prediction_oracle_closure": Levels("check_data", minimum=0.8, above=False),  # a leak at cos 0.95 closes ~0.9; an honest model of a near-deterministic synthetic bank 0.75, a GRU on text < 0
    "row_shift_sign_test_p": Levels("check_data", minimum=0.01),
    "other_rows_truth_excess_lower95": Levels("check_data", minimum=0.40, above=False, percent=True),  # shuffled predictions 0.49-0.62, random output -0.33 to +0.30 (hubs); read only when the output ignores its own input
    "prediction_input_information_z": Levels("check_model", minimum=5.0),
    # the training record (checks/test_gate_training_record.py)
    "negatives_per_positive_over_batch": Levels("check_training", minimum=0),
    "negatives_shortfall_vs_configured_loss": Levels("check_training", minimum=0, above=False),
    "lr_trace_max_relative_error": Levels("check_training", minimum=1e-6, above=False),
    # the index
    "ivf_exact_agreement": Levels("check_index", minimum=0.80, good=0.90, strong=0.97, percent=True),
    # retrieval and what the model is
    "r_at_5": R_AT_5,
    "r_at_5_over_best_baseline_lower95": Levels("below_baseline", minimum=0.0, strict=True, percent=True),
    "context_excluded_r_at_5_over_best_baseline_lower95": Levels("below_baseline", minimum=0.0, strict=True, percent=True),
    "separation_delta": Levels("train_more", minimum=0.05, good=0.10, strong=0.15, strict=True),
    "echo_rate": Levels("train_more", minimum=0.50, good=0.25, strong=0.10, above=False, percent=True),
    "offset_peak_margin": Levels("train_more", minimum=0.0, strict=True, tolerance=1e-6),
    "train_minus_eval_r_at_5": Levels("check_model", minimum=0.20, good=0.10, strong=0.05, above=False, percent=True),
}
