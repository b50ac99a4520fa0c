"""`--gate-every-epoch`: run the gate suite on each epoch's checkpoint in a subprocess and record its decision.

The gate suite (`pytest checks -m gate`) writes `REPORT_DIR/gates/epoch_NNN/report.json`; we
store its exit code and `report["decision"]` in the epoch's history row, and refresh the run-level
report (`REPORT_DIR/gates/run.md`: every epoch gated so far, and which to keep). A missing or unreadable
report is recorded as such (with the exit code), never guessed: FAILURE_MODES row 11 was a gate
whose decision read a key that did not exist and so always said R@5 = 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from lvmcore.errors import ArtifactError
from lvmcore.gate.run_report import write_run_report
from lvmcore.plumbing.user_files import ReadOptions

GATE_RUN_NAME = "gates"
DEFAULT_PYTEST = (sys.executable, "-m", "pytest")
REPO_ROOT = Path(__file__).resolve().parents[1]  # where `checks/` and the root conftest live


def gate_command(
    checkpoint: Path,
    payload: str,
    eval_set: str,
    train_data: str,
    report_dir: Path,
    pytest_command: tuple[str, ...] = DEFAULT_PYTEST,
    read_options: ReadOptions = ReadOptions(),
) -> list[str]:
    """The suite's command line for one checkpoint: the trainer's files, read with the trainer's `--field` and `--allow-pickle`."""
    absolute = lambda p: str(Path(p).resolve())  # noqa: E731  the gate runs from the repository root
    return [
        *pytest_command,
        "checks",
        "-m",
        "gate",
        "-p",
        "no:cacheprovider",
        "--checkpoint",
        absolute(checkpoint),
        "--payload",
        absolute(payload),
        "--eval-set",
        absolute(eval_set),
        "--train-data",
        absolute(train_data),
        "--report-dir",
        absolute(report_dir),
        "--run-name",
        GATE_RUN_NAME,
        *read_options.as_args(),
    ]


def run_gate(
    run_dir: Path,
    checkpoint: Path,
    *,
    payload: str,
    eval_set: str,
    train_data: str,
    read_options: ReadOptions = ReadOptions(),
    pytest_command: tuple[str, ...] = DEFAULT_PYTEST,
    cwd: Path | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run the gates on `checkpoint`; return {"exit_code", "decision", "report"} for history.json.

    `report` is the report's path relative to `run_dir`. `pytest_command` lets tests inject a fake.
    The command runs in `cwd` (default: the repository root, where `checks/` is) with absolute paths.
    The gate output goes to `run_dir/reports/gates/<checkpoint stem>.log`.
    """
    run_dir = Path(run_dir)
    report_dir = run_dir / "reports"
    report = report_dir / GATE_RUN_NAME / Path(checkpoint).stem / "report.json"
    log = report_dir / GATE_RUN_NAME / f"{Path(checkpoint).stem}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = gate_command(Path(checkpoint), payload, eval_set, train_data, report_dir, pytest_command, read_options)
    with log.open("w") as out:
        try:
            exit_code = subprocess.run(command, cwd=cwd or REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False).returncode
        except subprocess.TimeoutExpired:
            exit_code = -1
            out.write(f"\ngate timed out after {timeout_s} s\n")
    relative = str(report.relative_to(run_dir))
    if not report.is_file():
        return {"exit_code": exit_code, "decision": "report missing", "report": relative, "log": str(log.relative_to(run_dir))}
    failed: list[str] = []
    try:
        content = json.loads(report.read_text())
        decision = content["decision"] if isinstance(content, dict) and "decision" in content else "report has no decision"
        failed = sorted({r["check"] for r in content.get("records", []) if r.get("status") == "fail"})
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
        decision = "report unreadable"
    return {"exit_code": exit_code, "decision": decision, "failed_checks": failed, "report": relative, "log": str(log.relative_to(run_dir)),
            "run_report": refresh_run_report(report.parent.parent, run_dir)}


def refresh_run_report(gates: Path, run_dir: Path) -> str:
    """Rewrite the run-level report (every epoch gated so far, and which to keep); its path, or why there is none yet."""
    try:
        return str(write_run_report(gates).relative_to(run_dir))
    except ArtifactError as exc:
        return f"not written: {exc}"


def gate_summary(gate: dict[str, Any], run_dir: Path) -> str:
    """Two lines for the terminal: which gates failed, the decision and its reason, where the report is."""
    decision = gate.get("decision")
    if isinstance(decision, dict):
        verdict = f"{decision.get('action')}: {decision.get('reason')}"
    else:
        verdict = str(decision)
    failed = gate.get("failed_checks") or []
    outcome = f"failed {', '.join(failed)}" if failed else ("all gates passed" if gate.get("exit_code") == 0 else f"pytest exit code {gate.get('exit_code')}")
    report = gate.get("report")
    where = Path(run_dir) / report.replace("report.json", "report.md") if report else Path(run_dir) / str(gate.get("log"))
    return f"  gate: {outcome}\n  decision: {verdict}\n  report: {where}"
