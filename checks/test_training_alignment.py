"""Plumbing: training targets AND contexts match the payload by key (row 1)."""

from __future__ import annotations

import numpy as np
import pytest

from lvmcore.plumbing.alignment import judge_alignment
from lvmcore.plumbing.key_recovery import ContextKeys, judge_context_vectors
from lvmcore.keys import nonconsecutive_context_rows
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData

pytestmark = pytest.mark.plumbing


@pytest.mark.threshold("training_target_aligned_fraction", minimum=1.0, percent=True)
def test_every_training_target_matches_payload(training_data: TrainingData, training_rows: np.ndarray, payload: Payload, threshold) -> None:
    _, targets = training_data.batch(training_rows)
    verdict = judge_alignment(targets, training_data.truth_keys[training_rows], payload, "training targets")
    threshold.check(verdict.fraction, cause=verdict.cause, details=verdict.details, context=verdict.summary)


@pytest.mark.threshold("training_context_aligned_fraction", minimum=1.0, percent=True)
def test_every_training_context_vector_matches_payload(training_data: TrainingData, training_rows: np.ndarray, payload: Payload, threshold) -> None:
    recovered = training_data.recovered_context_keys  # without context_keys in the file: the share of context vectors found in the payload
    contexts, _ = training_data.batch(training_rows)
    keys = recovered if recovered is not None else ContextKeys(training_data.context_keys[training_rows])
    verdict = judge_context_vectors(contexts, keys, payload, "training context vectors")
    threshold.check(verdict.fraction, cause=verdict.cause, details=verdict.details, context=verdict.summary)


@pytest.mark.threshold("training_nonconsecutive_fraction", minimum=0.0, above=False, percent=True)
def test_training_windows_are_consecutive(training_data: TrainingData, threshold) -> None:
    recovered = training_data.recovered_context_keys
    if recovered is not None and not recovered.complete:
        pytest.skip(f"{training_data.path} has no 'context_keys' and not every context vector matched a payload row exactly "
                    f"({recovered.recovery.summary()}): window order cannot be checked")
    broken = nonconsecutive_context_rows(training_data.context_keys, training_data.truth_keys)
    threshold.check(float(broken.mean()) if len(broken) else 0.0,
                    cause="training windows that cross documents or skip chunks: the next-chunk target is not the next chunk",
                    context=recovered.note() if recovered is not None else "")
