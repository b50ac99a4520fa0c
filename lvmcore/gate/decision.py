"""The decision: what to do after an epoch, read from every figure the gate session measured.

The public pipeline's gate script read `recall_5` from a dict where the key was `r_at_5`; the
missing key read as 0 (FAILURE_MODES row 11). Here the figures are the attributes of a dataclass
with no defaults: a missing figure is a TypeError at construction, never a silent zero. Its levels
are the checks' own (`lvmcore.gate.levels`, overrides applied), so `continue` is given exactly when
every gate figure passes at the run's `--level`, and every failing figure leads to the decision it
implies.

The table, in order; the first row whose evidence holds decides, so data problems come before
model problems and model problems before any architecture advice (row 16):

| evidence (a figure past its level) | action | why this row comes here |
|---|---|---|
| provenance recorded by the model disagrees with the payload / eval set | check_data | figures on the wrong payload say nothing |
| eval contexts or targets are not the payload's vectors of their keys | check_data | row 2: separation on foreign contexts is ~0 whatever the model |
| training data not the payload's vectors, or sharing articles / chunks / near-duplicates with the eval set; the model's training articles include eval articles | check_data | rows 1, 5: the held-out figures are not held out |
| oracle R@1 <= 50%, or too few eval rows to tell 5% from 10% R@5 | check_data | the yardstick itself is broken or too short |
| NaN/inf predictions or weights, a figure out of range | check_model | nothing can be read |
| zero, constant, or repeated prediction rows | check_model | not a prediction per row |
| predictions closer to the next/previous row's target across documents, or finding other rows' answers while unrelated to their own input | check_data | predictions filed under the wrong rows |
| predictions that copy the answer, or close most of the gap from the best baseline to the oracle | check_data | a leaked target: "too good to be true" |
| output unrelated to its input (similarity z under its level) | check_model | broken or untrained: no architecture can be judged |
| IVF misses what exact search finds | check_index | an index problem, not a model problem |
| R@5 = 0 with delta >= 0.10 | check_data | separates its rows yet finds nothing among the payload's |
| the training loss in the model's record did not fall by 1% from its first epoch, and a retrieval figure fails | check_training | a model that did not learn says nothing about the architecture or the baselines |
| R@5 = 0 with the top-1 usually its own context (echo past its level) | below_baseline | a copier says nothing about the architecture |
| R@5 = 0, delta < 0.10, output informative, training data checked, a training record whose loss fell | pivot_two_tower | the only row that gives architecture advice |
| R@5 = 0 otherwise | below_baseline | no architecture verdict without that evidence |
| not shown better than the best baseline in either view | below_baseline | row 13 |
| better only with its own context excluded | train_more | a neighbour finder whose context takes the top ranks |
| R@5 under the run's level, low separation, high echo, or an offset peak away from +1 | train_more | learning, not there yet |
| any other gate figure past its level | what that figure implies | |
| nothing past its level | continue | |

`pivot_two_tower` is measurable: the output carries information about its context (the
similarity z of `lvmcore.gate.health.input_information` passes its level: prediction similarities
follow context similarities far beyond row-permuted output), it does not separate its target from
other rows' (delta < 0.10), retrieves nothing (R@5 = 0) and is not a copier (echo under its level), while every data figure passed,
training data was given and checked, the model records at least one trained epoch, and its training record (history.json)
shows the training loss fell by at least 1% from its first recorded epoch to this one. Without that record a checkpoint of
random weights, or of a run whose learning rate was zero, is indistinguishable from an architecture that cannot learn:
`below_baseline`, saying what is missing; with a record whose loss did not fall, `check_training`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from lvmcore.gate.levels import Bound

ACTIONS = ("continue", "train_more", "check_index", "check_data", "check_model", "check_training", "pivot_two_tower", "below_baseline")
DELTA_SEPARATES = 0.10  # delta at or above it: the model separates its own target from other rows' (separation_delta's good level)
LOSS_FELL = 0.01  # the training loss must fall by at least this share from the first recorded epoch for the record to show learning
SHARES = ("r_at_5", "r_at_1", "ivf_r_at_5", "ivf_agreement", "best_baseline_r_at_5", "copy_last_r_at_5", "echo_rate", "excluded_r_at_5", "r_at_5_low", "r_at_5_high")
DIFFERENCES = ("beats_low", "beats_high", "excluded_beats_low", "excluded_beats_high")
ROUTE_SUBJECT = {"checkpoint": "the checkpoint", "adapter": "the checkpoint", "model_file": "the exported program", "predictions": "the predictions file"}


@dataclass(frozen=True)
class GateMetrics:
    """Every figure the decision reads; every field is required (None only where noted: not measurable here)."""

    # retrieval (exact search over the payload, held-out eval rows)
    r_at_5: float
    r_at_1: float
    r_at_5_low: float  # Wilson 95% interval of r_at_5
    r_at_5_high: float
    oracle_r_at_1: float
    delta: float  # pos - neg mean cosine on the eval set
    ivf_r_at_5: float | None  # None when no IVF index was searched (e.g. two-tower bank)
    ivf_agreement: float | None  # share of exact top-50 hits the IVF also finds; None if exact finds none
    best_baseline: str
    best_baseline_r_at_5: float
    copy_last_r_at_5: float
    beats_low: float  # paired 95% interval of (model - best baseline) R@5, raw view
    beats_high: float
    excluded_r_at_5: float | None  # context-excluded view; None without context keys
    excluded_best_baseline: str | None
    excluded_beats_low: float | None
    excluded_beats_high: float | None
    echo_rate: float | None  # None when the eval set has no context keys
    offset_peak: int | None  # None when the eval set has no context keys
    offset_peak_margin: float | None
    train_minus_eval_r_at_5: float | None  # None without predictions on training windows
    # prediction health (lvmcore.gate.health)
    nonfinite_predictions: int
    nonfinite_weights: int | None  # None when the model has no torch weights to read
    zero_rows: int
    constant_rows: int
    repeated_fraction: float
    answer_copy_fraction: float
    oracle_closure: float
    model_cosine: float
    baseline_cosine: float
    information_z: float
    shift_p: float
    shift: int
    shift_rows: int
    shift_closer: int
    elsewhere_share: float
    elsewhere_chance: float
    elsewhere_excess_low: float
    # the gate's inputs (lvmcore.gate.inputs)
    eval_context_aligned: float
    eval_context_cause: str
    eval_target_aligned: float
    eval_target_cause: str
    training_target_aligned: float | None  # None without training data
    training_context_aligned: float | None
    training_cause: str
    article_overlap: float | None
    chunk_overlap: float | None
    near_duplicate: float | None
    eval_rows: int
    rows_needed: int
    # what the model records
    route: str  # checkpoint, adapter, model_file, predictions
    provenance_mismatch: str | None  # recorded provenance vs payload/eval set; None when they agree or nothing is recorded
    leaked_eval_articles: int | None  # eval articles among the recorded training articles; None when not recorded
    trained_epochs: int | None  # epochs the model records; None when it records none
    training_loss: tuple[float, float] | None  # (first, latest) recorded train_loss up to its epoch; None: no record of two epochs' loss

    def as_dict(self) -> dict:
        return asdict(self)

    def figures(self) -> dict[str, float | None]:
        """The gate figures by their level names (`lvmcore.gate.levels.GATE_LEVELS`); None: not measured here."""
        return {
            "gate_eval_context_aligned_fraction": self.eval_context_aligned,
            "gate_eval_target_aligned_fraction": self.eval_target_aligned,
            "gate_training_target_aligned_fraction": self.training_target_aligned,
            "gate_training_context_aligned_fraction": self.training_context_aligned,
            "gate_training_eval_article_overlap": self.article_overlap,
            "gate_training_eval_chunk_overlap": self.chunk_overlap,
            "gate_training_eval_near_duplicate_fraction": self.near_duplicate,
            "gate_eval_rows_beyond_needed": float(self.eval_rows - self.rows_needed),
            "oracle_exact_r_at_1": self.oracle_r_at_1,
            "checkpoint_provenance_disagreements": None if self.provenance_mismatch is None else float(len(self.provenance_mismatch.split("; "))),
            "checkpoint_eval_article_overlap": None if self.leaked_eval_articles is None else float(self.leaked_eval_articles),
            "nonfinite_weights": None if self.nonfinite_weights is None else float(self.nonfinite_weights),
            "nonfinite_predictions": float(self.nonfinite_predictions),
            "prediction_zero_rows": float(self.zero_rows),
            "prediction_constant_rows": float(self.constant_rows),
            "prediction_repeated_fraction": self.repeated_fraction,
            "prediction_answer_copy_fraction": self.answer_copy_fraction,
            "prediction_oracle_closure": self.oracle_closure,
            "row_shift_sign_test_p": self.shift_p,
            "other_rows_truth_excess_lower95": self.elsewhere_excess_low,
            "prediction_input_information_z": self.information_z,
            "ivf_exact_agreement": self.ivf_agreement,
            "r_at_5": self.r_at_5,
            "r_at_5_over_best_baseline_lower95": self.beats_low,
            "context_excluded_r_at_5_over_best_baseline_lower95": self.excluded_beats_low,
            "separation_delta": self.delta,
            "echo_rate": self.echo_rate,
            "offset_peak_margin": self.offset_peak_margin,
            "train_minus_eval_r_at_5": self.train_minus_eval_r_at_5,
        }

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
    failing: list[str] = field(default_factory=list)  # every gate figure past its level, "name = value (required ...)"

    def as_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "failing": list(self.failing)}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _points(low: float, high: float) -> str:
    return f"[{100 * low:+.2f}, {100 * high:+.2f}] points"


@dataclass(frozen=True)
class Evidence:
    """The figures and which of them are past their level: what each row of the table reads."""

    m: GateMetrics
    bounds: dict[str, Bound]
    values: dict[str, float | None]
    failing: dict[str, float | None]  # name -> value, for measured figures past their level

    def fails(self, *names: str) -> list[str]:
        return [name for name in names if name in self.failing]

    def stated(self, name: str) -> str:
        """'name = value (required bound)': a clause from a figure past its level."""
        bound = self.bounds[name]
        return f"{name} = {bound.format(self.values[name])} (required {bound.describe()})"


def evidence(m: GateMetrics, bounds: dict[str, Bound]) -> Evidence:
    values = m.figures()
    failing = {name: value for name, value in values.items() if value is not None and name in bounds and not bounds[name].meets(value)}
    return Evidence(m, bounds, values, failing)


# --------------------------------------------------------------------------- the table's rows


def provenance(e: Evidence) -> str | None:
    if not e.fails("checkpoint_provenance_disagreements"):
        return None
    who = ROUTE_SUBJECT.get(e.m.route, "the model")
    return f"{who} records other data than this payload and eval set ({e.m.provenance_mismatch}): its figures here say nothing about the model; gate it on the payload it was trained for"


def eval_inputs(e: Evidence) -> str | None:
    clauses = []
    if e.fails("gate_eval_context_aligned_fraction"):
        clauses.append(f"the eval contexts are not the payload's vectors of their keys: {e.stated('gate_eval_context_aligned_fraction')}; {e.m.eval_context_cause} (row 2: separation and retrieval on such contexts are noise whatever the model)")
    if e.fails("gate_eval_target_aligned_fraction"):
        clauses.append(f"the eval targets are not the payload's vectors of their keys: {e.stated('gate_eval_target_aligned_fraction')}; {e.m.eval_target_cause}")
    if not clauses:
        return None
    return "; ".join(clauses) + ": rebuild the eval set from the payload by key before reading any model figure"


def training_inputs(e: Evidence) -> str | None:
    clauses = []
    if e.fails("gate_training_target_aligned_fraction", "gate_training_context_aligned_fraction"):
        shown = ", ".join(e.stated(n) for n in e.fails("gate_training_target_aligned_fraction", "gate_training_context_aligned_fraction"))
        clauses.append(f"the training data is not the payload's vectors of its keys: {shown}; {e.m.training_cause} (row 1: the model learned another space)")
    leaks = e.fails("gate_training_eval_article_overlap", "gate_training_eval_chunk_overlap", "gate_training_eval_near_duplicate_fraction")
    if leaks:
        clauses.append(f"the training data overlaps the eval set: {', '.join(e.stated(n) for n in leaks)} (row 5: split by document)")
    if e.fails("checkpoint_eval_article_overlap"):
        who = ROUTE_SUBJECT.get(e.m.route, "the model")
        clauses.append(f"{e.m.leaked_eval_articles} eval article(s) are among the training articles {who} records (row 5)")
    if not clauses:
        return None
    return "; ".join(clauses) + ": the held-out figures are not held out, or the model was trained on other vectors; fix the data, then gate again"


def yardstick(e: Evidence) -> str | None:
    clauses = []
    if e.fails("oracle_exact_r_at_1"):
        clauses.append(f"the truth targets do not retrieve their own keys: {e.stated('oracle_exact_r_at_1')} (duplicated payload keys, or targets that are not payload vectors)")
    if e.fails("gate_eval_rows_beyond_needed"):
        clauses.append(f"the eval set has {e.m.eval_rows} rows; telling R@5 5% from 10% at 95% needs {e.m.rows_needed}: add held-out rows before deciding anything")
    return "; ".join(clauses) or None


def broken_output(e: Evidence) -> str | None:
    invalid = e.m.invalid_figures()
    if invalid:
        return f"no decision can be read from these figures: {'; '.join(invalid)} (NaN weights, a diverged run, or a model whose output is not a vector per row)"
    if e.fails("nonfinite_weights"):
        return f"the model holds NaN or inf weights: {e.stated('nonfinite_weights')}; training diverged before it was saved"
    names = e.fails("prediction_zero_rows", "prediction_constant_rows", "prediction_repeated_fraction")
    if not names:
        return None
    return (f"the output is not a prediction per row: {', '.join(e.stated(n) for n in names)} of {e.m.eval_rows} rows "
            "(a zero vector has no direction to search with; one vector for different contexts ignores them): a broken model, export or prediction script")


def misfiled_rows(e: Evidence) -> str | None:
    clauses = []
    if e.fails("row_shift_sign_test_p"):
        clauses.append(f"at {e.m.shift_closer} of {e.m.shift_rows} rows whose row {e.m.shift:+d} is another document, the prediction is closer to that row's target than to its own ({e.stated('row_shift_sign_test_p')}): the predictions are shifted by {e.m.shift:+d} row(s)")
    if e.fails("other_rows_truth_excess_lower95") and e.fails("prediction_input_information_z"):  # a model that follows its own input is filed right
        clauses.append(f"{_pct(e.m.elsewhere_share)} of rows retrieve another eval row's truth from another document in their top 5, against {_pct(e.m.r_at_5)} their own and {_pct(e.m.elsewhere_chance)} by chance ({e.stated('other_rows_truth_excess_lower95')}): the predictions belong to other rows")
    if not clauses:
        return None
    return "; ".join(clauses) + "; write row i's prediction for eval row i (the eval-set fingerprint cannot see row order)"


def leaked_answer(e: Evidence) -> str | None:
    clauses = []
    if e.fails("prediction_answer_copy_fraction"):
        clauses.append(f"predictions equal their own truth vector where no context chunk does ({e.stated('prediction_answer_copy_fraction')})")
    if e.fails("prediction_oracle_closure"):
        clauses.append(f"mean cos(prediction, target) {e.m.model_cosine:.3f} against {e.m.baseline_cosine:.3f} for the best baseline closes {100 * e.m.oracle_closure:.0f}% of the gap to the oracle ({e.stated('prediction_oracle_closure')})")
    if not clauses:
        return None
    return (f"too good to be true: {'; '.join(clauses)}; R@1 {_pct(e.m.r_at_1)} against the oracle's {_pct(e.m.oracle_r_at_1)}: "
            "the targets (or their payload rows) reached the predictions; check the prediction script and the model's inputs for the truth")


def no_information(e: Evidence) -> str | None:
    if not e.fails("prediction_input_information_z"):
        return None
    return (f"the output carries no information about its input: prediction similarities follow context similarities no better than row-permuted output "
            f"({e.stated('prediction_input_information_z')}): a broken or untrained model, random output, or rows filed out of order; no architecture can be judged from it")


def index(e: Evidence) -> str | None:
    if not e.fails("ivf_exact_agreement"):
        return None
    return f"index problem, not a model problem: IVF finds {_pct(e.m.ivf_agreement)} of the truths exact search finds in its top 50 (IVF R@5 {_pct(e.m.ivf_r_at_5)} vs exact {_pct(e.m.r_at_5)}); raise nprobe or rebuild the index"


def finds_nothing(e: Evidence) -> bool:
    return "r_at_5" in e.failing and not e.bounds["r_at_5"].meets(e.m.r_at_5, e.bounds["r_at_5"].levels.get("minimum", 0.0))


def separates_but_finds_nothing(e: Evidence) -> str | None:
    if not finds_nothing(e) or e.m.delta < DELTA_SEPARATES:
        return None
    return (f"R@5 0% with separation delta {e.m.delta:.3f} >= {DELTA_SEPARATES:.2f}, and exact (Flat) search finds nothing either, so the index is not the cause: "
            "the predictions separate the eval rows yet land away from every payload chunk; check that training targets come from the payload's encoder (row 1)")


RETRIEVAL_FIGURES = ("r_at_5", "r_at_5_over_best_baseline_lower95", "context_excluded_r_at_5_over_best_baseline_lower95", "separation_delta")


def did_not_learn(e: Evidence) -> str | None:
    """The training record says the loss never fell, and the model fails a retrieval figure: a training problem first."""
    if e.m.training_loss is None or loss_fell(e.m.training_loss):
        return None
    failing = [e.stated(name) for name in RETRIEVAL_FIGURES if name in e.failing]
    if not failing:
        return None
    first, latest = e.m.training_loss
    return (f"its recorded training loss did not fall ({first:.4f} at the first recorded epoch, {latest:.4f} at this one; at least {LOSS_FELL:.0%} expected) "
            f"and it fails its retrieval gates ({'; '.join(failing)}): the model did not learn, which says nothing about the architecture or the data; "
            "check the training run (learning rate, the loss, what the loader feeds it)")


def retrieves_nothing(e: Evidence) -> tuple[str, str] | None:
    """(action, reason) for R@5 = 0, the only place architecture advice can come from."""
    if not finds_nothing(e):
        return None
    if e.fails("echo_rate"):
        return "below_baseline", (f"R@5 0%: its top-1 is usually one of its own context chunks ({e.stated('echo_rate')}): it copies its input, "
                                  "which says nothing about what the architecture can learn (row 13)")
    missing = []
    if e.m.training_target_aligned is None:
        missing.append("no training data was given to check (--train-data)")
    if not e.m.trained_epochs:
        missing.append(f"{ROUTE_SUBJECT.get(e.m.route, 'the model')} records no trained epoch")
    if e.m.training_loss is None:
        missing.append("no training record shows its loss fell (history.json beside it with two epochs' train_loss): "
                       "random weights, or a run that never learned, retrieve nothing just the same")
    if missing:
        return "below_baseline", (f"R@5 0% and separation delta {e.m.delta:.3f} < {DELTA_SEPARATES:.2f} with informative output (similarity z {e.m.information_z:.1f}), "
                                  f"but no architecture verdict: {'; '.join(missing)}")
    first, latest = e.m.training_loss  # type: ignore[misc]  (not None: checked above)
    return "pivot_two_tower", (f"R@5 0% and separation delta {e.m.delta:.3f} < {DELTA_SEPARATES:.2f}, although its output follows its input (similarity z {e.m.information_z:.1f}), "
                               f"the data checks pass and it trained for {e.m.trained_epochs} epoch(s) with its training loss falling ({first:.4f} -> {latest:.4f}): "
                               "the single-tower model does not learn the retrieval geometry; consider a two-tower model")


def loss_fell(span: tuple[float, float]) -> bool:
    """The latest recorded training loss is at least LOSS_FELL below the first (relative to its size)."""
    first, latest = span
    return latest <= first - LOSS_FELL * abs(first)


def _comparison(e: Evidence) -> str:
    m = e.m
    raw = f"R@5 {_pct(m.r_at_5)} vs best baseline {m.best_baseline} {_pct(m.best_baseline_r_at_5)}, paired difference {_points(m.beats_low, m.beats_high)}"
    if m.excluded_r_at_5 is not None and m.excluded_beats_low is not None and m.excluded_beats_high is not None:
        raw += f"; context-excluded R@5 {_pct(m.excluded_r_at_5)} vs {m.excluded_best_baseline}, difference {_points(m.excluded_beats_low, m.excluded_beats_high)}"
    return raw


def below_baseline(e: Evidence) -> str | None:
    beats_raw = "r_at_5_over_best_baseline_lower95" not in e.failing
    beats_excluded = e.m.excluded_beats_low is not None and "context_excluded_r_at_5_over_best_baseline_lower95" not in e.failing
    if beats_raw or beats_excluded:
        return None
    how = "its top-1 is usually one of its own context chunks (" + e.stated("echo_rate") + "): it copies its input" if e.fails("echo_rate") else "it is no better than copying or averaging its context"
    return f"not shown better than the best context-only baseline in either view: {_comparison(e)}; {how} (row 13)"


def learning(e: Evidence) -> str | None:
    clauses = []
    if "r_at_5_over_best_baseline_lower95" in e.failing:
        clauses.append(f"it beats the baseline only with its own context excluded ({_comparison(e)}): its own context still takes the top ranks")
    if e.fails("r_at_5"):
        r5 = e.bounds["r_at_5"]
        clauses.append(f"R@5 {_pct(e.m.r_at_5)} (95% interval {_pct(e.m.r_at_5_low)}-{_pct(e.m.r_at_5_high)}) is under the {r5.level} level {r5.describe()}")
    if e.fails("separation_delta"):
        clauses.append(f"it barely separates its own target from other rows' ({e.stated('separation_delta')})")
    if e.fails("echo_rate"):
        clauses.append(f"its top-1 is one of its own context chunks too often ({e.stated('echo_rate')})")
    if e.fails("offset_peak_margin"):
        clauses.append(f"its cosine to the chunk at offset k peaks at k={e.m.offset_peak:+d}, not at the next chunk ({e.stated('offset_peak_margin')})")
    if not clauses:
        return None
    return "; ".join(clauses) + ": train further (and penalise echo if it copies)"


Rule = tuple[str, Callable[[Evidence], "str | None"]]
TABLE: tuple[Rule, ...] = (
    ("check_data", provenance),
    ("check_data", eval_inputs),
    ("check_data", training_inputs),
    ("check_data", yardstick),
    ("check_model", broken_output),
    ("check_data", misfiled_rows),
    ("check_data", leaked_answer),
    ("check_model", no_information),
    ("check_index", index),
)
BEFORE_RETRIEVAL: tuple[Rule, ...] = (
    ("check_data", separates_but_finds_nothing),
    ("check_training", did_not_learn),
)
AFTER_RETRIEVAL: tuple[Rule, ...] = (
    ("below_baseline", below_baseline),
    ("train_more", learning),
)
PRIORITY = ("check_data", "check_model", "check_training", "check_index", "pivot_two_tower", "below_baseline", "train_more")


def decide(m: GateMetrics, bounds: dict[str, Bound]) -> Decision:
    """The next action, and a reason built only from figures past their level (see the module docstring's table)."""
    e = evidence(m, bounds)
    failing = [e.stated(name) for name in e.failing]
    for action, rule in TABLE:
        reason = rule(e)
        if reason:
            return Decision(action, reason, failing)
    for action, rule in BEFORE_RETRIEVAL:
        reason = rule(e)
        if reason:
            return Decision(action, reason, failing)
    nothing = retrieves_nothing(e)
    if nothing:
        return Decision(*nothing, failing)
    for action, rule in AFTER_RETRIEVAL:
        reason = rule(e)
        if reason:
            return Decision(action, reason, failing)
    if e.failing:  # a figure no row above reads: its own implied decision
        implied = sorted(e.failing, key=lambda name: PRIORITY.index(bounds[name].implies) if bounds[name].implies in PRIORITY else len(PRIORITY))
        first = implied[0]
        return Decision(bounds[first].implies, "; ".join(e.stated(name) for name in implied), failing)
    level = bounds["r_at_5"].level if "r_at_5" in bounds else "required"
    return Decision("continue", f"every gate figure passes at the {level} level: it beats the best baseline ({_comparison(e)}), echo {_pct(m.echo_rate)}, similarity z {m.information_z:.1f}", failing)
