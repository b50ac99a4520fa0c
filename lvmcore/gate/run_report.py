"""The run-level report: every gated checkpoint of a run side by side, and which one to keep.

Five per-checkpoint reports invite comparing point estimates by eye, the mistake the intervals exist
to prevent. This reads the reports a gate session wrote (`<report-dir>/<run>/<checkpoint>/report.json`),
and writes `run.md`, `run.json` and `run.png` beside them: per checkpoint R@5 raw and
context-excluded with their 95% intervals, the best baseline's interval as a band, and each
decision; and the checkpoint to keep, chosen by paired comparisons over the same eval rows.

The rule: the measure is hit@5 per eval row with the row's own context excluded (raw when the eval
set has no context keys), the view in which a copier cannot win. Checkpoints whose decision says
their figures cannot be trusted (check_data, check_model, unknown) are not candidates. A candidate
is *shown worse* when another candidate's paired interval of (other - it) lies above 0, at 95%
family-wise (Bonferroni over the pairs compared). The kept checkpoint is the unbeaten candidate with
the highest point estimate (ties: the earlier); the report says by how much it beats each other
checkpoint where it does, or that no checkpoint is shown better than it.

    python -m lvmcore.gate.run_report REPORT_RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.errors import ArtifactError
from lvmcore.files import write_atomic, write_json_atomic
from lvmcore.gate.intervals import paired_difference, wilson_interval
from lvmcore.search.hits import hits_at
from lvmcore.gate.report import _pyplot, decision_of, figures_of, save_figure

UNTRUSTED = ("check_data", "check_model", "unknown")
K = 5


@dataclass
class CheckpointFigures:
    """One gated checkpoint as the run report needs it."""

    name: str
    epoch: int | None
    step: int | None
    decision: str
    reason: str
    raw: list[float]  # R@5, low, high
    excluded: list[float] | None
    baseline: str
    baseline_raw: list[float]  # the best baseline's R@5, low, high (raw view)
    baseline_excluded: list[float] | None  # the same baseline with each row's own context excluded
    eval_fingerprint: str | None
    ranks: np.ndarray = field(repr=False)  # (M,) first-hit ranks in the compared view
    view: str = "context_excluded"

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("ranks")
        return values


def _share(ranks: np.ndarray) -> list[float]:
    hits = hits_at(ranks, K)
    interval = wilson_interval(int(hits.sum()), len(hits))
    return [float(hits.mean()) if len(hits) else 0.0, interval.low, interval.high]


def checkpoint_figures(report: dict[str, Any], path: Path) -> CheckpointFigures | None:
    """A checkpoint's figures from its report.json; None when the report holds no gate figures (an artifact error)."""
    figures = figures_of(report)
    if figures is None or not figures.row_ranks:
        return None
    decision = decision_of(report) or {"action": "unknown", "reason": ""}
    raw = np.asarray(figures.row_ranks.get("raw", []), dtype=np.int64)
    excluded = figures.row_ranks.get("context_excluded")
    excluded = None if excluded is None else np.asarray(excluded, dtype=np.int64)
    comparison = figures.comparisons.get("raw", {})
    baseline = str(comparison.get("baseline", "?"))
    baseline_r5 = figures.query_sets.get(f"baseline:{baseline}", {})
    nan2 = [float("nan")] * 2
    checkpoint = figures.checkpoint or {}
    return CheckpointFigures(
        name=str(report.get("subject", path.parent.name)), epoch=checkpoint.get("epoch"), step=checkpoint.get("step"),
        decision=str(decision["action"]), reason=str(decision.get("reason", "")),
        raw=_share(raw), excluded=None if excluded is None else _share(excluded),
        baseline=baseline, baseline_raw=[baseline_r5.get("exact_r_at_5", float("nan")), *baseline_r5.get("exact_r_at_5_ci", nan2)],
        baseline_excluded=None if "excluded_r_at_5" not in baseline_r5 else [baseline_r5["excluded_r_at_5"], *baseline_r5.get("excluded_r_at_5_ci", nan2)],
        eval_fingerprint=figures.eval_fingerprint, ranks=raw if excluded is None else excluded,
        view="raw" if excluded is None else "context_excluded",
    )


def load_run(directory: str | Path) -> list[CheckpointFigures]:
    """Every checkpoint report of one run directory, in epoch (then name) order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(directory, "is not a run's report directory")
    found = []
    for path in sorted(directory.glob("*/report.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(path, f"cannot be read as a report: {exc}") from None
        if report.get("subject") == "plumbing":
            continue
        figures = checkpoint_figures(report, path)
        if figures is not None:
            found.append(figures)
    if not found:
        raise ArtifactError(directory, "holds no gate report with per-row figures (*/report.json from `pytest checks -m gate`)")
    return sorted(found, key=lambda c: (c.epoch is None, c.epoch or 0, c.name))


@dataclass(frozen=True)
class Comparison:
    better: str
    worse: str
    difference: float
    low: float
    high: float
    confidence: float

    def sentence(self) -> str:
        return (f"{self.better} is better than {self.worse} by {100 * self.difference:+.2f} points "
                f"[{100 * self.low:+.2f}, {100 * self.high:+.2f}] ({100 * self.confidence:.1f}% paired interval)")


@dataclass(frozen=True)
class Choice:
    kept: str | None
    sentence: str
    comparisons: list[Comparison]
    view: str
    candidates: list[str]


def choose(checkpoints: list[CheckpointFigures], seed: int = 0) -> Choice:
    """The checkpoint to keep, by paired comparisons over the same rows (see the module docstring)."""
    fingerprints = {c.eval_fingerprint for c in checkpoints}
    if len(fingerprints) > 1:
        return Choice(None, "the checkpoints were gated on different eval sets: no paired comparison is possible; gate them on one eval set", [], "", [])
    candidates = [c for c in checkpoints if c.decision not in UNTRUSTED]
    view = candidates[0].view if candidates else ""
    if not candidates:
        return Choice(None, "no checkpoint has figures that can be trusted (every decision is check_data, check_model or unknown)", [], view, [])
    if len({c.view for c in candidates}) > 1 or len({len(c.ranks) for c in candidates}) > 1:
        return Choice(None, "the checkpoints were measured on different rows or views: no paired comparison is possible", [], view, [c.name for c in candidates])
    pairs = len(candidates) * (len(candidates) - 1) // 2
    confidence = 1.0 - 0.05 / max(1, pairs)
    hits = {c.name: hits_at(c.ranks, K) for c in candidates}
    shown: list[Comparison] = []
    beaten: set[str] = set()
    for i, a in enumerate(candidates):
        for b in candidates[i + 1:]:
            paired = paired_difference(hits[a.name], hits[b.name], confidence=confidence, seed=seed)
            low, high = paired.interval.low, paired.interval.high
            if low > 0:
                shown.append(Comparison(a.name, b.name, paired.difference, low, high, confidence))
                beaten.add(b.name)
            elif high < 0:
                shown.append(Comparison(b.name, a.name, -paired.difference, -high, -low, confidence))
                beaten.add(a.name)
    unbeaten = [c for c in candidates if c.name not in beaten]
    kept = max(unbeaten, key=lambda c: (float(hits[c.name].mean()), -candidates.index(c)))
    wins = [c for c in shown if c.better == kept.name]
    view_text = "with each row's own context excluded" if view == "context_excluded" else "raw"
    if wins:
        sentence = f"keep {kept.name}: " + "; ".join(c.sentence() for c in wins) + f" (R@5 {view_text}, same {len(kept.ranks)} eval rows)"
    else:
        sentence = (f"keep {kept.name} (highest R@5 {view_text}, {100 * float(hits[kept.name].mean()):.1f}%): no checkpoint is shown better than {kept.name}"
                    + (", and it is shown better than none of the others" if len(candidates) > 1 else ""))
    return Choice(kept.name, sentence, shown, view, [c.name for c in candidates])


def plot_run(checkpoints: list[CheckpointFigures], path: Path) -> bool:
    """R@5 raw and context-excluded per checkpoint with 95% intervals, the best baseline's interval as a band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x = np.arange(len(checkpoints))
    for offset, label, values in ((-0.08, "R@5 raw", [c.raw for c in checkpoints]), (0.08, "R@5 context-excluded", [c.excluded for c in checkpoints])):
        points = [(i + offset, v) for i, v in zip(x, values) if v is not None]
        if points:
            ax.errorbar([p for p, _ in points], [100 * v[0] for _, v in points],
                        yerr=[[100 * (v[0] - v[1]) for _, v in points], [100 * (v[2] - v[0]) for _, v in points]], fmt="o", capsize=3, label=label)
    for band, color, view in ((checkpoints[0].baseline_raw, "tab:blue", "raw"), (checkpoints[0].baseline_excluded, "tab:orange", "context-excluded")):
        if band and band[1] == band[1]:
            ax.axhspan(100 * band[1], 100 * band[2], color=color, alpha=0.12, label=f"best baseline ({checkpoints[0].baseline}) {view}, 95%")
    ax.set_xticks(x, [c.name for c in checkpoints], rotation=30, ha="right")
    ax.set_ylabel("R@5 (%)")
    ax.set_title("R@5 per checkpoint, 95% intervals")
    ax.legend(fontsize=7)
    return save_figure(plt, fig, path)


def write_run_report(directory: str | Path, seed: int = 0) -> Path:
    """Write run.md, run.json and run.png into a run's report directory; returns run.md."""
    directory = Path(directory)
    checkpoints = load_run(directory)
    choice = choose(checkpoints, seed)
    write_json_atomic(directory / "run.json", {"format": "lvm-run-report/1", "checkpoints": [c.as_dict() for c in checkpoints],
                                                "keep": choice.kept, "sentence": choice.sentence, "view": choice.view, "candidates": choice.candidates,
                                                "comparisons": [asdict(c) for c in choice.comparisons]})
    plotted = plot_run(checkpoints, directory / "run.png")

    def pct(v: list[float] | None) -> str:
        return "n/a" if v is None else f"{100 * v[0]:.1f}% ({100 * v[1]:.1f}-{100 * v[2]:.1f})"

    lines = [f"# lvm-checks run report: {directory.name}", "", f"**{choice.sentence}**", "",
             "| checkpoint | epoch | R@5 raw (95%) | R@5 context-excluded (95%) | best baseline R@5 raw / context-excluded (95%) | decision |", "|---|---|---|---|---|---|"]
    for c in checkpoints:
        lines.append(f"| {c.name} | {c.epoch if c.epoch is not None else '-'} | {pct(c.raw)} | {pct(c.excluded)} | {c.baseline} {pct(c.baseline_raw)} / {pct(c.baseline_excluded)} | {c.decision} |")
    lines += ["", "Paired comparisons shown (the rest are not shown different at 95% family-wise):", ""]
    lines += [f"- {c.sentence()}" for c in choice.comparisons] or ["- none"]
    lines += ["", "Decisions:", ""] + [f"- **{c.name}**: {c.decision}: {c.reason}" for c in checkpoints]
    if plotted:
        lines += ["", "![run.png](run.png)"]
    text = ("\n".join(lines) + "\n").encode("utf-8")
    return write_atomic(directory / "run.md", lambda out: out.write(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvmcore.gate.run_report", description="Write run.md, run.json and run.png for a run's gate reports.")
    parser.add_argument("run_dir", help="the run's report directory: <report-dir>/<run-name>, holding one folder per checkpoint")
    args = parser.parse_args(argv)
    try:
        written = write_run_report(args.run_dir)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.loads((written.parent / "run.json").read_text())["sentence"])
    print(f"run report: {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
