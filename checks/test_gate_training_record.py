"""Gate: what training recorded is what it did: negatives per positive (row 9) and the LR schedule (row 10).

The record is `history.json` beside the checkpoint (`lvmcore.artifacts.history`, fixture
`training_history`) and the checkpoint's own fields (`checkpoint_record`).
"""

from __future__ import annotations

import numpy as np
import pytest

from lvmcore.gate.levels import GATE_LEVELS

from lvmcore.artifacts.checkpoint import CheckpointRecord
from lvmcore.artifacts.history import EpochRecord, TrainingHistory
from lvmcore.training.negatives import expected_negatives_per_positive
from lvmcore.training.schedule import lr_at

pytestmark = pytest.mark.gate


def rows_seen(history: TrainingHistory, record: CheckpointRecord) -> list[EpochRecord]:
    """The history rows up to the checkpoint's epoch; none is a skip that says so."""
    rows = history.up_to(record.epoch)
    if not rows:
        pytest.skip(f"{record.history_path}: no epoch row up to epoch {record.epoch}")
    return rows


def schedule_config(history: TrainingHistory, record: CheckpointRecord) -> dict:
    return dict(history.config) or dict(record.train_config)


def require(record: CheckpointRecord, what: str, present: dict[str, bool]) -> None:
    """Skip, naming every key this gate needs and the record lacks (a foreign or minimal history)."""
    missing = [name for name, ok in present.items() if not ok]
    if missing:
        pytest.skip(f"{record.history_path}: the {what} gate needs {', '.join(missing)} (see TRAINING_RECORD_KEYS in lvmcore/artifacts/history.py); this record has none of it to check")


@pytest.mark.threshold("negatives_per_positive_over_batch", **GATE_LEVELS["negatives_per_positive_over_batch"].marker())
def test_negatives_per_positive_recorded(checkpoint_path, checkpoint_record: CheckpointRecord, training_history: TrainingHistory, threshold) -> None:
    """Checkpoint and history agree on the negatives each positive saw, and it is at least batch-1."""
    last = rows_seen(training_history, checkpoint_record)[-1]
    config = schedule_config(training_history, checkpoint_record)
    require(checkpoint_record, "negatives", {"epochs[].negatives_per_positive": last.negatives_per_positive is not None, "config.batch_size": "batch_size" in config})
    recorded = checkpoint_record.negatives_per_positive
    if recorded is not None:  # our checkpoints record it too: the two must agree
        assert last.negatives_per_positive == recorded, (
            f"negatives per positive: checkpoint says {recorded}, history epoch {last.epoch} says {last.negatives_per_positive}: one of them is not what training used (row 9)"
        )
    recorded = last.negatives_per_positive
    batch = int(config["batch_size"])
    effective = training_history.effective_batch
    threshold.check(
        int(recorded) - (batch - 1),
        cause="each positive saw fewer negatives than the other rows of its own micro-batch: the loss does not score the batch it claims",
        context=f"recorded {recorded}; micro-batch {batch} gives {batch - 1}; the effective batch {effective} would give {effective - 1}.",
        details={"recorded": recorded, "micro_batch_negatives": batch - 1, "effective_batch_negatives": effective - 1},
    )


@pytest.mark.threshold("negatives_shortfall_vs_configured_loss", **GATE_LEVELS["negatives_shortfall_vs_configured_loss"].marker())
def test_negatives_match_effective_batch(checkpoint_path, checkpoint_record: CheckpointRecord, training_history: TrainingHistory, threshold) -> None:
    """Negatives the configured loss guarantees every positive minus those recorded: 0 or less when it scored what it claims.

    In-batch InfoNCE: every other target of the effective batch (batch x accumulation x ranks), so
    255 recorded for a claimed 256 x 4 is row 9's failure. Bank loss: the bank's columns less the
    window's own masked context (`lvmcore.training.loss.expected_negatives_per_positive`).
    """
    last = rows_seen(training_history, checkpoint_record)[-1]
    config = training_history.config
    loss = str(config.get("loss", "in_batch"))
    needed = {"epochs[].negatives_per_positive": last.negatives_per_positive is not None}
    needed |= {"config.bank_size": "bank_size" in config, "config.context_length": "context_length" in config} if loss == "bank" else {"config.batch_size": "batch_size" in config}
    require(checkpoint_record, "negatives", needed)
    expected = expected_negatives_per_positive(config)
    if loss == "bank":
        claim = f"bank loss over {config['bank_size']:,} columns less at most {config['context_length']} masked context chunks per window = {expected:,}"
        cause = "the bank loss scored fewer columns than its bank, or masked more than the window's own context"
    else:
        claim = (f"config batch {config.get('batch_size', '?')} x accumulation {config.get('accumulation', 1)} x world {config.get('world_size', 1)}"
                 f" = {training_history.effective_batch} gives {expected:,}")
        cause = "the loss is computed per micro-batch, so gradient accumulation (or more ranks) did not add negatives (row 9: '1,023 negatives' were 255)"
    threshold.check(
        expected - int(last.negatives_per_positive),
        cause=cause,
        context=f"{claim}; recorded {last.negatives_per_positive:,}.",
        details={"loss": loss, "expected": expected, "recorded": last.negatives_per_positive},
    )


@pytest.mark.threshold("lr_trace_max_relative_error", **GATE_LEVELS["lr_trace_max_relative_error"].marker())
def test_learning_rate_follows_schedule_per_step(checkpoint_path, checkpoint_record: CheckpointRecord, training_history: TrainingHistory, threshold) -> None:
    """Every [step, lr] pair in history equals lr_at(step, config), and the LR is not constant."""
    rows = rows_seen(training_history, checkpoint_record)
    config = schedule_config(training_history, checkpoint_record)
    require(checkpoint_record, "schedule", {"config.lr": "lr" in config, "config.total_steps": "total_steps" in config})
    trace = np.array([pair for row in rows for pair in row.lr_trace], dtype=np.float64).reshape(-1, 2)
    assert len(trace), f"{checkpoint_record.history_path}: history has no lr_trace: the schedule cannot be checked (row 10)"
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
