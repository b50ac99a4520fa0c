"""The decision as users meet it: a gate session on the models real teams hand in, decision + reason + exit code.

Every case is a predictions file for the embedded bank (real text, all-MiniLM vectors), gated by the
real suite in a subprocess exactly as `pytest checks -m gate --predictions ...` runs: honest-looking
baselines, broken output, leaked targets, misfiled rows, and an eval set whose contexts come from
another encoder. One session gates the whole folder (each file gets its own report and decision);
single-file sessions show the exit code that goes with each kind of decision. The honest strong
model that earns `continue` (exit 0) is `tests/test_gate_checks.py::test_the_healthy_checkpoint_passes...`,
on a bank whose next chunk a known function gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures import DEFAULT_DATA
from lvmcore.artifacts.evalset import load_eval_set, write_eval_set
from lvmcore.artifacts.payload import load_payload
from lvmcore.artifacts.predictions import write_predictions
from lvmcore.vectors import l2_normalize

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def noisy_copy(targets: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at exactly `cosine` to each target: the truth plus noise."""
    noise = rng.normal(size=targets.shape).astype(np.float32)
    noise = l2_normalize(noise - (noise * targets).sum(1, keepdims=True) * targets)
    return (cosine * targets + np.sqrt(1 - cosine**2) * noise).astype(np.float32)


def build_cases(root: Path) -> dict[str, Path]:
    """Predictions files for the embedded eval set, and an eval set (with and without context keys) from another encoder."""
    payload = load_payload(DEFAULT_DATA / "payload")
    eval_set = load_eval_set(DEFAULT_DATA / "eval.npz")
    rng = np.random.default_rng(0)
    targets = l2_normalize(eval_set.targets)
    copier = eval_set.contexts[:, -1, :]
    after_keys = eval_set.truth_keys + np.array([0, 1])
    after, found = payload.vectors_of(after_keys)
    two_ahead = np.where(found[:, None], after, copier)  # the chunk after the truth: one position too far
    some_zero = copier.copy()
    some_zero[[3, 50, 200]] = 0.0
    cases = {
        "leaked_targets": targets,
        "noisy_targets": noisy_copy(targets, 0.95, rng),
        "rows_shifted": np.roll(targets, -1, axis=0),
        "rows_shuffled": copier[rng.permutation(len(copier))],
        "zero_rows": some_zero,
        "all_zero": np.zeros_like(targets),
        "random": rng.normal(size=targets.shape).astype(np.float32),
        "constant": np.ones_like(targets),
        "two_ahead": two_ahead,
        "copier": copier,
    }
    folder = root / "predictions"
    folder.mkdir(parents=True)
    for name, preds in cases.items():
        write_predictions(folder / f"{name}.npz", eval_set, preds)
    # row 2: the eval contexts re-encoded by another encoder (a random rotation of the space), targets kept
    rotation = np.linalg.qr(rng.normal(size=(eval_set.dim, eval_set.dim)))[0].astype(np.float32)
    foreign = l2_normalize(eval_set.contexts @ rotation)
    for name, keys in (("foreign_contexts", eval_set.context_keys), ("foreign_contexts_no_keys", None)):
        path = root / f"{name}.npz"
        write_eval_set(path, contexts=foreign, targets=eval_set.targets, truth_keys=eval_set.truth_keys, context_keys=keys, provenance=eval_set.provenance)
        foreign_set = load_eval_set(path)
        write_predictions(root / f"{name}_model.npz", foreign_set, foreign[:, -1, :] @ rotation.T @ rotation)  # a model reading those contexts
    return {"folder": folder, "root": root}


def gate(root: Path, *args: str, run: str) -> tuple[int, dict[str, dict], str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LVM_CHECKS_CACHE": str(root / "cache")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "checks", "-m", "gate", "-p", "no:cacheprovider", "-q", "-c", str(REPO / "pytest.ini"),
                           "--report-dir", str(root / "reports"), "--run-name", run, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    reports = {p.parent.name: json.loads(p.read_text()) for p in (root / "reports" / run).glob("*/report.json")}
    return proc.returncode, reports, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("verdicts")
    cases = build_cases(root)
    code, reports, out = gate(root, "--predictions", str(cases["folder"]), run="all")
    return {"root": root, "code": code, "reports": reports, "out": out}


EXPECTED = [
    # (case, action, clauses in the reason)
    ("leaked_targets", "check_data", ["too good to be true", "equal their own truth", "R@1 100.0% against the oracle's 100.0%"]),
    ("noisy_targets", "check_data", ["too good to be true", "closes 90% of the gap to the oracle"]),
    ("rows_shifted", "check_data", ["9 of 9 rows whose row +1 is another document", "shifted by +1 row(s)"]),
    ("rows_shuffled", "check_data", ["retrieve another eval row's truth", "belong to other rows"]),
    ("zero_rows", "check_model", ["prediction_zero_rows = 3", "not a prediction per row"]),
    ("all_zero", "check_model", ["prediction_zero_rows = 421"]),
    ("random", "check_model", ["no information about its input", "prediction_input_information_z"]),
    ("constant", "check_model", ["prediction_constant_rows = 421"]),
    ("copier", "below_baseline", ["not shown better than the best context-only baseline", "echo_rate = 100.00%", "copies its input"]),
    ("two_ahead", "below_baseline", ["not shown better than the best context-only baseline"]),
]


@pytest.mark.parametrize(("case", "action", "clauses"), EXPECTED, ids=[row[0] for row in EXPECTED])
def test_each_model_gets_its_decision_and_reason(verdicts, case, action, clauses) -> None:
    report = verdicts["reports"].get(case)
    assert report is not None, verdicts["out"][-3000:]
    decision = report["decision"]
    assert decision["action"] == action, decision
    for clause in clauses:
        assert clause in decision["reason"], (clause, decision["reason"])
    for wrong in ("pivot", "copies its input" if case != "copier" else "pivot", "k=-5", "the checkpoint"):
        assert wrong not in decision["reason"], (wrong, decision["reason"])
    test_decision = next(outcome for nodeid, outcome in report["outcomes"].items() if "test_decision[" in nodeid)
    assert test_decision == "failed"  # a decision other than continue fails the session
    assert verdicts["code"] == 1


@pytest.mark.parametrize("name", ["foreign_contexts", "foreign_contexts_no_keys"])
def test_contexts_from_another_encoder_are_a_data_problem_not_an_architecture_verdict(verdicts, name) -> None:
    """Row 2 / row 16: the original team's decision tree said pivot_two_tower here."""
    root = verdicts["root"]
    code, reports, out = gate(root, "--eval-set", str(root / f"{name}.npz"), "--predictions", str(root / f"{name}_model.npz"), run=name)
    decision = reports[f"{name}_model"]["decision"]
    assert code == 1 and decision["action"] == "check_data", (decision, out[-3000:])
    assert "eval contexts are not the payload's vectors" in decision["reason"] and "pivot" not in decision["reason"], decision


def test_one_file_sessions_exit_with_their_decision(verdicts) -> None:
    """Exit code 1 with the decision in the report and on the terminal, for a data, a model and a baseline decision."""
    root = verdicts["root"]
    for case, action in (("leaked_targets", "check_data"), ("random", "check_model"), ("copier", "below_baseline")):
        code, reports, out = gate(root, "--predictions", str(root / "predictions" / f"{case}.npz"), run=f"one-{case}")
        assert code == 1 and reports[case]["decision"]["action"] == action, (case, code, out[-2000:])
        assert f"decision: {action}" in out


def test_a_predictions_file_that_cannot_be_read_still_writes_a_report_with_its_reason(verdicts) -> None:
    root = verdicts["root"]
    broken = root / "broken" / "truncated.npz"
    broken.parent.mkdir()
    broken.write_bytes((root / "predictions" / "copier.npz").read_bytes()[:500])
    code, reports, out = gate(root, "--predictions", str(broken), run="broken")
    assert code == 1, out[-2000:]
    decision = reports["truncated"]["decision"]
    assert decision["action"] == "check_model" and "an artifact could not be read" in decision["reason"] and "truncated.npz" in decision["reason"], decision


def test_overrides_reach_the_decision_and_continue_exits_zero(verdicts) -> None:
    """The same copier, with every level it fails overridden: the checks and the decision read the same levels,
    so the decision is continue and the session exits 0; no override, and it is below_baseline, exit 1."""
    root = verdicts["root"]
    copier = str(root / "predictions" / "copier.npz")
    loosened = ["--threshold", "r_at_5_over_best_baseline_lower95.minimum=-1", "--threshold", "context_excluded_r_at_5_over_best_baseline_lower95.minimum=-1",
                "--threshold", "echo_rate.minimum=1", "--threshold", "offset_peak_margin.minimum=-1"]
    code, reports, out = gate(root, "--predictions", copier, *loosened, run="loosened")
    assert code == 0 and reports["copier"]["decision"]["action"] == "continue", (code, reports["copier"]["decision"], out[-3000:])
    code, reports, _ = gate(root, "--predictions", copier, *loosened[:-2], run="offset-kept")
    assert code == 1 and reports["copier"]["decision"]["action"] == "train_more" and "peaks at k=+0" in reports["copier"]["decision"]["reason"]


def test_the_readme_table_is_the_tested_table() -> None:
    """README's table of models and decisions lists exactly the cases above, with the decisions they get."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| case in `tests/test_gate_verdicts.py`"):].split("\n\n")[0].splitlines()[2:]
    listed = {}
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in cells[0].split(":")[0].replace("`", "").split(", "):
            listed.setdefault(name, cells[1].split()[0].strip("`"))
    for case, action, _ in EXPECTED:
        assert listed.get(case) == action, (case, action, listed.get(case))
