"""report.md, plots and the decision, from records shaped like the gate checks write them."""

from __future__ import annotations

import json

import numpy as np

from helpers.decision_cases import healthy
from lvmcore.gate.decision import GateMetrics, decide
from lvmcore.gate.levels import resolve
from lvmcore.gate.report import HIST_BINS
from lvmcore.gate.report import GateFigures, decision_of, write_report

METRICS = healthy(r_at_5=0.02, r_at_5_low=0.01, r_at_5_high=0.04, ivf_r_at_5=0.02).as_dict()


def row(check, status="info", measured=None, **details):
    return {"subject": "epoch_001", "check": check, "nodeid": f"checks/x.py::{check}", "measured": measured, "shown": str(measured),
            "threshold": ">= 0.05" if status != "info" else None, "level_required": "minimum" if status != "info" else None,
            "level_reached": None, "levels": {}, "status": status, "cause": "the cause" if status == "fail" else None, "details": details}


def gate_report(tmp_path, with_decision=True):
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"format": "lvm-history/1", "config": {}, "epochs": [
        {"epoch": 1, "train_loss": 3.0, "val_loss": 3.1, "val_cosine": 0.3, "val_r_at_1": 0.01, "val_r_at_5": 0.02, "lr_trace": [[0, 1e-4], [1, 2e-4]]},
        {"epoch": 2, "train_loss": 2.0, "val_loss": 2.5, "val_cosine": 0.4, "val_r_at_1": 0.02, "val_r_at_5": 0.04, "lr_trace": [[2, 1.5e-4], [3, 1e-4]]},
    ]}))
    pos, neg = np.histogram(np.random.default_rng(0).normal(0.5, 0.1, 100), HIST_BINS)[0], np.histogram(np.random.default_rng(1).normal(0.0, 0.1, 100), HIST_BINS)[0]
    records = [
        row("r_at_5", "fail", 0.02),
        row("separation_delta", "pass", 0.2),
        row("gate_figures", "info", 0.02, **GateFigures(
            metrics=METRICS, history_path=str(history),
            query_sets={"model": {"cosine": 0.4, "exact_r_at_5": 0.02, "exact_r_at_1": 0.01}},
            separation={"pos_mean": 0.5, "neg_mean": 0.0, "delta": 0.5, "auc": 0.93, "negatives_used": 9900},
            hist_edges=HIST_BINS.tolist(), pos_hist=pos.tolist(), neg_hist=neg.tolist(),
            recall_curves={"model": [0.01] * 50, "copy_last": [0.005] * 50}, ivf_curve=[0.01] * 50, nprobe=64,
            offset_sweep={"-1": 0.1, "0": 0.2, "1": 0.3, "2": 0.1}, offset_sweep_copy_last={"0": 1.0, "1": 0.4},
            examples=[{"row": 3, "truth_key": [1, 6], "truth_text": "the next | chunk", "context_keys": [[1, 5]], "context_last_text": "the last chunk",
                       "first_hit_rank": 2, "retrieved": [{"rank": 1, "key": [1, 5], "score": 0.9, "hit": False, "text": "the last chunk"},
                                                          {"rank": 2, "key": [1, 6], "score": 0.8, "hit": True, "text": "the next chunk"}]}],
            seconds={"exact_search": 0.5}, checkpoint={"epoch": 2, "step": 4, "metrics": {"val_cosine": 0.4}}).as_dict()),
    ]
    if with_decision:
        d = decide(GateMetrics(**METRICS), resolve("good"))
        records.append(row("decision", "info", None, action=d.action, reason=d.reason))
    return {"format": "lvm-report/1", "subject": "epoch_001", "run": "t", "records": records, "outcomes": {"checks/x.py::r_at_5": "failed"}}


def test_report_markdown_plots_and_decision(tmp_path) -> None:
    report = gate_report(tmp_path)
    write_report(tmp_path / "out", report)
    assert report["decision"]["action"] == "train_more"
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| r_at_5 | 0.02 | >= 0.05 (minimum) | FAIL | the cause |" in text
    assert "**train_more**" in text and "the next \\| chunk" in text and "**(truth)**" in text
    for name in ("separation.png", "recall_at_k.png", "offset_sweep.png", "training_curves.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000, name
        assert f"]({name})" in text


def test_no_decision_is_guessed_when_test_decision_did_not_record(tmp_path) -> None:
    """Without test_decision's record the run's levels are unknown: the report says so instead of deciding at default levels."""
    report = gate_report(tmp_path, with_decision=False)
    assert decision_of(report)["action"] == "unknown"


def test_a_continue_beside_a_failed_check_is_not_a_pass() -> None:
    """The exit code and the decision never disagree: a failing training-record check turns continue into what it implies."""
    report = {"subject": "epoch_001", "records": [
        row("decision", "info", None, action="continue", reason="every gate figure passes"),
        row("lr_trace_max_relative_error", "fail", 0.5, implies="check_training"),
    ], "outcomes": {"checks/x.py::lr": "failed"}}
    decision = decision_of(report)
    assert decision["action"] == "check_training" and "lr_trace_max_relative_error = 0.5" in decision["reason"]
    bare = {"subject": "epoch_001", "records": [row("decision", "info", None, action="continue", reason="ok")], "outcomes": {"checks/x.py::t": "failed"}}
    assert decision_of(bare)["action"] == "unknown" and "checks/x.py::t" in decision_of(bare)["reason"]


def test_an_artifact_error_is_the_decision_and_names_the_file() -> None:
    report = {"subject": "bad", "options": {"--payload": "p", "--eval-set": "e.npz", "--train-data": "none"},
              "records": [row("artifact_error", "fail", None, line="e.npz: truncated")]}
    assert decision_of(report) == {"action": "check_data", "reason": "an artifact could not be read, so nothing was measured: e.npz: truncated", "failing": []}
    report["records"] = [row("artifact_error", "fail", None, line="preds.npz: holds 3 eval predictions")]
    assert decision_of(report)["action"] == "check_model"


def test_decision_unknown_without_any_gate_figures_and_absent_for_plumbing(tmp_path) -> None:
    assert decision_of({"subject": "epoch_001", "records": []})["action"] == "unknown"
    report = {"subject": "plumbing", "records": [row("payload_ok", "pass", 1)]}
    write_report(tmp_path, report)
    assert "decision" not in report and "payload_ok" in (tmp_path / "report.md").read_text()


def test_a_foreign_history_draws_its_per_epoch_lr_and_no_empty_series(tmp_path) -> None:
    """Issue 18: their bare list of epochs with one `lr` each drew an empty LR panel and legend entries with no data."""
    from lvmcore.artifacts.history import read_history
    from lvmcore.gate.report import plot_training_curves, training_panels

    theirs = tmp_path / "history.json"
    theirs.write_text(json.dumps([{"epoch": 1, "train_loss": 2.0, "val_loss": 2.2, "val_cosine": 0.30, "lr": 1e-3},
                                  {"epoch": 2, "train_loss": 1.5, "val_loss": 2.0, "val_cosine": 0.36, "lr": 5e-4}]))
    history = read_history(theirs)
    panels = {title: (x_label, {name: (xs, ys) for name, xs, ys in series}) for title, x_label, series in training_panels([r.to_dict() for r in history.epochs])}
    assert list(panels) == ["loss", "validation", "learning rate per epoch"]
    assert list(panels["validation"][1]) == ["val_cosine"]  # val_r_at_1 / val_r_at_5: not recorded, not drawn
    assert panels["learning rate per epoch"][1]["lr"] == ([1, 2], [1e-3, 5e-4])
    assert plot_training_curves(history, tmp_path / "curves.png")
    ours = read_history(gate_report(tmp_path)["records"][2]["details"]["history_path"])
    assert [t for t, _, _ in training_panels([r.to_dict() for r in ours.epochs])] == ["loss", "validation", "learning rate per optimizer step"]
    assert training_panels([{"epoch": 1}]) == []  # nothing recorded: no plot at all


def test_an_unrecorded_step_is_said_in_words_never_step_none(tmp_path) -> None:
    report = gate_report(tmp_path)
    figures = report["records"][2]["details"]
    figures["checkpoint"] = {"path": "best.pt", "epoch": 3, "step": None, "metrics": {"val_cosine": 0.36}}
    write_report(tmp_path / "out", report)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "(epoch 3, step not recorded)" in text and "None" not in text


def test_how_this_was_measured_names_route_model_files_hashes_and_options(tmp_path) -> None:
    report = gate_report(tmp_path)
    report["options"] = {"--nprobe": "64", "--allow-pickle": True, "--field": {"provenance": ""}, "measured": {
        "suite": "lvm-checks", "suite_version": "0.1.0", "level": "good", "overrides": ["r_at_5.good=0.08"],
        "artifacts": {"payload": {"path": "run/payload.npy", "sha256": "ab" * 32}, "eval_set": {"path": "run/eval_v3.npz", "sha256": "cd" * 32},
                      "train_data": None},
        "index": {"given": False, "built": "IVF-Flat, inner product, by the suite", "nlist": 8, "train_points_per_list": 256, "train_iterations": 10},
        "subject": {"route": "checkpoint", "adapter": None, "option": "--checkpoint", "file": {"path": "runs/x/epoch_001.pt", "sha256": "ef" * 32},
                    "checkpoint": {"path": "runs/x/epoch_001.pt", "epoch": 1, "step": None},
                    "model": {"known": True, "architecture": "gru", "parameters": 12345, "config": {"kind": "gru", "dim": 64, "hidden": 32}}}}}
    write_report(tmp_path / "out", report)
    text = (tmp_path / "out" / "report.md").read_text()
    section = text[text.index("## How this was measured"):]
    for expected in ("lvm-checks 0.1.0", "route: checkpoint: our checkpoint", "`runs/x/epoch_001.pt` (sha256 `efefefefefefefef…`)",
                     "epoch 1, step not recorded", "model: gru, 12,345 parameters; config: kind=gru, dim=64, hidden=32",
                     "payload: `run/payload.npy` (sha256 `abababababababab…`)", "training data: none", "searched at nprobe 64",
                     "--allow-pickle: yes; --field: provenance=", "level: good; overrides: r_at_5.good=0.08"):
        assert expected in section, (expected, section)
