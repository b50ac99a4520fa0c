"""The gate checks can fail: each bad model or artifact fails the check that guards it, and a good model passes.

A tiny synthetic bank is written in tmp: documents whose next chunk is a known NONLINEAR function of
the last one (one of two rotations, picked by the sign of the first coordinate), plus noise. A
linear ridge map cannot learn the switch, so the model that knows the function beats every
baseline, and nothing in the bank makes that easy by accident (copy-last and the context mean are
far from the next chunk).

The models are tiny torch modules with known behaviour (the true function, copy-last, a model run
on contexts from another encoder), stored as `lvm-checkpoint/1` files whose `model_config` kind is
test-only; for those kinds only, this test extends `lvmcore.artifacts.checkpoint.load_checkpoint`. A random-
weights model is a real `lvmcore.models` preset going through the real loader when that package
provides presets (else a random linear module). The real suite (`checks/ -m gate`) runs in-process
with pytester, as users run it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lvmcore.gate.routes as routes
from lvmcore.artifacts.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from lvmcore.artifacts.evalset import write_eval_set
from lvmcore.vectors import l2_normalize
from lvmcore.artifacts.payload import load_payload, write_payload
from lvmcore.training.schedule import lr_at
from lvmcore.artifacts.training_data import write_windows_spec
from lvmcore.artifacts.windows import build_windows

REPO = Path(__file__).resolve().parents[1]
CHECKS = REPO / "checks"
DIM, ARTICLES, CHUNKS, CONTEXT, NOISE = 32, 100, 24, 5, 0.5
EVAL_ARTICLES = 20
TRAIN_CONFIG = {"lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 2, "total_steps": 10, "schedule": "warmup_cosine",
                "batch_size": 16, "accumulation": 2, "world_size": 1}


def rotation(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(np.eye(DIM) + rng.normal(size=(DIM, DIM)))
    return q.astype(np.float32)


class SwitchedRotation(nn.Module):
    """The bank's true next-chunk function: rotate the last chunk by r1 or r2 by the sign of its first coordinate."""

    tower_count = 1

    def __init__(self, r1: torch.Tensor, r2: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("r1", r1)
        self.register_buffer("r2", r2)

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        last = contexts[:, -1, :]  # (B, D)
        out = torch.where(last[:, :1] > 0, last @ self.r1.T, last @ self.r2.T)  # (B, D)
        return nn.functional.normalize(out, dim=-1)


class AwayFromTheTruth(nn.Module):
    """The true function, negated: output that follows its input exactly, yet points away from every truth."""

    tower_count = 1

    def __init__(self, r1: torch.Tensor, r2: torch.Tensor) -> None:
        super().__init__()
        self.truth = SwitchedRotation(r1, r2)

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        return -self.truth(contexts)  # (B, D)


class CopyLast(nn.Module):
    tower_count = 1

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(contexts[:, -1, :], dim=-1)  # (B, D)


def build_test_model(config: dict, state: dict) -> nn.Module:
    if config["model"] == "switched_rotation":
        return SwitchedRotation(state["r1"], state["r2"])
    if config["model"] == "copy_last":
        return CopyLast()
    if config["model"] == "away_from_the_truth":
        return AwayFromTheTruth(state["r1"], state["r2"])
    raise ValueError(f"unknown test model {config['model']!r}")


REAL_LOAD = load_checkpoint


def load_with_test_kinds(path, expected_dim=None):
    """The real loader, extended to the test-only model kinds written below."""
    content = torch.load(path, map_location="cpu", weights_only=True)
    if not str(content.get("model_config", {}).get("kind", "")).startswith("test-"):
        return REAL_LOAD(path, expected_dim)
    model = build_test_model(content["model_config"], content["model_state"]).eval()
    return Checkpoint(path=Path(path), model=model, model_config=content["model_config"], epoch=content["epoch"], step=content["step"],
                      metrics=content.get("metrics", {}), negatives_per_positive=content["negatives_per_positive"], train_config=content["train_config"],
                      provenance=content.get("provenance", {}), training_articles=content.get("training_articles", []))


def write_history(directory: Path, lr_trace: list, negatives: int, config: dict | None = None) -> None:
    (directory / "history.json").write_text(json.dumps({"format": "lvm-history/1", "config": config or TRAIN_CONFIG, "epochs": [
        {"epoch": 1, "step_end": len(lr_trace), "train_loss": 2.0, "val_loss": 2.1, "val_cosine": 0.5, "val_r_at_1": 0.5, "val_r_at_5": 0.8,
         "lr_start": lr_trace[0][1], "lr_end": lr_trace[-1][1], "lr_trace": lr_trace, "seconds": 1.0, "samples_per_s": 100.0,
         "negatives_per_positive": negatives, "checkpoint": "epoch_001.pt"}]}))


def write_checkpoint(path: Path, kind: str, state: dict, negatives: int = 31, good_history: bool = True, **recorded) -> Path:
    """A test-kind checkpoint at `path`, with a history.json beside it (a correct one, or one with row 9/10 faults).

    recorded: what the checkpoint records about its training (provenance, training_articles).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = 10
    trace = [[s, lr_at(s, TRAIN_CONFIG)] for s in range(steps)] if good_history else [[s, TRAIN_CONFIG["lr"]] for s in range(steps)]
    write_history(path.parent, trace, negatives)
    return save_checkpoint(path, {
        "model_config": {"kind": "test-numpy", "model": kind}, "model_state": state, "epoch": 1, "step": steps,
        "metrics": {"val_cosine": 0.5}, "negatives_per_positive": negatives, "train_config": TRAIN_CONFIG, **recorded,
    })


def write_random_preset(path: Path, negatives: int, epoch: int = 1, **recorded) -> Path:
    """A real preset (gru) with random weights, through the real checkpoint format and loader."""
    from lvmcore.models import PRESETS, build_model

    torch.manual_seed(0)
    config = PRESETS["gru"](dim=DIM)
    model = build_model(config)
    return save_checkpoint(path, {
        "model_config": config.to_dict(), "model_state": model.state_dict(), "epoch": epoch, "step": 10 * epoch, "metrics": {},
        "provenance": {"dim": DIM}, "negatives_per_positive": negatives, "train_config": TRAIN_CONFIG, **recorded,
    })


def write_two_epoch_history(directory: Path, negatives: int, train_losses: tuple[float, float]) -> None:
    """Two epochs with these training losses: flat, a run that never learned (a zero learning rate, a detached loss); falling, one that did."""
    rows = []
    for epoch, train_loss in zip((1, 2), train_losses):
        trace = [[s, lr_at(s, TRAIN_CONFIG)] for s in range(10 * (epoch - 1), 10 * epoch)]
        rows.append({"epoch": epoch, "step_end": 10 * epoch, "train_loss": train_loss, "val_loss": 3.47, "val_cosine": 0.1, "val_r_at_1": 0.0, "val_r_at_5": 0.0,
                     "lr_start": trace[0][1], "lr_end": trace[-1][1], "lr_trace": trace, "seconds": 1.0, "samples_per_s": 100.0,
                     "negatives_per_positive": negatives, "checkpoint": f"epoch_{epoch:03d}.pt"})
    (directory / "history.json").write_text(json.dumps({"format": "lvm-history/1", "config": TRAIN_CONFIG, "epochs": rows}))


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gatebank")
    rng = np.random.default_rng(0)
    r1, r2 = rotation(rng), rotation(rng)
    step = SwitchedRotation(torch.from_numpy(r1), torch.from_numpy(r2))
    vectors, keys = [], []
    for article in range(ARTICLES):
        v = l2_normalize(rng.normal(size=DIM))
        for chunk in range(CHUNKS):
            vectors.append(v)
            keys.append((article, chunk))
            nxt = step(torch.from_numpy(np.asarray(v, np.float32))[None, None, :])[0].numpy()
            v = l2_normalize(nxt + NOISE * rng.normal(size=DIM) / np.sqrt(DIM))
    vectors, keys = np.asarray(vectors, np.float32), np.asarray(keys, np.int64)
    write_payload(root / "payload", vectors, keys, embedder="synthetic/switched-rotation", texts=[f"article {a} chunk {c}" for a, c in keys])
    provenance = {"embedder": "synthetic/switched-rotation", "dim": DIM, "norm": "l2", "metric": "ip"}
    context_rows, target_rows = build_windows(keys, CONTEXT, np.arange(EVAL_ARTICLES))
    write_eval_set(root / "eval.npz", vectors[context_rows], vectors[target_rows], keys[target_rows], keys[context_rows], {**provenance, "split": "eval"})
    foreign = l2_normalize(vectors[context_rows] @ rotation(rng))  # the same contexts through "another encoder"
    write_eval_set(root / "eval_foreign.npz", foreign, vectors[target_rows], keys[target_rows], keys[context_rows], {**provenance, "split": "eval"})
    write_windows_spec(root / "train.json", np.arange(EVAL_ARTICLES, ARTICLES), CONTEXT, {**provenance, "split": "train"})
    # bad/ holds two bad models and a history with a per-epoch LR and the negatives of one micro-batch
    write_checkpoint(root / "bad" / "copy_last.pt", "copy_last", {}, negatives=15, good_history=False)
    write_random_preset(root / "bad" / "random.pt", negatives=15)
    rotations = {"r1": torch.from_numpy(r1), "r2": torch.from_numpy(r2)}
    trained_on = {"provenance": {**provenance, "payload_hash": load_payload(root / "payload").content_hash},
                  "training_articles": list(range(EVAL_ARTICLES, ARTICLES))}
    # broken/ holds the good model with broken records: another payload's provenance, eval articles in training, NaN weights
    write_checkpoint(root / "other_payload" / "epoch_001.pt", "switched_rotation", rotations,
                     provenance={**provenance, "embedder": "another/encoder", "payload_hash": "0" * 32}, training_articles=trained_on["training_articles"])
    write_checkpoint(root / "leaked" / "epoch_001.pt", "switched_rotation", rotations, provenance=trained_on["provenance"], training_articles=list(range(ARTICLES)))
    nan_r1 = rotations["r1"].clone()
    nan_r1[0, 0] = float("nan")
    write_checkpoint(root / "nan" / "epoch_001.pt", "switched_rotation", {"r1": nan_r1, "r2": rotations["r2"]}, **trained_on)
    write_checkpoint(root / "copier" / "epoch_001.pt", "copy_last", {}, **trained_on)
    # untrained/ holds random weights that say epoch 2, beside a history whose loss never fell
    (root / "untrained").mkdir()
    write_random_preset(root / "untrained" / "epoch_002.pt", negatives=31, epoch=2, **trained_on)
    write_two_epoch_history(root / "untrained", negatives=31, train_losses=(3.466, 3.466))
    # away/ holds a model that trained (its loss fell) into output that follows its input but points away from every truth
    write_checkpoint(root / "away" / "epoch_002.pt", "away_from_the_truth", rotations, epoch=2, step=20, **trained_on)
    write_two_epoch_history(root / "away", negatives=31, train_losses=(3.466, 2.9))
    return {"root": root, "good": write_checkpoint(root / "good" / "epoch_001.pt", "switched_rotation", rotations, **trained_on), "bad": root / "bad"}


def run_gate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, bank: dict[str, Path], checkpoint: Path, *extra: str, eval_name: str = "eval.npz") -> tuple[pytest.RunResult, dict[str, dict]]:
    """Run `checks/ -m gate` on `checkpoint`; returns the run and each subject's report.json."""
    monkeypatch.setattr(routes, "load_checkpoint", load_with_test_kinds)  # the one name the checkpoint route loads through
    root = bank["root"]
    reports = pytester.path / "reports"
    result = pytester.runpytest_inprocess(
        str(CHECKS), "-m", "gate", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
        "--payload", str(root / "payload"), "--eval-set", str(root / eval_name), "--train-data", str(root / "train.json"),
        "--checkpoint", str(checkpoint), "--nlist", "8", "--nprobe", "8", "--index-cache", str(root / "cache"),
        "--report-dir", str(reports), "--run-name", "t", *extra,
    )
    return result, {p.parent.name: json.loads(p.read_text()) for p in (reports / "t").glob("*/report.json")}


def statuses(report: dict) -> dict[str, str]:
    return {r["check"]: r["status"] for r in report.get("records", []) if r["status"] != "info"}


def failed_checks(report: dict) -> set[str]:
    return {check for check, status in statuses(report).items() if status == "fail"}


def test_good_model_passes_every_gate(pytester, monkeypatch, bank) -> None:
    result, reports = run_gate(pytester, monkeypatch, bank, bank["good"].parent, "--level", "strong")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-4000:]
    assert outcomes.get("passed", 0) >= 14
    report = reports["epoch_001"]
    assert set(statuses(report).values()) == {"pass"}, statuses(report)
    assert report["decision"]["action"] == "continue", report["decision"]
    assert report["decision"]["reason"].startswith("every gate figure passes at the strong level") and result.ret == 0
    report_dir = pytester.path / "reports" / "t" / "epoch_001"
    assert (report_dir / "report.md").is_file() and (report_dir / "offset_sweep.png").is_file() and (report_dir / "training_curves.png").is_file()
    # what the benchmark reads to time the gate against the floor of its own exact pass
    from bench.run_bench import gate_record

    details = gate_record(pytester.path / "reports" / "t")
    sets = details["query_sets"]
    model_rows = sets["model"]["exact_count"] + sets["train"]["exact_count"]  # the checkpoint's own queries
    fixed_rows = sum(sets[name]["exact_count"] for name in sets if name.startswith("baseline:") or name == "oracle")  # once per session, cached
    assert details["searched"] == {"exact_queries": model_rows, "encoded_queries": 0, "ivf_queries": sets["model"]["exact_count"],
                                   "fixed_exact_queries": fixed_rows, "fixed_ivf_queries": sets["oracle"]["exact_count"],
                                   "payload_rows": ARTICLES * CHUNKS, "dim": DIM}


def test_copy_last_and_random_models_fail_their_gates(pytester, monkeypatch, bank) -> None:
    result, reports = run_gate(pytester, monkeypatch, bank, bank["bad"], "--level", "good")
    out = result.stdout.str()
    assert set(reports) == {"copy_last", "random"}, (sorted(reports), out[-3000:])
    copy, random = reports["copy_last"], reports["random"]
    # copying the last context: no better than a baseline, peaks at offset 0, top-1 is its own context
    assert {"r_at_5_over_best_baseline_lower95", "offset_peak_margin", "echo_rate"} <= failed_checks(copy), (failed_checks(copy), out[-3000:])
    assert "not shown better than the ridge baseline" in out and "offset +0" in out
    # a copier is never an architecture verdict (the original team's tree said pivot_two_tower here)
    assert copy["decision"]["action"] == "below_baseline" and "echo_rate = 100.00%" in copy["decision"]["reason"], copy["decision"]
    # random weights: no retrieval, no separation
    assert {"r_at_5", "separation_delta"} <= failed_checks(random), (failed_checks(random), out[-3000:])
    # ... and no architecture verdict (the original team's tree would have pivoted on a random model)
    assert random["decision"]["action"] == "below_baseline" and "pivot" not in random["decision"]["reason"], random["decision"]
    # the history claims an effective batch of 32 but records the negatives of one micro-batch, and a constant LR
    assert "negatives_shortfall_vs_configured_loss" in failed_checks(copy) and "stepped per epoch" in out


def test_a_run_whose_loss_never_fell_is_a_training_problem_not_an_architecture_verdict(pytester, monkeypatch, bank) -> None:
    """Random weights recording epoch 2, beside a history whose training loss stayed flat: the decision is check_training, exit 1."""
    result, reports = run_gate(pytester, monkeypatch, bank, bank["root"] / "untrained" / "epoch_002.pt")
    decision = reports["epoch_002"]["decision"]
    assert decision["action"] == "check_training", (decision, result.stdout.str()[-3000:])
    assert "training loss did not fall (3.4660 at the first recorded epoch, 3.4660 at this one" in decision["reason"] and "pivot" not in decision["reason"]
    assert "did not learn" in decision["reason"]
    assert result.ret == 1


def test_the_architecture_verdict_needs_a_trained_informative_model_that_retrieves_nothing(pytester, monkeypatch, bank) -> None:
    """pivot_two_tower, the only architecture advice, on the model that earns it: its data checked, its loss fell over two
    epochs, its output follows its input (z far past its level), yet R@5 is 0 and it does not separate its targets."""
    result, reports = run_gate(pytester, monkeypatch, bank, bank["root"] / "away" / "epoch_002.pt")
    decision = reports["epoch_002"]["decision"]
    assert decision["action"] == "pivot_two_tower", (decision, result.stdout.str()[-3000:])
    assert "R@5 0%" in decision["reason"] and "training loss falling (3.4660 -> 2.9000)" in decision["reason"]
    assert "consider a two-tower model" in decision["reason"]
    assert result.ret == 1


def test_eval_contexts_from_another_encoder_fail_the_gates(pytester, monkeypatch, bank) -> None:
    result, reports = run_gate(pytester, monkeypatch, bank, bank["good"], "--level", "good", eval_name="eval_foreign.npz")
    failed = failed_checks(reports["epoch_001"])
    assert {"r_at_5", "separation_delta", "r_at_5_over_best_baseline_lower95"} <= failed, (failed, result.stdout.str()[-3000:])


def test_too_few_probed_lists_is_reported_as_an_index_problem(pytester, monkeypatch, bank) -> None:
    result, reports = run_gate(pytester, monkeypatch, bank, bank["good"], "--nlist", "96", "--nprobe", "1")
    out = result.stdout.str()
    report = reports["epoch_001"]
    assert failed_checks(report) == {"ivf_exact_agreement"}, (failed_checks(report), out[-3000:])
    assert "index problem, not a model problem" in out
    assert report["decision"]["action"] == "check_index", report["decision"]
    assert "IVF finds" in report["decision"]["reason"] and "raise nprobe or rebuild the index" in report["decision"]["reason"]
    assert result.ret == 1


def test_run_directory_expands_to_epoch_files_without_duplicate_last_and_best(tmp_path) -> None:
    """last.pt and best.pt holding an epoch file's weights are skipped (tests/test_run_folder.py: the rule on every route)."""
    from fixtures.gate import checkpoint_paths

    weights = {epoch: {"w": torch.full((3,), float(epoch))} for epoch in (1, 2, 3)}
    for name, epoch, step in (("epoch_001.pt", 1, 10), ("epoch_002.pt", 2, 20), ("best.pt", 1, 10), ("last.pt", 2, 20)):
        save_checkpoint(tmp_path / name, {"model_config": {}, "model_state": weights[epoch], "epoch": epoch, "step": step})
    assert [p.name for p in checkpoint_paths(str(tmp_path))] == ["epoch_001.pt", "epoch_002.pt"]
    save_checkpoint(tmp_path / "last.pt", {"model_config": {}, "model_state": weights[3], "epoch": 2, "step": 25})  # mid-epoch: a model of its own
    assert [p.name for p in checkpoint_paths(str(tmp_path))] == ["epoch_001.pt", "epoch_002.pt", "last.pt"]
    assert [p.name for p in checkpoint_paths(str(tmp_path / "epoch_002.pt"))] == ["epoch_002.pt"]
    from fixtures.options import check_model_path  # the one home of option validation refuses what cannot be expanded

    with pytest.raises(pytest.UsageError, match="no such file"):
        check_model_path("--checkpoint", str(tmp_path / "missing"), "checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(pytest.UsageError, match="holds no"):
        check_model_path("--checkpoint", str(tmp_path / "empty"), "checkpoint")


def test_a_checkpoint_of_another_payload_fails_before_any_retrieval_figure(pytester, monkeypatch, bank) -> None:
    result, reports = run_gate(pytester, monkeypatch, bank, bank["root"] / "other_payload")
    report, out = reports["epoch_001"], result.stdout.str()
    assert "checkpoint_provenance_disagreements" in failed_checks(report), (failed_checks(report), out[-3000:])
    assert "embedder: checkpoint=another/encoder" in out and "payload_hash: checkpoint=000" in out
    assert report["decision"]["action"] == "check_data" and "the checkpoint records other data" in report["decision"]["reason"]


def test_a_checkpoint_that_trained_on_eval_articles_fails_the_leakage_gate(pytester, monkeypatch, bank) -> None:
    result, reports = run_gate(pytester, monkeypatch, bank, bank["root"] / "leaked")
    report, out = reports["epoch_001"], result.stdout.str()
    assert failed_checks(report) == {"checkpoint_eval_article_overlap"}, (failed_checks(report), out[-3000:])
    assert f"{EVAL_ARTICLES} of {EVAL_ARTICLES} eval articles are training articles" in out
    assert report["decision"]["action"] == "check_data" and "eval article" in report["decision"]["reason"]


def test_nan_weights_are_named_and_no_decision_is_read_from_them(pytester, monkeypatch, bank) -> None:
    result, reports = run_gate(pytester, monkeypatch, bank, bank["root"] / "nan")
    report, out = reports["epoch_001"], result.stdout.str()
    assert {"nonfinite_weights", "nonfinite_predictions"} <= failed_checks(report), (failed_checks(report), out[-3000:])
    assert report["decision"]["action"] == "check_model", report["decision"]
    assert "predictions hold NaN or inf" in report["decision"]["reason"] and "pivot" not in report["decision"]["reason"]
    assert next(outcome for nodeid, outcome in report["outcomes"].items() if "test_decision[" in nodeid) == "failed"  # no decision read from NaN figures


def test_a_model_tied_with_its_best_baseline_does_not_beat_it(pytester, monkeypatch, bank) -> None:
    """Without training data the ridge is absent, and a copy-last model ties the copy-last baseline row for row."""
    result, reports = run_gate(pytester, monkeypatch, bank, bank["root"] / "copier", "--train-data", "none")
    report, out = reports["epoch_001"], result.stdout.str()
    for check in ("r_at_5_over_best_baseline_lower95", "context_excluded_r_at_5_over_best_baseline_lower95"):
        beats = next(r for r in report["records"] if r["check"] == check)
        # every baseline ties at R@5 0 here; the best is the one with the higher cosine (lvmcore.gate.comparison.best_baseline)
        assert beats["status"] == "fail" and beats["details"]["difference"] == 0.0 and beats["details"]["baseline"] == "mean_context", beats
    figures = next(r for r in report["records"] if r["check"] == "gate_figures")["details"]
    assert figures["model_kind"] == "copier", figures["model_kind"]
    assert report["decision"]["action"] == "below_baseline" and "it copies its input" in report["decision"]["reason"], report["decision"]


def test_the_healthy_checkpoint_passes_the_record_gates_it_has_records_for(pytester, monkeypatch, bank) -> None:
    result, reports = run_gate(pytester, monkeypatch, bank, bank["good"])
    report = reports["epoch_001"]
    statuses_seen = statuses(report)
    for check in ("checkpoint_provenance_disagreements", "checkpoint_eval_article_overlap", "nonfinite_weights", "nonfinite_predictions",
                  "r_at_5_over_best_baseline_lower95", "context_excluded_r_at_5_over_best_baseline_lower95"):
        assert statuses_seen.get(check) == "pass", (check, statuses_seen)
    figures = next(r for r in report["records"] if r["check"] == "gate_figures")["details"]
    assert figures["model_kind"] == "predictor" and report["decision"]["action"] == "continue", (figures["model_kind"], report["decision"])
    text = (pytester.path / "reports" / "t" / "epoch_001" / "report.md").read_text()
    assert "## What the model is" in text and "**predictor**" in text and "context-excluded" in text
    assert text.count(" (") > 20  # intervals beside the R@K figures


def test_an_eval_set_without_context_keys_gets_them_recovered_for_the_gate(pytester, monkeypatch, bank) -> None:
    """The public layout stores no context keys: echo, offsets and the context-excluded view still run, with the same figures."""
    with np.load(bank["root"] / "eval.npz") as ours:
        np.savez(bank["root"] / "eval_public.npz", contexts=ours["contexts"], targets=ours["targets"], truth_keys=ours["truth_keys"].astype(np.int32))
    _, with_keys = run_gate(pytester, monkeypatch, bank, bank["good"])
    result, without = run_gate(pytester, monkeypatch, bank, bank["good"], "--run-name", "public", eval_name="eval_public.npz")
    public = without.get("epoch_001") or json.loads((pytester.path / "reports" / "public" / "epoch_001" / "report.json").read_text())
    for check in ("echo_rate", "offset_peak_margin", "context_excluded_r_at_5_over_best_baseline_lower95"):
        theirs = next(r for r in public["records"] if r["check"] == check)
        ours = next(r for r in with_keys["epoch_001"]["records"] if r["check"] == check)
        assert theirs["status"] == "pass" and theirs["measured"] == ours["measured"], (check, theirs, result.stdout.str()[-2000:])


@pytest.mark.parametrize("recorded, status", [(50, "fail"), (94, "pass")])
def test_bank_loss_negatives_are_judged_against_what_the_bank_guarantees(pytester, monkeypatch, bank, recorded, status) -> None:
    """A bank loss over 100 columns with C=5 masks at most 5 per window: every positive must have seen 94 negatives."""
    config = {**TRAIN_CONFIG, "loss": "bank", "bank_size": 100, "context_length": CONTEXT, "bank_key_multiplicity": 1}
    path = bank["root"] / f"bank_{recorded}" / "epoch_001.pt"
    write_checkpoint(path, "switched_rotation", {"r1": torch.eye(DIM), "r2": torch.eye(DIM)}, negatives=recorded)
    write_history(path.parent, [[s, lr_at(s, config)] for s in range(10)], recorded, config)
    result, reports = run_gate(pytester, monkeypatch, bank, path, "-k", "negatives_match")
    check = next(r for r in reports["epoch_001"]["records"] if r["check"] == "negatives_shortfall_vs_configured_loss")
    assert check["status"] == status and check["details"]["expected"] == 94, (check, result.stdout.str()[-2000:])
