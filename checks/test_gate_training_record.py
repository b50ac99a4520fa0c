"""Gate: what training recorded is what it did: negatives per positive (row 9) and the LR schedule (row 10)."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.gate import CheckpointInfo

pytestmark = pytest.mark.gate


def _history_rows(info: CheckpointInfo) -> list[dict]:
    if info.history is None:
        pytest.skip(f"{info.history_path}: no history.json beside the checkpoint")
    rows = [row for row in info.history.get("epochs", []) if info.epoch is None or row.get("epoch", 0) <= info.epoch]
    if not rows:
        pytest.skip(f"{info.history_path}: no epoch row up to epoch {info.epoch}")
    return rows


def _config(info: CheckpointInfo) -> dict:
    config = dict(info.history.get("config", {})) if info.history else {}
    return config or dict(info.train_config)


@pytest.mark.threshold("negatives_per_positive_over_batch", minimum=0)
def test_negatives_per_positive_recorded(checkpoint_path, checkpoint_info: CheckpointInfo, threshold) -> None:
    """Checkpoint and history agree on the negatives each positive saw, and it is at least batch-1."""
    rows = _history_rows(checkpoint_info)
    recorded = checkpoint_info.negatives_per_positive
    history_value = rows[-1].get("negatives_per_positive")
    assert recorded is not None, f"{checkpoint_path}: the checkpoint records no negatives_per_positive"
    assert history_value == recorded, (
        f"negatives per positive: checkpoint says {recorded}, history epoch {rows[-1].get('epoch')} says {history_value}: one of them is not what training used (row 9)"
    )
    config = _config(checkpoint_info)
    batch = int(config["batch_size"])
    effective = batch * int(config.get("accumulation", 1)) * int(config.get("world_size", 1))
    threshold.check(
        int(recorded) - (batch - 1),
        cause="each positive saw fewer negatives than the other rows of its own micro-batch: the loss does not score the batch it claims",
        context=f"recorded {recorded}; micro-batch {batch} gives {batch - 1}; the effective batch {effective} would give {effective - 1}.",
        details={"recorded": recorded, "micro_batch_negatives": batch - 1, "effective_batch_negatives": effective - 1},
    )


@pytest.mark.threshold("negatives_shortfall_vs_effective_batch", minimum=0, above=False)
def test_negatives_match_effective_batch(checkpoint_path, checkpoint_info: CheckpointInfo, threshold) -> None:
    """Effective batch - 1 minus the recorded negatives: 0 when every target of the effective batch is a negative."""
    rows = _history_rows(checkpoint_info)
    config = _config(checkpoint_info)
    effective = int(config["batch_size"]) * int(config.get("accumulation", 1)) * int(config.get("world_size", 1))
    recorded = int(rows[-1]["negatives_per_positive"])
    threshold.check(
        (effective - 1) - recorded,
        cause="the loss is computed per micro-batch, so gradient accumulation (or more ranks) did not add negatives (row 9: '1,023 negatives' were 255)",
        context=f"config batch {config['batch_size']} x accumulation {config.get('accumulation', 1)} x world {config.get('world_size', 1)} = {effective}; recorded {recorded}.",
    )


@pytest.mark.threshold("lr_trace_max_relative_error", minimum=1e-6, above=False)
def test_learning_rate_follows_schedule_per_step(checkpoint_path, checkpoint_info: CheckpointInfo, threshold) -> None:
    """Every [step, lr] pair in history equals lr_at(step, config), and the LR is not constant."""
    from lvmcore.training.schedule import lr_at

    rows = _history_rows(checkpoint_info)
    config = _config(checkpoint_info)
    trace = np.array([pair for row in rows for pair in row.get("lr_trace", [])], dtype=np.float64).reshape(-1, 2)
    assert len(trace), f"{checkpoint_info.history_path}: history has no lr_trace: the schedule cannot be checked (row 10)"
    expected = np.array([lr_at(int(step), config) for step in trace[:, 0]])
    error = float(np.max(np.abs(trace[:, 1] - expected) / np.maximum(np.abs(expected), 1e-12)))
    distinct = len(np.unique(np.round(trace[:, 1], 15)))
    if len(trace) > 1 and int(config.get("total_steps", 1)) > 1:
        assert distinct > 1, (
            f"learning rate stayed at {trace[0, 1]:g} for all {len(trace)} recorded steps although the schedule {config.get('schedule')} should move it: stepped per epoch, not per optimizer step (row 10)"
        )
    threshold.check(
        error,
        cause="the recorded learning rate is not the configured schedule at that step: stepped per epoch, a different warmup/total, or a resumed run that lost its scheduler state (row 10)",
        context=f"{len(trace)} steps, {distinct} distinct LR values.",
        details={"steps": len(trace), "distinct": distinct},
    )
