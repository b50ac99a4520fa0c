"""Overlap between training data and the eval set: documents, chunk keys and near-duplicate vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from typing import Callable

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.training_data import TrainingData
from lvmcore.plumbing.key_recovery import ContextKeys
from lvmcore.search.exact import exact_search
from lvmcore.keys import KeyIndex, key_overlap, value_overlap

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (queries, k) -> (scores, rows)

NEAR_DUPLICATE_COSINE = 0.995


@dataclass(frozen=True)
class Leakage:
    """Each figure is the fraction of the EVAL side that also appears on the training side."""

    article_overlap: float
    chunk_key_overlap: float


def key_leakage(train_context_keys: np.ndarray, train_truth_keys: np.ndarray, eval_keys: np.ndarray) -> Leakage:
    """Article and chunk-key overlap of the eval keys (contexts and truths) with every training key."""
    train_keys = np.concatenate([np.asarray(train_context_keys).reshape(-1, 2), np.asarray(train_truth_keys).reshape(-1, 2)])
    eval_keys = np.asarray(eval_keys).reshape(-1, 2)
    return Leakage(
        article_overlap=value_overlap(train_keys[:, 0], eval_keys[:, 0]),
        chunk_key_overlap=key_overlap(train_keys, eval_keys),
    )


def near_duplicate_fraction(
    eval_vectors: np.ndarray,
    bank: np.ndarray,
    bank_is_training: np.ndarray | None = None,
    threshold: float = NEAR_DUPLICATE_COSINE,
    k: int = 16,
    search: Search | None = None,
) -> tuple[float, bool]:
    """Fraction of eval vectors with a training vector at cosine >= threshold; see `near_duplicate_rows`."""
    leaked, saturated = near_duplicate_rows(eval_vectors, bank, bank_is_training, threshold, k, search)
    return (float(leaked.mean()) if len(leaked) else 0.0), saturated


def near_duplicate_rows(
    eval_vectors: np.ndarray,
    bank: np.ndarray,
    bank_is_training: np.ndarray | None = None,
    threshold: float = NEAR_DUPLICATE_COSINE,
    k: int = 16,
    search: Search | None = None,
) -> tuple[np.ndarray, bool]:
    """Which eval vectors (M,) bool have a training vector at cosine >= threshold (vectors unit norm).

    bank: training vectors, or the whole payload with `bank_is_training` marking training rows (the
    eval vector's own payload row is then not training, so it cannot count). Rows at cosine >= the
    threshold always outrank lower ones, so the top-k holds every near-duplicate unless more than k
    non-training rows tie above it; the second value says whether that happened (then raise k).
    search: how to find the top-k over `bank` (default: exact). An IVF index over the bank is ~30x
    cheaper and loses nothing that matters here: vectors at cosine >= 0.995 share their nearest list.
    """
    if len(eval_vectors) == 0 or len(bank) == 0:
        return np.zeros(len(eval_vectors), dtype=bool), False
    scores, rows = search(eval_vectors, k) if search is not None else exact_search(bank, eval_vectors, k)
    close = scores >= threshold
    if bank_is_training is not None:
        training = np.where(rows >= 0, np.asarray(bank_is_training)[np.maximum(rows, 0)], False)
        leaked = (close & training).any(axis=1)
        saturated = bool((close.all(axis=1) & ~leaked).any())
    else:
        leaked = close.any(axis=1)
        saturated = False
    return leaked, saturated


@dataclass(frozen=True)
class NearDuplicates:
    """Eval targets with a near-duplicate in training, split by whether the target's own key is a training key."""

    rows: np.ndarray  # (M,) bool: a training vector at cosine >= the threshold
    own_key_trained: np.ndarray  # (M,) bool: the eval target's key is itself among the training keys

    @property
    def fraction(self) -> float:
        return float(self.rows.mean()) if len(self.rows) else 0.0

    @property
    def same_key(self) -> int:
        """Near-duplicates that are the eval chunk itself, trained on: chunk-key leakage seen by its vector."""
        return int((self.rows & self.own_key_trained).sum())

    @property
    def other_keys(self) -> int:
        """Near-duplicates under another key: the same text in another document (duplicates, boilerplate)."""
        return int((self.rows & ~self.own_key_trained).sum())


def split_by_key(rows: np.ndarray, eval_keys: np.ndarray, training_keys: np.ndarray) -> NearDuplicates:
    """`near_duplicate_rows`' answer with each eval key (M, 2) looked up among the training keys (T, 2)."""
    trained = KeyIndex.from_keys(np.asarray(training_keys).reshape(-1, 2)).contains(np.asarray(eval_keys).reshape(-1, 2))
    return NearDuplicates(np.asarray(rows, dtype=bool), trained)


def eval_keys(eval_set: EvalSet, context_keys: ContextKeys) -> np.ndarray:
    """Truth keys and every context key; recovered context keys only where the vector matched a payload row exactly."""
    keys = context_keys.keys.reshape(-1, 2)
    if context_keys.recovery is not None:
        keys = keys[context_keys.recovery.exact]
    return np.concatenate([eval_set.truth_keys, keys])


def training_context_keys(training_data: TrainingData) -> np.ndarray:
    """Every training context key; recovered ones only where the vector matched a payload row exactly."""
    keys = training_data.context_keys.reshape(-1, 2)
    if training_data.recovered_context_keys is not None:  # unmatched training contexts have no key to compare
        keys = keys[training_data.recovered_context_keys.recovery.exact]
    return keys


def training_eval_leakage(training_data: TrainingData, eval_set: EvalSet, context_keys: ContextKeys) -> Leakage:
    """Article and chunk-key overlap of the eval set (truths and contexts) with the training windows: plumbing's and the gate's."""
    return key_leakage(training_context_keys(training_data), training_data.truth_keys, eval_keys(eval_set, context_keys))
