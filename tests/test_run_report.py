"""The run-level report (`lvmcore.gate.run_report`): which checkpoint to keep, by paired comparisons over the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lvmcore.errors import ArtifactError
from lvmcore.gate.report import GateFigures
from lvmcore.gate.run_report import choose, load_run, main, write_run_report

ROWS = 400


def write_checkpoint_report(run: Path, name: str, epoch: int, hit_share: float, action: str = "train_more", fingerprint: str = "rows-a", seed: int = 0) -> None:
    """A report.json as a gate session writes it: the decision record and the gate figures with per-row ranks."""
    rng = np.random.default_rng(seed)
    ranks = np.where(rng.random(ROWS) < hit_share, rng.integers(1, 6, ROWS), 0)
    figures = GateFigures(
        query_sets={"baseline:copy_last": {"exact_r_at_5": 0.3, "exact_r_at_5_ci": [0.26, 0.35], "excluded_r_at_5": 0.35, "excluded_r_at_5_ci": [0.3, 0.4]}},
        comparisons={"raw": {"baseline": "copy_last"}}, checkpoint={"epoch": epoch, "step": 10 * epoch},
        row_ranks={"raw": ranks.tolist(), "context_excluded": ranks.tolist()}, eval_fingerprint=fingerprint,
    )
    records = [{"check": "decision", "status": "info", "details": {"action": action, "reason": f"{action} because"}},
               {"check": "gate_figures", "status": "info", "details": figures.as_dict()}]
    (run / name).mkdir(parents=True, exist_ok=True)
    (run / name / "report.json").write_text(json.dumps({"subject": name, "records": records, "outcomes": {}}))


def test_a_checkpoint_shown_better_is_kept_with_its_interval(tmp_path) -> None:
    write_checkpoint_report(tmp_path, "epoch_001", 1, 0.30, seed=1)
    write_checkpoint_report(tmp_path, "epoch_002", 2, 0.60, seed=2)
    write_checkpoint_report(tmp_path, "epoch_003", 3, 0.31, seed=3)
    choice = choose(load_run(tmp_path))
    assert choice.kept == "epoch_002"
    assert "epoch_002 is better than epoch_001 by" in choice.sentence and "epoch_002 is better than epoch_003 by" in choice.sentence
    assert "98.3% paired interval" in choice.sentence  # Bonferroni over the 3 pairs compared


def test_no_checkpoint_shown_better_is_said_so(tmp_path) -> None:
    """Point estimates that differ by a few rows are no win: the report says no checkpoint is shown better."""
    write_checkpoint_report(tmp_path, "epoch_001", 1, 0.40, seed=7)
    write_checkpoint_report(tmp_path, "epoch_002", 2, 0.40, seed=7)
    rows = load_run(tmp_path)
    ranks = rows[1].ranks
    ranks[np.flatnonzero(ranks == 0)[:2]] = 3  # two more hits: a two-row margin
    choice = choose(rows)
    assert choice.kept == "epoch_002" and choice.comparisons == [] and "no checkpoint is shown better than epoch_002" in choice.sentence


def test_untrusted_checkpoints_and_other_eval_sets_are_not_compared(tmp_path) -> None:
    write_checkpoint_report(tmp_path, "epoch_001", 1, 0.9, action="check_data", seed=1)
    write_checkpoint_report(tmp_path, "epoch_002", 2, 0.3, seed=2)
    assert choose(load_run(tmp_path)).kept == "epoch_002"  # a leak's 90% is not a candidate
    write_checkpoint_report(tmp_path, "epoch_003", 3, 0.3, fingerprint="rows-b", seed=3)
    choice = choose(load_run(tmp_path))
    assert choice.kept is None and "different eval sets" in choice.sentence


def test_the_report_files_and_the_command(tmp_path, capsys) -> None:
    write_checkpoint_report(tmp_path, "epoch_001", 1, 0.30, seed=1)
    write_checkpoint_report(tmp_path, "epoch_002", 2, 0.60, seed=2)
    write_run_report(tmp_path)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["keep"] == "epoch_002" and [c["name"] for c in run["checkpoints"]] == ["epoch_001", "epoch_002"]
    text = (tmp_path / "run.md").read_text()
    assert "| epoch_002 | 2 |" in text and "copy_last 30.0% (26.0-35.0) / 35.0% (30.0-40.0)" in text and (tmp_path / "run.png").stat().st_size > 0
    assert main([str(tmp_path)]) == 0 and "keep epoch_002" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2 and "holds no gate report" in capsys.readouterr().err
    with pytest.raises(ArtifactError, match="is not a run's report directory"):
        load_run(tmp_path / "missing")
