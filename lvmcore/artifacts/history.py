"""`history.json`, the training record: one typed dataclass, read and written only here.

Layout, version `"format": "lvm-history/1"` (a JSON object):
    config   object: every setting of the run with the values its defaults resolved to
             (batch_size, accumulation, world_size, effective_batch, lr, schedule, warmup_steps,
             total_steps, model_config, ...); the training-record gates read `effective_batch`
             (or batch_size x accumulation x world_size) and the schedule fields
    epochs   list of objects, one per finished epoch, in order:
             epoch (int >= 1), negatives_per_positive (int: negatives every positive saw),
             lr_trace ([[optimizer step, lr], ...] for every step of the epoch), train_loss,
             val_loss, val_cosine, val_r_at_1, val_r_at_5 (numbers), checkpoint (file name),
             and any other keys (kept as they are, e.g. the gate outcome)
The training loop (`train/loop.py`) writes it, the gate's fixtures and the report read it, and
`python -m train --resume` reads it back whole (`read_history(path, complete=True)`): every row with
the fields in `LOOP_ROW_FIELDS`, epochs 1..n in order, or one line saying how to go on.
Every value is checked with `lvmcore.artifacts.validate` (types, ranges; a NaN val_loss is kept).

Other pipelines' histories are accepted in a minimal schema: a JSON list of per-epoch objects
(`epoch` optional, defaulting to the position + 1). Only the training-record gates read a history,
and each skips, naming what is missing, unless the keys in `TRAINING_RECORD_KEYS` are there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvmcore.errors import ArtifactError
from lvmcore.artifacts.validate import read_json, require_int, require_number, require_object, require_str, shown
from lvmcore.files import write_json_atomic

HISTORY_FORMAT = "lvm-history/1"
EMPTY_HINT = (
    ": the run's per-epoch records were lost (an old non-atomic write, or a disk that lost it); "
    "move it aside and resume again to continue without the earlier epochs' rows"
)
BATCH_FIELDS = ("batch_size", "accumulation", "world_size", "effective_batch")
MINIMAL_FORMAT = "epoch-list"  # a bare JSON list of per-epoch objects (what other pipelines write); epoch defaults to position + 1
TRAINING_RECORD_KEYS = {  # what each training-record gate needs, and where
    "negatives": ("epochs[].negatives_per_positive", "config.batch_size", "config.accumulation (default 1)", "config.world_size (default 1)"),
    "schedule": ("epochs[].lr_trace", "config.lr", "config.min_lr", "config.warmup_steps", "config.total_steps", "config.schedule"),
}
NUMBER_FIELDS = ("train_loss", "val_loss", "val_cosine", "val_r_at_1", "val_r_at_5")
LOOP_ROW_FIELDS = ("epoch", *NUMBER_FIELDS, "lr_trace", "negatives_per_positive", "checkpoint")  # what `python -m train` writes and reads back
RESUME_HINT = (
    "; history.json is the run's record, so --resume stops here: restore it from a copy, or move it aside "
    "and resume again to continue without the earlier epochs' rows"
)


@dataclass
class EpochRecord:
    """One finished epoch: what the gates read is typed, everything else is kept in `extra`."""

    epoch: int
    negatives_per_positive: int | None = None
    lr_trace: list[list[float]] = field(default_factory=list)  # [[step, lr], ...]
    train_loss: float | None = None
    val_loss: float | None = None
    val_cosine: float | None = None
    val_r_at_1: float | None = None
    val_r_at_5: float | None = None
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, path: Path | None, row: Any, position: int = 0, complete: bool = False) -> "EpochRecord":
        """A row checked field by field; `complete`: it must hold every field in `LOOP_ROW_FIELDS` (our loop's rows)."""
        where = f"epochs[{position}]"
        row = require_object(path, where, row)
        missing = [name for name in (LOOP_ROW_FIELDS if complete else ("epoch",)) if name not in row]
        if missing:
            raise ArtifactError(path, f"{where} is missing field(s) {', '.join(missing)}")
        epoch = require_int(path, f"{where}.epoch", row["epoch"], minimum=1)
        negatives = row.get("negatives_per_positive")
        if negatives is not None or complete:
            require_int(path, f"{where}.negatives_per_positive", negatives, minimum=0)
        trace = row.get("lr_trace", [])
        if not isinstance(trace, list):
            raise ArtifactError(path, f"{where}.lr_trace is {shown(trace)}, expected a list of [step, lr] pairs")
        for i, pair in enumerate(trace):
            if not isinstance(pair, list) or len(pair) != 2:
                raise ArtifactError(path, f"{where}.lr_trace[{i}] is {shown(pair)}, expected a [step, lr] pair")
            require_number(path, f"{where}.lr_trace[{i}][0] (step)", pair[0])
            require_number(path, f"{where}.lr_trace[{i}][1] (lr)", pair[1])
        numbers = {}
        for name in NUMBER_FIELDS:
            value = row.get(name)
            if value is not None and not (isinstance(value, float) and not math.isfinite(value)):  # a NaN val_loss is a measurement
                require_number(path, f"{where}.{name}", value)
            if value is None and complete:
                raise ArtifactError(path, f"{where}.{name} is null, expected a number")
            numbers[name] = value
        checkpoint = row.get("checkpoint")
        if checkpoint is not None or complete:
            require_str(path, f"{where}.checkpoint", checkpoint)
        known = {"epoch", "negatives_per_positive", "lr_trace", "checkpoint", *NUMBER_FIELDS}
        return cls(
            epoch=epoch,
            negatives_per_positive=negatives,
            lr_trace=[list(p) for p in trace],
            checkpoint=checkpoint,
            extra={k: v for k, v in row.items() if k not in known},
            **numbers,
        )

    def to_dict(self) -> dict[str, Any]:
        typed = {
            "epoch": self.epoch,
            **{name: getattr(self, name) for name in NUMBER_FIELDS},
            "lr_trace": self.lr_trace,
            "negatives_per_positive": self.negatives_per_positive,
            "checkpoint": self.checkpoint,
        }
        return {**typed, **self.extra}


@dataclass
class TrainingHistory:
    """The run's settings and one `EpochRecord` per finished epoch."""

    config: dict[str, Any]
    epochs: list[EpochRecord] = field(default_factory=list)
    format: str = HISTORY_FORMAT

    def up_to(self, epoch: int | None) -> list[EpochRecord]:
        """The rows of epochs <= `epoch` (all rows for None): what a checkpoint of that epoch had seen."""
        return [row for row in self.epochs if epoch is None or row.epoch <= epoch]

    @property
    def effective_batch(self) -> int:
        """Windows behind one optimizer step over all processes: batch_size x accumulation x world_size."""
        if "effective_batch" in self.config:
            return int(self.config["effective_batch"])
        return int(self.config["batch_size"]) * int(self.config.get("accumulation", 1)) * int(self.config.get("world_size", 1))

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "config": self.config, "epochs": [row.to_dict() for row in self.epochs]}

    @classmethod
    def from_dict(cls, path: Path | None, data: Any, complete: bool = False) -> "TrainingHistory":
        """A history checked field by field; `complete`: the record our loop writes (see `read_history`)."""
        if isinstance(data, list) and not complete:  # the minimal schema other pipelines write: one object per epoch
            rows = [dict(row, epoch=row.get("epoch", i + 1)) if isinstance(row, dict) else row for i, row in enumerate(data)]
            return cls(config={}, epochs=[EpochRecord.from_dict(path, row, i) for i, row in enumerate(rows)], format=MINIMAL_FORMAT)
        if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
            raise ArtifactError(path, f'is not a training history (expected "format": "{HISTORY_FORMAT}")')
        missing = [name for name in ("config", "epochs") if complete and name not in data]
        if missing:
            raise ArtifactError(path, f"is missing field(s) {', '.join(missing)}")
        config = require_object(path, "config", data.get("config", {}))
        for name in BATCH_FIELDS:
            if name in config:
                require_int(path, f"config.{name}", config[name], minimum=1)
        epochs = data.get("epochs", [])
        if not isinstance(epochs, list):
            raise ArtifactError(path, f"epochs is {shown(epochs)} ({type(epochs).__name__}), expected a list of per-epoch objects")
        records = [EpochRecord.from_dict(path, row, i, complete=complete) for i, row in enumerate(epochs)]
        if complete:
            for i, record in enumerate(records):
                if record.epoch != i + 1:
                    raise ArtifactError(path, f"epochs[{i}] has epoch {record.epoch}, expected {i + 1} (one row per finished epoch, in order)")
        return cls(config=config, epochs=records)


def read_history(path: str | Path, complete: bool = False) -> TrainingHistory | None:
    """The history at `path`, or None when there is no such file; a malformed one is one `ArtifactError` line.

    complete=False (the gates, the report): our format or the minimal one, missing fields allowed.
    complete=True (`python -m train --resume`): the record our loop writes, whole: format
    lvm-history/1, every row with `LOOP_ROW_FIELDS`, epochs 1..n in order; a problem names how to go on.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = read_json(path, "history file", empty_hint="" if complete else EMPTY_HINT)
        return TrainingHistory.from_dict(path, data, complete=complete)
    except ArtifactError as exc:
        if not complete:
            raise
        raise ArtifactError(exc.path, f"{exc.problem}{RESUME_HINT}") from None


def write_history(path: str | Path, history: TrainingHistory) -> Path:
    """Write `history` atomically (temp file, fsync, rename): a crash leaves the old file or the new one."""
    return write_json_atomic(path, history.to_dict())
