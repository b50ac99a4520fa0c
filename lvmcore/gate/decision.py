"""The decision gate: what to do after an epoch, computed in code from metrics that must exist.

The public pipeline's gate script read `recall_5` from a dict where the key was `r_at_5`; the
missing key read as 0, so every run "failed" (FAILURE_MODES row 11). Here the metrics are the
attributes of a dataclass with no defaults: a missing metric is a TypeError at construction,
never a silent zero.

Rules, in order; the first that applies decides (each names its figures):
    provenance of the checkpoint disagrees with the payload/eval set -> check_data
    the checkpoint's training articles include eval articles          -> check_data (leakage)
    predictions are not finite, or a figure is NaN / out of range     -> check_model
    the eval set is too small to tell 5% from 10% R@5                 -> check_data (more rows)
    IVF finds far fewer truths than exact search                      -> check_index
    R@5 == 0 with delta >= 0.10 (exact search finds nothing either)   -> check_data
    R@5 == 0 with delta < 0.10                                        -> pivot_two_tower
    the model beats the best baseline in neither view                 -> below_baseline
    it beats it only with its own context excluded (a neighbour finder) -> train_more
    it beats it raw but R@5 < 5%                                      -> train_more
    it beats it raw and R@5 >= 5%                                     -> continue
"Beats" is a paired 95% interval of the R@5 difference above 0 (`lvmcore.gate.comparison`), so no
`continue` is ever given on an interval that includes the baseline. A high echo rate or an offset
peak other than +1 is added to the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lvmcore.gate.intervals import rows_to_resolve

ACTIONS = ("continue", "train_more", "check_index", "check_data", "check_model", "pivot_two_tower", "below_baseline")
R_AT_5_LEVELS = {"minimum": 0.0, "good": 0.05, "strong": 0.10}  # the levels of the r_at_5 gate (checks/test_gate_retrieval.py)
GOOD_R_AT_5 = R_AT_5_LEVELS["good"]
DELTA_FOR_INDEX = 0.10
MIN_IVF_AGREEMENT = 0.80  # IVF must find at least this share of the truths exact search finds
HIGH_ECHO = 0.50
SHARES = ("r_at_5", "r_at_1", "ivf_r_at_5", "ivf_agreement", "best_baseline_r_at_5", "copy_last_r_at_5", "echo_rate", "excluded_r_at_5", "r_at_5_low", "r_at_5_high")
DIFFERENCES = ("beats_low", "beats_high", "excluded_beats_low", "excluded_beats_high")


@dataclass(frozen=True)
class GateMetrics:
    """The figures the decision reads; every field is required (None only where noted)."""

    r_at_5: float  # exact (Flat) search, held-out eval set, raw view
    r_at_1: float
    delta: float  # pos - neg mean cosine on the eval set
    ivf_r_at_5: float | None  # None when no IVF index was searched (e.g. two-tower bank)
    ivf_agreement: float | None  # share of exact top-50 hits the IVF also finds; None if exact finds none
    best_baseline: str
    best_baseline_r_at_5: float
    copy_last_r_at_5: float
    echo_rate: float | None  # None when the eval set has no context keys
    offset_peak: int | None  # None when the eval set has no context keys
    r_at_5_low: float  # Wilson 95% interval of r_at_5
    r_at_5_high: float
    beats_low: float  # paired 95% interval of (model - best baseline) R@5, raw view
    beats_high: float
    excluded_r_at_5: float | None  # context-excluded view; None without context keys
    excluded_best_baseline: str | None
    excluded_beats_low: float | None
    excluded_beats_high: float | None
    model_kind: str  # lvmcore.gate.comparison.model_kind
    nonfinite_predictions: int  # eval rows whose prediction held NaN or inf
    eval_rows: int
    rows_needed: int  # eval rows needed to tell 5% from 10% R@5 (lvmcore.gate.intervals.rows_to_resolve)
    provenance_mismatch: str | None  # checkpoint vs payload/eval set; None when they agree or nothing is recorded
    leaked_eval_articles: int | None  # eval articles among the checkpoint's training articles; None when not recorded

    def as_dict(self) -> dict:
        return asdict(self)

    def invalid_figures(self) -> list[str]:
        """Figures no decision may be read from: NaN, or outside their range (a share outside [0, 1], a
        difference outside [-1, 1], a delta outside [-2, 2]), and non-finite predictions."""
        problems = [f"{name} = {getattr(self, name)}" for name in SHARES if getattr(self, name) is not None and not (0.0 <= getattr(self, name) <= 1.0)]
        problems += [f"{name} = {getattr(self, name)}" for name in DIFFERENCES if getattr(self, name) is not None and not (-1.0 <= getattr(self, name) <= 1.0)]
        if not (-2.0 <= self.delta <= 2.0):  # NaN fails every comparison
            problems.append(f"delta = {self.delta}")
        if self.nonfinite_predictions:
            problems.insert(0, f"{self.nonfinite_predictions} of {self.eval_rows} predictions hold NaN or inf")
        return problems


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "reason": self.reason}


def eval_rows_needed() -> int:
    """Eval rows for a model at the 'good' R@5 level to be told at 95% (Wilson) from 'strong' and from
    'minimum' (`lvmcore.gate.intervals.rows_to_resolve`; 153 rows, the 5%-vs-10% bound binding)."""
    good = R_AT_5_LEVELS["good"]
    return max(rows_to_resolve(good, R_AT_5_LEVELS["strong"]), rows_to_resolve(good, R_AT_5_LEVELS["minimum"]))


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _points(low: float, high: float) -> str:
    return f"[{100 * low:+.2f}, {100 * high:+.2f}] points"


def decide(m: GateMetrics) -> Decision:
    """The next action and a one-paragraph reason naming the figures it used."""
    notes: list[str] = []
    if m.echo_rate is not None and m.echo_rate >= HIGH_ECHO:
        notes.append(f"echo rate {_pct(m.echo_rate)}: top-1 is usually one of the query's own context chunks")
    if m.offset_peak is not None and m.offset_peak != 1:
        notes.append(f"cosine to the chunk at offset k peaks at k={m.offset_peak:+d}, not +1: the model predicts the wrong position")
    suffix = ("; " + "; ".join(notes)) if notes else ""

    if m.provenance_mismatch:
        return Decision("check_data", f"the checkpoint was trained on other data than this payload and eval set ({m.provenance_mismatch}): its figures here say nothing about the model; gate it on the payload it was trained for")
    if m.leaked_eval_articles:
        return Decision("check_data", f"{m.leaked_eval_articles} eval article(s) are among the checkpoint's training articles (row 5): the held-out figures are not held out; rebuild the split by document")
    invalid = m.invalid_figures()
    if invalid:
        return Decision("check_model", f"no decision can be read from these figures: {'; '.join(invalid)} (NaN weights, a diverged run, or a model whose output is not a vector per row)")
    if m.eval_rows < m.rows_needed:
        return Decision("check_data", f"the eval set has {m.eval_rows} rows; telling R@5 5% from 10% at 95% needs {m.rows_needed}: add held-out rows before deciding anything")
    if m.ivf_agreement is not None and m.ivf_agreement < MIN_IVF_AGREEMENT:
        ivf = "n/a" if m.ivf_r_at_5 is None else _pct(m.ivf_r_at_5)
        return Decision("check_index", f"index problem, not a model problem: IVF finds {_pct(m.ivf_agreement)} of the truths exact search finds in its top 50 (IVF R@5 {ivf} vs exact {_pct(m.r_at_5)}); raise nprobe or rebuild the index{suffix}")
    if m.r_at_5 == 0:
        if m.delta >= DELTA_FOR_INDEX:
            return Decision("check_data", f"R@5 0% with separation delta {m.delta:.3f} >= 0.10, and exact (Flat) search finds nothing either, so the index is not the cause: check that training targets and eval contexts come from the payload's encoder (FAILURE_MODES rows 1-2){suffix}")
        return Decision("pivot_two_tower", f"R@5 0% and separation delta {m.delta:.3f} < 0.10: the model does not separate its target from other chunks; pivot to a two-tower model{suffix}")
    raw = f"R@5 {_pct(m.r_at_5)} vs best baseline {m.best_baseline} {_pct(m.best_baseline_r_at_5)}, paired difference {_points(m.beats_low, m.beats_high)}"
    excluded = "" if m.excluded_r_at_5 is None else (
        f"; context-excluded R@5 {_pct(m.excluded_r_at_5)} vs {m.excluded_best_baseline}, difference {_points(m.excluded_beats_low, m.excluded_beats_high)}")
    beats_raw = m.beats_low > 0
    beats_excluded = m.excluded_beats_low is not None and m.excluded_beats_low > 0
    if not beats_raw and not beats_excluded:
        return Decision("below_baseline", f"the model ({m.model_kind}) does not beat the best context-only baseline in either view: {raw}{excluded}; it copies or averages its input instead of predicting (row 13){suffix}")
    if not beats_raw:
        return Decision("train_more", f"a {m.model_kind}: it beats the baseline only with its own context excluded ({raw}{excluded}); train further or penalise echo before relying on raw retrieval{suffix}")
    if m.r_at_5 < GOOD_R_AT_5:
        return Decision("train_more", f"it beats the best baseline ({raw}) but R@5 {_pct(m.r_at_5)} (95% interval {_pct(m.r_at_5_low)}-{_pct(m.r_at_5_high)}) is under 5%: train 1-2 more epochs{suffix}")
    return Decision("continue", f"a {m.model_kind}: R@5 {_pct(m.r_at_5)} >= 5% and it beats the best baseline ({raw}{excluded}){suffix}")
