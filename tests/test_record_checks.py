"""`lvmcore/gate/record_checks.py::training_loss_span`: the loss record the decision reads before any architecture advice."""

from __future__ import annotations

import math

from hypothesis import given, strategies as st

from lvmcore.artifacts.history import EpochRecord, TrainingHistory
from lvmcore.gate.record_checks import training_loss_span


def history(losses: dict[int, float | None]) -> TrainingHistory:
    return TrainingHistory(config={}, epochs=[EpochRecord(epoch=e, train_loss=loss) for e, loss in losses.items()])


def test_no_record_or_one_epoch_shows_nothing() -> None:
    assert training_loss_span(None, 3) is None
    assert training_loss_span(history({1: 2.0}), 1) is None
    assert training_loss_span(history({1: 2.0, 2: None, 3: float("nan")}), 3) is None  # missing and NaN losses are not a record


def test_the_span_runs_from_the_first_epoch_to_the_models_own() -> None:
    record = history({3: 1.5, 1: 3.0, 2: 2.0, 4: 9.0})  # rows out of order; epoch 4 is after this checkpoint
    assert training_loss_span(record, 3) == (3.0, 1.5)
    assert training_loss_span(record, None) == (3.0, 9.0)  # a model that records no epoch: the whole record
    assert training_loss_span(record, 1) is None


@given(st.dictionaries(st.integers(1, 30), st.one_of(st.none(), st.floats(-10, 10), st.just(math.nan)), max_size=12), st.one_of(st.none(), st.integers(0, 30)))
def test_against_brute_force(losses: dict[int, float | None], epoch: int | None) -> None:
    usable = sorted((e, v) for e, v in losses.items() if v is not None and math.isfinite(v) and (epoch is None or e <= epoch))
    expected = (usable[0][1], usable[-1][1]) if len(usable) >= 2 else None
    assert training_loss_span(history(losses), epoch) == expected
