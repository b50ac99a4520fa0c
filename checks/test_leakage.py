"""Plumbing: eval rows must come from documents the model never trained on (row 5)."""

from __future__ import annotations

import numpy as np
import pytest

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.search.ivf import index_search
from lvmcore.plumbing.key_recovery import ContextKeys
from lvmcore.plumbing.leakage import NEAR_DUPLICATE_COSINE, near_duplicate_rows, split_by_key, training_context_keys, training_eval_leakage
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData

pytestmark = pytest.mark.plumbing


@pytest.fixture(scope="session")
def leakage(training_data: TrainingData, eval_set: EvalSet, eval_context_keys: ContextKeys):
    return training_eval_leakage(training_data, eval_set, eval_context_keys)


@pytest.mark.threshold("eval_article_overlap", minimum=0.0, above=False, percent=True)
def test_no_eval_article_is_a_training_article(leakage, threshold) -> None:
    threshold.check(leakage.article_overlap,
                    cause="train/eval split made over windows, not documents: the model has read the eval articles (row 5)")


@pytest.mark.threshold("eval_chunk_key_overlap", minimum=0.0, above=False, percent=True)
def test_no_eval_chunk_is_a_training_chunk(leakage, threshold) -> None:
    threshold.check(leakage.chunk_key_overlap,
                    cause="eval chunks appear in training windows: overlapping windows split at random (row 5)")


@pytest.mark.threshold("eval_near_duplicate_fraction", minimum=0.0, above=False, percent=True)
def test_no_eval_target_has_a_near_duplicate_in_training(training_data: TrainingData, eval_set: EvalSet, payload: Payload, plumbing_index, nprobe: int, record, threshold) -> None:
    """Eval targets with a training vector at cosine >= 0.995: the eval chunk itself trained on (its key is a training
    key), or the same text under another key; the message counts each.

    Training windows read from the payload are searched in the payload: through the index when one
    is given (`--index`, `--build-index`), else exactly (no index is built for this alone).
    """
    if training_data.built_from_payload:
        training_rows = np.zeros(payload.count, dtype=bool)
        training_rows[np.unique(training_data.context_rows)] = True
        training_rows[np.unique(training_data.target_rows)] = True
        search = None if plumbing_index is None else (lambda queries, k: index_search(plumbing_index, queries, k, nprobe))  # noqa: E731  (None: exact)
        rows, saturated = near_duplicate_rows(eval_set.targets, payload.vectors, bank_is_training=training_rows, search=search)
    else:
        bank = np.concatenate([training_data.targets, training_data.contexts.reshape(-1, training_data.contexts.shape[-1])])
        rows, saturated = near_duplicate_rows(eval_set.targets, bank)
    if saturated:
        record("near_duplicate_search_saturated", 1, details={"note": "some queries had more non-training near-duplicates than k"})
    found = split_by_key(rows, eval_set.truth_keys, np.concatenate([training_data.truth_keys.reshape(-1, 2), training_context_keys(training_data)]))
    parts = []
    if found.same_key:
        parts.append(f"{found.same_key} under the same key: the eval chunk itself is in the training data (a split over windows, "
                     "not documents; see eval_chunk_key_overlap)")
    if found.other_keys:
        parts.append(f"{found.other_keys} under other keys: duplicated documents or boilerplate across the split")
    threshold.check(found.fraction,
                    cause=f"eval targets repeated (cos >= {NEAR_DUPLICATE_COSINE}) in training data: " + "; ".join(parts) + " (row 5)")
