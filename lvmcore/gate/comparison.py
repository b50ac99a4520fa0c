"""Model against its best baseline on the same rows, in two views, and what that makes the model.

Two views of the same top-50 lists: **raw** (every payload chunk is a candidate) and
**context-excluded** (the query's own C context chunks removed from its candidates). Copy-last
ties raw R@5 with a model that merely copies, because rank 1 is always its own last chunk; with
the context excluded the same lists say whether the model finds better neighbours than copying.

"Beats" means the paired 95% interval of (model hit@5 - baseline hit@5) over the same rows has
its lower bound above 0 (`lvmcore.gate.intervals.paired_difference`): a one-row margin never wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lvmcore.gate.intervals import PairedDifference, paired_difference
from lvmcore.gate.levels import GATE_LEVELS
from lvmcore.search.hits import hits_at

COMPARE_K = 5
HIGH_ECHO = GATE_LEVELS["echo_rate"].minimum  # top-1 is the query's own context chunk for at least half the rows: it copies
VIEWS = ("raw", "context_excluded")


@dataclass(frozen=True)
class Comparison:
    """The model against the best baseline of one view, at R@5, paired over the same eval rows."""

    view: str  # "raw" or "context_excluded"
    baseline: str
    model_r_at_5: float
    baseline_r_at_5: float
    paired: PairedDifference

    @property
    def beats(self) -> bool:
        return self.paired.beats()

    def as_dict(self) -> dict[str, Any]:
        return {"view": self.view, "baseline": self.baseline, "model_r_at_5": self.model_r_at_5,
                "baseline_r_at_5": self.baseline_r_at_5, "beats": self.beats, **self.paired.as_dict()}

    def sentence(self) -> str:
        low, high = self.paired.interval.low, self.paired.interval.high
        word = "beats" if self.beats else "does not beat"
        return (f"{self.view.replace('_', '-')} R@5 {100 * self.model_r_at_5:.1f}% vs {self.baseline} {100 * self.baseline_r_at_5:.1f}%: "
                f"difference {100 * self.paired.difference:+.2f} points, 95% interval [{100 * low:+.2f}, {100 * high:+.2f}] -> {word} it")


def best_baseline(baseline_ranks: dict[str, np.ndarray], cosines: dict[str, float] | None = None) -> str:
    """THE best baseline: the highest R@5, ties broken by the higher mean cosine to the target, then by the first named."""
    cosines = cosines or {}
    names = list(baseline_ranks)
    return max(names, key=lambda name: (hits_at(baseline_ranks[name], COMPARE_K).mean(), cosines.get(name, 0.0), -names.index(name)))


def compare_to_best(view: str, model_ranks: np.ndarray, baseline_ranks: dict[str, np.ndarray], seed: int = 0, cosines: dict[str, float] | None = None) -> Comparison:
    """The paired comparison against `best_baseline` of this view."""
    best = best_baseline(baseline_ranks, cosines)
    model_hits, best_hits = hits_at(model_ranks, COMPARE_K), hits_at(baseline_ranks[best], COMPARE_K)
    return Comparison(view, best, float(model_hits.mean()), float(best_hits.mean()), paired_difference(model_hits, best_hits, seed=seed))


def model_kind(raw: Comparison, excluded: Comparison | None, echo: float | None, high_echo: float = HIGH_ECHO) -> tuple[str, str]:
    """(kind, sentence): a predictor, an echoing predictor, a better neighbour finder, a copier, or no better than the baselines.

    high_echo: the echo level the run requires (`lvmcore.gate.levels`, overrides applied)."""
    echoes = echo is not None and echo >= high_echo
    echo_text = "n/a" if echo is None else f"{100 * echo:.0f}%"
    if raw.beats:
        if echoes:
            return "echoing predictor", f"it beats the best baseline on raw retrieval, but its top-1 is one of its own context chunks for {echo_text} of the rows"
        return "predictor", f"it beats the best baseline on raw retrieval with a low echo rate ({echo_text}): it predicts the next chunk"
    if excluded is not None and excluded.beats:
        return "better neighbour finder", ("it ties or loses on raw retrieval but beats the best baseline once the query's own context chunks are excluded: "
                                           f"it finds better neighbours than copying, yet its own context still takes the top ranks (echo {echo_text})")
    if echoes:
        return "copier", f"it does not beat the best baseline in either view and its top-1 is its own context for {echo_text} of the rows: it learned to copy"
    return "no better than the baselines", "it does not beat the best baseline in either view"
