"""The example for another repository (`examples/your-repo/`): its script, run as its CI runs it.

`gate_training.sh` starts `lvm-checks watch` beside a trainer that knows nothing of lvm-checks
(`train_toy.py`: its own checkpoint layout, saved in place), loaded through the team's adapter. The
test copies the example folder elsewhere, as a repository of its own, and runs the workflow's step.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

EXAMPLE = REPO / "examples" / "your-repo"


def lvm_checks_command() -> str:
    """The installed console script, as the workflow runs it (it does not put the working directory first on sys.path)."""
    script = Path(sys.executable).parent / "lvm-checks"
    return str(script) if script.is_file() else f"{sys.executable} -m lvm_checks"


def run_step(repo: Path, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LVM_CHECKS": lvm_checks_command(), "LVM_CHECKS_ARGS": "--model-adapter lvm_adapter:load_predictor --settle 0.3 --poll 0.2",
           "LVM_WATCH_TIMEOUT": "300", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "gate_training.sh", "runs/exp", "--", *command], cwd=repo, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_example_gates_every_checkpoint_its_trainer_writes(tmp_path: Path) -> None:
    repo = tmp_path / "their-repo"
    shutil.copytree(EXAMPLE, repo)
    done = run_step(repo, sys.executable, "train_toy.py", "--out", "runs/exp", "--epochs", "3", "--seconds-per-epoch", "1")
    log = done.stdout + done.stderr
    assert done.returncode in (0, 1), log  # the worst decision's exit code, not the script's own failure
    gates = repo / "runs" / "exp" / "reports" / "gates"
    for epoch in (1, 2, 3):
        name = f"epoch_{epoch:03d}"
        assert log.count(f"gating {name}.pt (adapter route)") == 1, log
        report = json.loads((gates / name / "report.json").read_text())
        assert report["options"]["measured"]["subject"]["file"]["sha256"] == hashlib.sha256((repo / "runs" / "exp" / f"{name}.pt").read_bytes()).hexdigest()
        assert report["decision"]["action"]
    run = json.loads((gates / "run.json").read_text())
    assert [c["name"] for c in run["checkpoints"]] == ["epoch_001", "epoch_002", "epoch_003"] and run["keep"]
    assert (repo / "runs" / "exp" / "TRAINING_DONE").is_file()


@pytest.mark.slow
def test_a_failed_training_job_fails_the_step_with_its_own_code(tmp_path: Path) -> None:
    repo = tmp_path / "their-repo"
    shutil.copytree(EXAMPLE, repo)
    done = run_step(repo, "bash", "-c", "exit 3")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no checkpoint was gated" in done.stdout  # and the watcher said it certified nothing
