"""The decision gate: what to do after an epoch, computed in code from metrics that must exist.

The public pipeline's gate script read `recall_5` from a dict where the key was `r_at_5`; the
missing key read as 0, so every run "failed" (FAILURE_MODES row 11). Here the metrics are the
attributes of a dataclass with no defaults: a missing metric is a TypeError at construction or an
AttributeError on use, never a silent zero.

Base rules (the public gate), on the R@5 of exact (Flat) search over the whole payload:
    R@5 >= 5%               -> continue
    0 < R@5 < 5%            -> train_more (1-2 more epochs)
    R@5 == 0, delta >= 0.10 -> the public gate said "check the Flat ablation (index problem)"; we
                               have run that ablation: if IVF finds nothing but exact search does,
                               check_index; if exact search finds nothing too, the index is
                               cleared and separation without retrieval points at the data
                               (targets or contexts from another source): check_data
    R@5 == 0, delta < 0.10  -> pivot_two_tower
Where our checks know better:
    IVF finds far fewer truths than exact search      -> check_index, before anything else
    the model does not beat the best trivial baseline -> below_baseline (said, with the figures)
    a high echo rate or an offset peak other than +1 is added to the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ACTIONS = ("continue", "train_more", "check_index", "check_data", "pivot_two_tower", "below_baseline")
GOOD_R_AT_5 = 0.05
DELTA_FOR_INDEX = 0.10
MIN_IVF_AGREEMENT = 0.80  # IVF must find at least this share of the truths exact search finds
HIGH_ECHO = 0.50


@dataclass(frozen=True)
class GateMetrics:
    """The figures the decision reads; every field is required (None only where noted)."""

    r_at_5: float  # exact (Flat) search, held-out eval set
    r_at_1: float
    delta: float  # pos - neg mean cosine on the eval set
    ivf_r_at_5: float | None  # None when no IVF index was searched (e.g. two-tower bank)
    ivf_agreement: float | None  # share of exact top-50 hits the IVF also finds; None if exact finds none
    best_baseline: str
    best_baseline_r_at_5: float
    copy_last_r_at_5: float
    echo_rate: float | None  # None when the eval set has no context keys
    offset_peak: int | None  # None when the eval set has no context keys

    def as_dict(self) -> dict:
        return asdict(self)

    def invalid_figures(self) -> list[str]:
        """Figures no decision may be read from: NaN, or outside their range (a share outside [0, 1],
        a delta outside [-2, 2]). NaN predictions or a broken metric show here first."""
        problems = []
        for name in ("r_at_5", "r_at_1", "ivf_r_at_5", "ivf_agreement", "best_baseline_r_at_5", "copy_last_r_at_5", "echo_rate"):
            value = getattr(self, name)
            if value is not None and not (0.0 <= value <= 1.0):  # NaN fails both comparisons
                problems.append(f"{name} = {value}")
        if not (-2.0 <= self.delta <= 2.0):
            problems.append(f"delta = {self.delta}")
        return problems


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "reason": self.reason}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def decide(m: GateMetrics) -> Decision:
    """The next action and a one-paragraph reason naming the figures it used."""
    notes: list[str] = []
    if m.echo_rate is not None and m.echo_rate >= HIGH_ECHO:
        notes.append(f"echo rate {_pct(m.echo_rate)}: top-1 is usually one of the query's own context chunks")
    if m.offset_peak is not None and m.offset_peak != 1:
        notes.append(f"cosine to the chunk at offset k peaks at k={m.offset_peak:+d}, not +1: the model predicts the wrong position")
    suffix = ("; " + "; ".join(notes)) if notes else ""

    if m.ivf_agreement is not None and m.ivf_agreement < MIN_IVF_AGREEMENT:
        ivf = "n/a" if m.ivf_r_at_5 is None else _pct(m.ivf_r_at_5)
        return Decision("check_index", f"index problem, not a model problem: IVF finds {_pct(m.ivf_agreement)} of the truths exact search finds in its top 50 (IVF R@5 {ivf} vs exact {_pct(m.r_at_5)}); raise nprobe or rebuild the index{suffix}")
    beats = m.r_at_5 > m.best_baseline_r_at_5
    baseline_text = f"best baseline {m.best_baseline} R@5 {_pct(m.best_baseline_r_at_5)} (copy-last {_pct(m.copy_last_r_at_5)})"
    if m.r_at_5 >= GOOD_R_AT_5:
        if not beats:
            return Decision("below_baseline", f"R@5 {_pct(m.r_at_5)} passes the 5% gate but the model does not beat the {baseline_text}: it is no better than copying its context{suffix}")
        return Decision("continue", f"R@5 {_pct(m.r_at_5)} >= 5% and beats the {baseline_text}{suffix}")
    if m.r_at_5 > 0:
        below = "" if beats else f"; it does not beat the {baseline_text} yet"
        return Decision("train_more", f"0 < R@5 {_pct(m.r_at_5)} < 5%: train 1-2 more epochs{below}{suffix}")
    if m.delta >= DELTA_FOR_INDEX:
        return Decision("check_data", f"R@5 0% with separation delta {m.delta:.3f} >= 0.10, and exact (Flat) search finds nothing either, so the index is not the cause: check that training targets and eval contexts come from the payload's encoder (FAILURE_MODES rows 1-2){suffix}")
    return Decision("pivot_two_tower", f"R@5 0% and separation delta {m.delta:.3f} < 0.10: the model does not separate its target from other chunks; pivot to a two-tower model{suffix}")
