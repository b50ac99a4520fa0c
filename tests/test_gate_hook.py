"""The trainer's gate hook (`train/gate_hook.py`): `--gate-every-epoch` records each epoch's decision, a missing report
is survived, and the summary names the failed gates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from train.gate_hook import gate_summary, run_gate
from train.loop import TrainHooks, train
from helpers.training_runs import bank, config  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FAKE_GATE = """
import json, pathlib, sys
args = sys.argv[1:]
checkpoint = pathlib.Path(args[args.index("--checkpoint") + 1])
report = pathlib.Path(args[args.index("--report-dir") + 1]) / args[args.index("--run-name") + 1] / checkpoint.stem / "report.json"
report.parent.mkdir(parents=True, exist_ok=True)
report.write_text(json.dumps({"decision": "PASS", "argv": args}))
sys.exit(0)
"""


def test_gate_every_epoch_records_the_decision(bank: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake_pytest.py"
    fake.write_text(FAKE_GATE)
    hooks = TrainHooks(pytest_command=(sys.executable, str(fake)))
    rows = train(config(bank, tmp_path / "run", epochs=2, gate_every_epoch=True, eval_set=str(bank / "eval.npz")), hooks)["epochs"]
    for row in rows:
        assert row["gate"]["exit_code"] == 0 and row["gate"]["decision"] == "PASS"
        report = tmp_path / "run" / row["gate"]["report"]
        assert report.parent.name == f"epoch_{row['epoch']:03d}"
        argv = json.loads(report.read_text())["argv"]
        assert argv[:5] == ["checks", "-m", "gate", "-p", "no:cacheprovider"]
        assert argv[argv.index("--checkpoint") + 1] == str(tmp_path / "run" / row["checkpoint"])
        assert row["gate"]["run_report"].startswith("not written:") and "per-row figures" in row["gate"]["run_report"]  # the fake gate records none


def test_gate_hook_survives_a_missing_report(tmp_path: Path) -> None:
    fake = tmp_path / "crash.py"
    fake.write_text("import sys; sys.exit(3)\n")
    result = run_gate(tmp_path, tmp_path / "epoch_001.pt", payload="p", eval_set="e", train_data="t", pytest_command=(sys.executable, str(fake)))
    assert result["exit_code"] == 3 and result["decision"] == "report missing"
    assert result["report"] == "reports/gates/epoch_001/report.json"


def test_gate_summary_names_failed_gates_decision_and_report(tmp_path: Path) -> None:
    fake = tmp_path / "fake_failing_gate.py"
    fake.write_text(FAKE_GATE.replace(
        '{"decision": "PASS", "argv": args}',
        '{"decision": {"action": "below_baseline", "reason": "copies its context"}, '
        '"records": [{"check": "r_at_5_over_best_baseline", "status": "fail"}, {"check": "r_at_5", "status": "pass"}]}',
    ).replace("sys.exit(0)", "sys.exit(1)"))
    gate = run_gate(tmp_path, tmp_path / "epoch_002.pt", payload="p", eval_set="e", train_data="t", pytest_command=(sys.executable, str(fake)))
    assert gate["failed_checks"] == ["r_at_5_over_best_baseline"]
    lines = gate_summary(gate, tmp_path).splitlines()
    assert lines[0].endswith("failed r_at_5_over_best_baseline")
    assert lines[1].endswith("below_baseline: copies its context")
    assert lines[2].endswith("reports/gates/epoch_002/report.md")
