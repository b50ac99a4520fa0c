"""A run report from what the checks recorded: `report.md`, PNG plots, and the decision.

The recorder (`fixtures/recorder.py`) collects every record of a subject (a checkpoint's name, or
"plumbing") and calls `write_report(directory, report)` before it writes `report.json`. This module
adds `report["decision"]` (the training module reads it), draws the plots from the one typed
`GateFigures` record, and writes the Markdown. It reads no artifact except `history.json` for
the training curves. The report's text is made here too: the example rows with their chunks' texts
(`examples`, from the loaded payload, called by `lvmcore.gate.evaluate`) and the histogram bins of
the separation plot (`HIST_BINS`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.history import TrainingHistory, read_history
from lvmcore.artifacts.payload import Payload
from lvmcore.errors import ArtifactError
from lvmcore.files import write_atomic
from lvmcore.gate.decision import PRIORITY, Decision, GateMetrics
from lvmcore.sampling import sample_rows

PLOT_DPI = 90
HIST_BINS = np.linspace(-1.0, 1.0, 81)  # the separation plot's bins of cos(pred, target)
EXAMPLE_ROWS = 5  # eval rows shown with their texts
TEXT_CHARS = 240  # characters of each chunk's text shown


FIGURES_RECORD = "gate_figures"  # the record whose details are a `GateFigures`
DECISION_RECORD = "decision"  # the record `test_decision` writes: {action, reason, metrics}


@dataclass
class GateFigures:
    """Everything a gate report shows beyond the checks' own rows: the typed data of its tables and plots.

    Built by `GateEvaluation.figures` and recorded once per checkpoint as the `gate_figures`
    record; the report reads only this (and the decision), never a check's record by name, so
    renaming or re-thresholding a check cannot drop a table or a plot.
    """

    query_sets: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> QuerySetResult.summary()
    separation: dict[str, Any] = field(default_factory=dict)  # asdict(Separation)
    offset_sweep: dict[str, float] = field(default_factory=dict)  # "k" -> mean cos(pred, chunk at k)
    offset_sweep_copy_last: dict[str, float] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    searched: dict[str, int] = field(default_factory=dict)
    nprobe: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # GateMetrics.as_dict()
    history_path: str | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)  # path, epoch, step, metrics (training's own figures)
    hist_edges: list[float] = field(default_factory=list)
    pos_hist: list[int] = field(default_factory=list)
    neg_hist: list[int] = field(default_factory=list)
    recall_curves: dict[str, list[float]] = field(default_factory=dict)  # query set -> R@k, k = 1..50, exact search
    ivf_curve: list[float] = field(default_factory=list)  # the model's R@k on IVF
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)  # view -> Comparison.as_dict()
    model_kind: str = ""  # predictor, echoing predictor, better neighbour finder, copier, no better than the baselines
    model_kind_sentence: str = ""
    row_ranks: dict[str, list[int]] = field(default_factory=dict)  # view -> the model's first-hit rank per eval row (0: not in the top 50), for the run report's paired comparisons
    eval_fingerprint: str | None = None  # the eval rows these figures are over (lvmcore.artifacts.predictions.eval_set_fingerprint)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GateFigures":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _details(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = [r for r in report.get("records", []) if r.get("check") == name]
    return found[-1].get("details") or {} if found else None


def figures_of(report: dict[str, Any]) -> GateFigures | None:
    details = _details(report, FIGURES_RECORD)
    return None if details is None else GateFigures.from_dict(details)


ARTIFACT_ERROR_RECORD = "artifact_error"  # the recorder's record of an artifact error that stopped this subject's checks


def _artifact_decision(report: dict[str, Any]) -> dict[str, Any] | None:
    """An artifact error as the decision: check_data when it names the payload, eval set or training data, else check_model."""
    details = _details(report, ARTIFACT_ERROR_RECORD)
    if details is None:
        return None
    line = str(details.get("line", ""))
    data_paths = [str(v) for k, v in report.get("options", {}).items() if k in ("--payload", "--eval-set", "--train-data") and v not in (None, "None", "none")]
    action = "check_data" if any(line.startswith(f"{path}:") for path in data_paths) else "check_model"
    return {"action": action, "reason": f"an artifact could not be read, so nothing was measured: {line}", "failing": []}


def reconcile(decision: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The exit code and the decision never disagree: a `continue` beside a failed check becomes what that check implies.

    Checks whose figures the decision does not read (the training record, say) fail with `implies` in their record;
    a failed test with no figure at all makes the decision `unknown`, never `continue`.
    """
    if decision.get("action") != "continue":
        return decision
    failing = [r for r in report.get("records", []) if r.get("status") == "fail"]
    implied = [r for r in failing if (r.get("details") or {}).get("implies")]
    if implied:
        implied.sort(key=lambda r: PRIORITY.index(r["details"]["implies"]) if r["details"]["implies"] in PRIORITY else len(PRIORITY))
        clauses = [f"{r['check']} = {r.get('shown')} (required {r.get('threshold')}): {r.get('cause')}" for r in implied]
        return {"action": implied[0]["details"]["implies"], "reason": "; ".join(clauses), "failing": [r["check"] for r in implied]}
    failed = [nodeid for nodeid, outcome in report.get("outcomes", {}).items() if outcome == "failed"]
    if failed:
        return {"action": "unknown", "reason": f"the decision read every figure as passing, but these checks failed: {', '.join(failed)}; the session failed, so this is no pass", "failing": failed}
    return decision


def decision_of(report: dict[str, Any]) -> dict[str, Any] | None:
    """The decision `test_decision` recorded, reconciled with every failed check; an artifact error's; None for plumbing."""
    recorded = _details(report, DECISION_RECORD)
    if recorded and "action" in recorded:
        decision = {"action": str(recorded["action"]), "reason": str(recorded.get("reason", "")), "failing": list(recorded.get("failing", []))}
        return reconcile(decision, report)
    errored = _artifact_decision(report)
    if errored is not None:
        return errored
    figures = figures_of(report)
    if figures is not None and figures.metrics:
        try:
            GateMetrics(**figures.metrics)
        except TypeError as exc:
            return {"action": "unknown", "reason": f"recorded gate metrics are incomplete: {exc}", "failing": []}
    if report.get("subject", "plumbing") != "plumbing":
        return Decision("unknown", "no decision recorded: test_decision did not run (deselected, skipped or errored); see the outcomes").as_dict()
    return None


# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, fig, path: Path) -> bool:
    """Lay out, write the PNG, and free the figure (pyplot keeps every open figure alive)."""
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
    return True


def plot_separation(figures: GateFigures, path: Path) -> bool:
    edges, pos, neg = figures.hist_edges, figures.pos_hist, figures.neg_hist
    if not (edges and pos and neg):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    width = edges[1] - edges[0]
    ax.bar(centers, pos, width=width, alpha=0.6, label="cos(pred, own target)")
    ax.bar(centers, neg, width=width, alpha=0.6, label="cos(pred, another row's target)")
    ax.set_xlabel("cosine")
    ax.set_ylabel("eval rows")
    auc = figures.separation.get("auc")
    ax.set_title("Separation on the eval set" if auc is None else f"Separation on the eval set: AUC {auc:.3f}")
    ax.legend(fontsize=8)
    return save_figure(plt, fig, path)


def plot_recall_curves(figures: GateFigures, path: Path) -> bool:
    curves = figures.recall_curves
    if not any(curves.values()):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in curves.items():
        if curve:
            ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], label=name, linestyle="--" if name == "oracle" else "-")
    ivf = figures.ivf_curve
    if ivf:
        ax.plot(range(1, len(ivf) + 1), [100 * v for v in ivf], label=f"model, IVF nprobe={figures.nprobe}", linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("R@k (%)")
    ax.set_title("Recall at k, exact search over the payload")
    ax.legend(fontsize=7)
    return save_figure(plt, fig, path)


def plot_offset_sweep(figures: GateFigures, path: Path) -> bool:
    sweep = figures.offset_sweep
    if not sweep:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in (("model", sweep), ("copy-last", figures.offset_sweep_copy_last)):
        points = sorted((int(k), v) for k, v in values.items() if v is not None and not (isinstance(v, float) and math.isnan(v)))
        if points:
            ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=label)
    ax.axvline(1, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("offset k from the last context chunk (+1 = true next chunk)")
    ax.set_ylabel("mean cos(pred, chunk at k)")
    ax.set_title("Offset sweep: a next-chunk predictor peaks at +1")
    ax.legend(fontsize=8)
    return save_figure(plt, fig, path)


def read_history_quietly(path: str | None) -> TrainingHistory | None:
    """The run's history for the training-curve plot; a missing or malformed one only drops that plot
    (the training-record checks report it)."""
    if not path:
        return None
    try:
        return read_history(path)
    except ArtifactError:
        return None


def _series(epochs: list[dict[str, Any]], key: str) -> tuple[list[Any], list[float]]:
    """(epochs, values) of the rows that record `key` as a number: a field no row records draws nothing."""
    points = [(row.get("epoch"), row.get(key)) for row in epochs]
    kept = [(x, y) for x, y in points if isinstance(y, (int, float)) and not isinstance(y, bool) and x is not None]
    return [x for x, _ in kept], [float(y) for _, y in kept]


Panel = tuple[str, str, list[tuple[str, list[Any], list[float]]]]  # (title, x label, [(series, xs, ys)])


def training_panels(epochs: list[dict[str, Any]]) -> list[Panel]:
    """The training-curve panels a history has data for: loss, validation figures, the learning rate.

    Our history records the LR per optimizer step (`lr_trace`); another pipeline's often one `lr`
    per epoch, drawn per epoch. A series no row records is left out (no empty legend entry), and a
    panel with no series at all is not drawn.
    """
    panels: list[Panel] = []
    for title, keys in (("loss", ("train_loss", "val_loss")), ("validation", ("val_cosine", "val_r_at_1", "val_r_at_5"))):
        series = [(key, *_series(epochs, key)) for key in keys]
        series = [line for line in series if line[1]]
        if series:
            panels.append((title, "epoch", series))
    trace = [pair for row in epochs for pair in (row.get("lr_trace") or []) if isinstance(pair, (list, tuple)) and len(pair) == 2]
    if trace:
        panels.append(("learning rate per optimizer step", "step", [("lr", [s for s, _ in trace], [lr for _, lr in trace])]))
    elif _series(epochs, "lr")[0]:
        panels.append(("learning rate per epoch", "epoch (no per-step trace recorded)", [("lr", *_series(epochs, "lr"))]))
    return panels


def plot_training_curves(history: TrainingHistory, path: Path) -> bool:
    """Each panel of `training_panels`, side by side; nothing when the history has no figure to draw."""
    panels = training_panels([row.to_dict() for row in history.epochs])
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), squeeze=False)
    for ax, (title, x_label, series) in zip(axes[0], panels):
        for label, xs, ys in series:
            ax.plot(xs, ys, marker="o" if x_label.startswith("epoch") else None, label=label)
        ax.set_title(title)
        ax.set_xlabel(x_label)
        if not title.startswith("learning rate"):  # one entry per series drawn; the LR panel's title says it all
            ax.legend(fontsize=7)
    return save_figure(plt, fig, path)


# --------------------------------------------------------------------------- markdown


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f}%"


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def status_text(record: dict[str, Any]) -> str:
    """A record's status as the terminal summary and report.md show it: "info", or "PASS (good)" / "FAIL" with the level reached."""
    if record["status"] == "info":
        return "info"
    reached = record.get("level_reached")
    text = record["status"].upper()
    return f"{text} ({reached})" if reached else text


def summary_table(records: list[dict[str, Any]]) -> list[str]:
    checked = [r for r in records if r.get("status") in ("pass", "fail")]
    lines = ["| check | measured | threshold | status | likely cause |", "|---|---|---|---|---|"]
    for r in sorted(checked, key=lambda r: (r["status"] != "fail", r["check"])):
        status = status_text(r)
        lines.append(f"| {_cell(r['check'])} | {_cell(r.get('shown'))} | {_cell(r.get('threshold'))} ({_cell(r.get('level_required'))}) | {status} | {_cell(r.get('cause'))} |")
    return lines if checked else ["(no thresholded checks recorded)"]


def _pct_ci(s: dict[str, Any], name: str) -> str:
    """A share with its 95% interval, e.g. `6.89% (4.86-9.68)`."""
    value, ci = s.get(name), s.get(f"{name}_ci")
    if value is None:
        return "n/a"
    return _pct(value) if not ci else f"{_pct(value)} ({100 * ci[0]:.2f}-{100 * ci[1]:.2f})"


def _num_ci(s: dict[str, Any], name: str) -> str:
    value, ci = s.get(name), s.get(f"{name}_ci")
    if value is None:
        return "n/a"
    return _num(value) if not ci else f"{_num(value)} ({ci[0]:.3f}-{ci[1]:.3f})"


def query_set_table(query_sets: dict[str, dict[str, Any]], view: str = "exact") -> list[str]:
    """One row per query set; R@K and MRR with their 95% intervals (Wilson; bootstrap over rows for MRR).

    The context-excluded view shows only its own figures: echo and IVF belong to the raw lists."""
    raw = view == "exact"
    head = "| query set | cosine | R@1 | R@5 | R@10 | R@50 | MRR | Article@50 |" + (" echo | IVF R@5 | IVF/exact agreement |" if raw else "")
    lines = [head, "|---|---|---|---|---|---|---|---|" + ("---|---|---|" if raw else "")]
    footnote = ["", "In brackets: 95% intervals (Wilson for R@K, bootstrap over rows for MRR)." + (
        " IVF columns: the model and the oracle only, the query sets the index gates read (a two-tower model searches its own encoded bank, exactly); the others are searched exactly." if raw else "")]
    for name, s in query_sets.items():
        if f"{view}_r_at_5" not in s:
            continue
        row = (f"| {name} | {_num(s.get('cosine'))} | {_pct_ci(s, f'{view}_r_at_1')} | {_pct_ci(s, f'{view}_r_at_5')} | {_pct_ci(s, f'{view}_r_at_10')} | "
               f"{_pct_ci(s, f'{view}_r_at_50')} | {_num_ci(s, f'{view}_mrr')} | {_pct(s.get(f'{view}_article_at_50'))} |")
        if raw:
            row += f" {_pct(s.get('echo_rate'))} | {_pct(s.get('ivf_r_at_5'))} | {_pct(s.get('ivf_agreement'))} |"
        lines.append(row)
    return lines + footnote


def verdict_section(figures: "GateFigures") -> list[str]:
    """What the model is, in words, and the paired comparison behind it in each view."""
    if not figures.comparisons:
        return []
    lines = ["## What the model is", "", f"**{figures.model_kind}**: {figures.model_kind_sentence}.", "",
             "| view | model R@5 | best baseline | its R@5 | difference (95% interval, paired over rows) | McNemar p | beats it |",
             "|---|---|---|---|---|---|---|"]
    for view, c in figures.comparisons.items():
        interval = c.get("interval") or {}
        lines.append(
            f"| {view.replace('_', '-')} | {_pct(c.get('model_r_at_5'))} | {c.get('baseline')} | {_pct(c.get('baseline_r_at_5'))} | "
            f"{100 * c.get('difference', 0):+.2f} ({100 * interval.get('low', 0):+.2f} to {100 * interval.get('high', 0):+.2f}) points | "
            f"{_num(c.get('mcnemar_p'))} | {'yes' if c.get('beats') else 'no'} |"
        )
    lines += ["", "Context-excluded: each query's own context chunks are removed from its candidates before ranking; copy-last's raw rank 1 is always its own last chunk.", ""]
    return lines


def checkpoint_position(checkpoint: dict[str, Any]) -> str:
    """"epoch 3, step 120", or what is not recorded said in words (never "step None")."""
    epoch, step = checkpoint.get("epoch"), checkpoint.get("step")
    parts = ["epoch not recorded" if epoch is None else f"epoch {epoch}", "step not recorded" if step is None else f"step {step}"]
    return ", ".join(parts)


def _hash(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "none"
    digest = f"sha256 `{entry['sha256'][:16]}…`" if entry.get("sha256") else entry.get("error", "no hash")
    return f"`{entry.get('path')}` ({digest})"


def how_section(options: dict[str, Any]) -> list[str]:
    """"How this was measured": the route, the model, every file with its content hash, the options that change a figure."""
    measured = options.get("measured")
    if not isinstance(measured, dict):
        return []
    lines = ["## How this was measured", "", f"- suite: {measured.get('suite', 'lvm-checks')} {measured.get('suite_version')}"]
    subject = measured.get("subject") or {}
    route = subject.get("route")
    if route:
        how = {"checkpoint": "our checkpoint, read with weights_only (no code run)", "adapter": f"the adapter `{subject.get('adapter')}` (your code, run because you named it)",
               "model_file": "an exported program", "predictions": "stored predictions (no code run)"}[route]
        lines.append(f"- route: {route.replace('_', ' ')}: {how}; {subject.get('option')} {_hash(subject.get('file'))}")
        checkpoint = subject.get("checkpoint")
        if checkpoint:
            lines.append(f"- checkpoint: `{checkpoint.get('path')}`, {checkpoint_position(checkpoint)}")
        model = subject.get("model") or {}
        text = f"- model: {model.get('architecture', 'unknown')}"
        if model.get("parameters") is not None:
            text += f", {model['parameters']:,} parameters"
        if model.get("config"):
            config = ", ".join(f"{k}={v}" for k, v in model["config"].items() if not isinstance(v, (dict, list)))
            text += f"; config{' (' + model['config_from'] + ')' if model.get('config_from') else ''}: {_cell(config)}"
        lines.append(text)
        for line in subject.get("run_folder") or []:
            lines.append(f"- {line.strip().removeprefix('lvm-checks: ')}")
    names = {"payload": "payload", "eval_set": "eval set", "train_data": "training data"}
    for key, entry in (measured.get("artifacts") or {}).items():
        lines.append(f"- {names.get(key, key)}: {_hash(entry)}")
    index = measured.get("index") or {}
    if index.get("given"):
        lines.append(f"- index: {_hash(index)} (`--index`)")
    elif index:
        lines.append(f"- index: {index.get('built')}; nlist {index.get('nlist')}, {index.get('train_points_per_list')} training points per list, "
                     f"{index.get('train_iterations')} k-means iterations; searched at nprobe {options.get('--nprobe')}")
    fields_given = options.get("--field") or {}
    lines.append(f"- files read with --allow-pickle: {'yes' if options.get('--allow-pickle') else 'no'}; --field: "
                 + (", ".join(f"{k}={v}" for k, v in fields_given.items()) if fields_given else "none"))
    overrides = measured.get("overrides") or []
    lines.append(f"- level: {measured.get('level')}; overrides: {', '.join(overrides) if overrides else 'none'}")
    return lines + [""]


def examples(payload: Payload, eval_set: EvalSet, top_rows: np.ndarray, top_scores: np.ndarray, first_hit_ranks: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """A few eval rows with their context, truth and the model's top 5, with texts when the payload has them.

    top_rows, top_scores (M, >= 5): the model's exact-search results; first_hit_ranks (M,), 0 = not in the top 50.
    """

    def text(key: np.ndarray) -> str | None:
        if payload.texts is None:
            return None
        row = int(payload.rows_of(np.asarray(key)[None])[0])
        return None if row < 0 else payload.texts[row][:TEXT_CHARS]

    out = []
    for row in sample_rows(eval_set.count, EXAMPLE_ROWS, seed):
        truth = eval_set.truth_keys[row]
        context = [] if eval_set.context_keys is None else [[int(a), int(c)] for a, c in eval_set.context_keys[row]]
        retrieved = []
        for rank, payload_row in enumerate(top_rows[row][:5], 1):
            if payload_row < 0:
                continue
            key = payload.keys[payload_row]
            retrieved.append({"rank": rank, "key": [int(key[0]), int(key[1])], "score": float(top_scores[row][rank - 1]), "hit": bool((key == truth).all()), "text": payload.texts[payload_row][:TEXT_CHARS] if payload.texts else None})
        out.append({
            "row": int(row),
            "truth_key": [int(truth[0]), int(truth[1])],
            "truth_text": text(truth),
            "context_keys": context,
            "context_last_text": text(eval_set.context_keys[row][-1]) if eval_set.context_keys is not None else None,
            "first_hit_rank": int(first_hit_ranks[row]),
            "retrieved": retrieved,
        })
    return out


def examples_section(examples: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for ex in examples:
        lines.append(f"**eval row {ex['row']}**: truth {tuple(ex['truth_key'])}, first hit at rank {ex['first_hit_rank'] or '>50'}")
        if ex.get("context_last_text"):
            lines.append(f"- last context chunk: {_cell(ex['context_last_text'])}")
        if ex.get("truth_text"):
            lines.append(f"- true next chunk: {_cell(ex['truth_text'])}")
        for hit in ex.get("retrieved", []):
            text = f": {_cell(hit['text'])}" if hit.get("text") else ""
            mark = " **(truth)**" if hit.get("hit") else ""
            lines.append(f"- retrieved #{hit['rank']} {tuple(hit['key'])} score {hit['score']:.3f}{mark}{text}")
        lines.append("")
    return lines


def write_report(directory: str | Path, report: dict[str, Any]) -> None:
    """Write `report.md` and plots into `directory` and add `report["decision"]` (gate subjects)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    decision = decision_of(report)
    if decision is not None:
        report["decision"] = decision
    records = report.get("records", [])
    plots: list[str] = []

    figures = figures_of(report) or GateFigures()
    for name, plot in (("separation.png", plot_separation), ("recall_at_k.png", plot_recall_curves), ("offset_sweep.png", plot_offset_sweep)):
        if plot(figures, directory / name):
            plots.append(name)
    history = read_history_quietly(figures.history_path)
    if history is not None and plot_training_curves(history, directory / "training_curves.png"):
        plots.append("training_curves.png")

    failed = [nodeid for nodeid, outcome in report.get("outcomes", {}).items() if outcome == "failed"]
    lines = [f"# lvm-checks report: {report.get('subject', '?')}", "", f"run `{report.get('run', '?')}`, created {report.get('created', '?')}", ""]
    if decision is not None:
        lines += ["## Decision", "", f"**{decision['action']}**: {decision['reason']}", ""]
    lines += ["## Checks", "", *summary_table(records), ""]
    if failed:
        lines += [f"{len(failed)} test(s) failed: " + ", ".join(f"`{n}`" for n in failed), ""]
    lines += verdict_section(figures)
    if figures.query_sets:
        lines += [
            "## Retrieval: model, baselines (contexts only), oracle and training sample", "",
            "Exact search over the whole payload; hits by key (duplicate aware). The oracle queries with the truth targets: an upper bound, never a baseline.", "",
            *query_set_table(figures.query_sets), "",
        ]
        excluded = query_set_table(figures.query_sets, view="excluded")
        if len(excluded) > 4:
            lines += ["### The same lists with each query's own context chunks excluded", "", *excluded[:-2], ""]
    checkpoint = figures.checkpoint
    if checkpoint.get("metrics"):
        shown = ", ".join(f"{k} {_num(v)}" for k, v in checkpoint["metrics"].items() if isinstance(v, (int, float)))
        lines += [f"Training's own figures for this checkpoint ({checkpoint_position(checkpoint)}): {shown}. Choose checkpoints by the held-out R@5 above, never by validation cosine (row 15).", ""]
    info = [r for r in records if r.get("status") == "info" and r["check"] not in (FIGURES_RECORD, DECISION_RECORD, "recall_curves")]
    if info:
        lines += ["## Other figures", "", "| figure | value |", "|---|---|"]
        lines += [f"| {_cell(r['check'])} | {_cell(r.get('shown'))} |" for r in info]
        lines.append("")
    if figures.examples:
        lines += ["## Example eval rows", "", *examples_section(figures.examples)]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    if figures.seconds:
        lines += ["Timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in figures.seconds.items()), ""]
    lines += how_section(report.get("options") or {})
    text = ("\n".join(lines) + "\n").encode("utf-8")
    write_atomic(directory / "report.md", lambda out: out.write(text))
