"""Learning-rate schedule: linear warmup, then cosine decay, stepped once per OPTIMIZER step.

FAILURE_MODES row 10: a schedule stepped per epoch left the LR at its start value for all of
epoch 1. Here the rate is a pure function of the optimizer step, `lr_at(step, config)`, so a
checker can recompute every `[step, lr]` pair that training writes into `history.json`.

Step convention: `step` is the 0-based index of the optimizer step about to be taken. Warmup
ramps `lr * (step + 1) / warmup_steps` over steps 0..warmup_steps-1, so the first update is never
taken at LR 0; from `warmup_steps` the rate follows a half cosine from `lr` down to `min_lr`,
reached at `total_steps - 1` and held after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

SCHEDULE_NAME = "warmup_cosine"


@dataclass(frozen=True)
class ScheduleConfig:
    """What `lr_at` needs; the same fields are stored in history.json's config."""

    lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int
    schedule: str = SCHEDULE_NAME

    def __post_init__(self) -> None:
        if self.schedule != SCHEDULE_NAME:
            raise ValueError(f"unknown schedule {self.schedule!r}; only {SCHEDULE_NAME!r} exists")
        if self.warmup_steps < 0 or self.total_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got {self.warmup_steps}, {self.total_steps}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} is above lr {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_config(config: ScheduleConfig | Mapping[str, Any]) -> ScheduleConfig:
    """Accept a ScheduleConfig or any mapping holding its fields (e.g. history.json's config)."""
    if isinstance(config, ScheduleConfig):
        return config
    return ScheduleConfig(
        lr=float(config["lr"]),
        min_lr=float(config["min_lr"]),
        warmup_steps=int(config["warmup_steps"]),
        total_steps=int(config["total_steps"]),
        schedule=str(config.get("schedule", SCHEDULE_NAME)),
    )


def lr_at(step: int, config: ScheduleConfig | Mapping[str, Any]) -> float:
    """Learning rate of 0-based optimizer step `step` (pure: no state, no side effects)."""
    c = schedule_config(config)
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    decay_steps = max(1, c.total_steps - 1 - c.warmup_steps)
    progress = min(1.0, (step - c.warmup_steps) / decay_steps)
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets every param group's LR to `lr_at(step)` before each optimizer step; state is the step count."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: ScheduleConfig) -> None:
        self.optimizer = optimizer
        self.config = config
        self.step_count = 0  # optimizer steps taken so far

    def apply(self) -> float:
        """Set the LR for the step about to be taken and return it."""
        lr = lr_at(self.step_count, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def advance(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "config": self.config.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step_count = int(state["step_count"])
