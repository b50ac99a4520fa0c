"""The LR schedule: warmup then cosine, a pure function of the OPTIMIZER step (FAILURE_MODES row 10)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.training.schedule import ScheduleConfig, WarmupCosine, lr_at

CONFIG = ScheduleConfig(lr=1e-3, min_lr=1e-5, warmup_steps=10, total_steps=100)


def test_warmup_ramps_linearly_and_never_starts_at_zero() -> None:
    assert lr_at(0, CONFIG) == pytest.approx(1e-4)
    assert lr_at(4, CONFIG) == pytest.approx(5e-4)
    assert lr_at(9, CONFIG) == pytest.approx(1e-3)


def test_cosine_decays_to_min_lr_at_the_last_step_and_stays() -> None:
    assert lr_at(10, CONFIG) == pytest.approx(1e-3)
    middle = 10 + (99 - 10) / 2
    assert lr_at(int(middle), CONFIG) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * int(middle - 10) / 89)))
    assert lr_at(99, CONFIG) == pytest.approx(1e-5)
    assert lr_at(500, CONFIG) == pytest.approx(1e-5)


def test_lr_moves_within_the_first_epoch() -> None:
    """Row 10: a per-epoch schedule kept the start LR for all of epoch 1; per step, it differs step to step."""
    first_epoch = [lr_at(step, CONFIG) for step in range(50)]
    assert len(set(first_epoch)) > 40


def test_lr_at_accepts_the_history_config_mapping() -> None:
    history_config = {"lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 10, "total_steps": 100, "schedule": "warmup_cosine", "batch_size": 256}
    assert all(lr_at(s, history_config) == lr_at(s, CONFIG) for s in range(0, 120, 7))


def test_unknown_schedule_or_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        ScheduleConfig(lr=1e-3, min_lr=0.0, warmup_steps=0, total_steps=10, schedule="step")
    with pytest.raises(ValueError, match="min_lr"):
        ScheduleConfig(lr=1e-4, min_lr=1e-3, warmup_steps=0, total_steps=10)


@settings(max_examples=60, deadline=None)
@given(
    lr=st.floats(1e-6, 1.0),
    floor=st.floats(0.0, 1.0),
    warmup=st.integers(0, 50),
    total=st.integers(1, 500),
    step=st.integers(0, 1000),
)
def test_lr_stays_within_bounds_and_decays_monotonically(lr: float, floor: float, warmup: int, total: int, step: int) -> None:
    config = ScheduleConfig(lr=lr, min_lr=lr * floor, warmup_steps=warmup, total_steps=total)
    value = lr_at(step, config)
    assert value <= lr * (1 + 1e-12)
    if step < warmup:
        assert value > 0.0  # the first update is never taken at LR 0
    else:
        assert lr * floor * (1 - 1e-12) <= value  # never below the floor
        assert lr_at(step + 1, config) <= value * (1 + 1e-12)  # never rises after warmup


def test_scheduler_sets_the_optimizer_lr_per_step_and_round_trips() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=123.0)
    scheduler = WarmupCosine(optimizer, CONFIG)
    seen = []
    for _ in range(15):
        seen.append(scheduler.apply())
        assert optimizer.param_groups[0]["lr"] == seen[-1]
        scheduler.advance()
    assert seen == [lr_at(s, CONFIG) for s in range(15)]
    other = WarmupCosine(optimizer, CONFIG)
    other.load_state_dict(scheduler.state_dict())
    assert other.apply() == lr_at(15, CONFIG)
