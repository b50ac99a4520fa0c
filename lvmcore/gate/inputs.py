"""The gate's own inputs, measured at gate time: are the eval set and training data it reads fit to judge a model?

A decision read from an eval set whose contexts came from another encoder (FAILURE_MODES row 2),
or from training data that holds the eval articles (row 5), says nothing about the model; the
original team's decision tree read exactly such a data bug as "the architecture cannot learn".
Plumbing measures these before training, but nothing guarantees it ran on the same files, so the
gate measures them again, with the same library functions (`lvmcore.plumbing`), and the decision
reads them before any model figure.

The near-duplicate figure reuses the oracle's exact search (the eval targets as queries, already
searched once per session by `lvmcore.gate.evaluate.fixed_results`): an eval target with a training
payload row at cosine >= 0.995 in its top list is the same text under another key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData
from lvmcore.plumbing.alignment import AlignmentVerdict, judge_alignment
from lvmcore.plumbing.key_recovery import ContextKeys, judge_context_vectors
from lvmcore.plumbing.leakage import NEAR_DUPLICATE_COSINE, training_eval_leakage
from lvmcore.sampling import sample_rows

TRAINING_SAMPLE = 5_000  # training windows aligned (25,000 context vectors at C = 5): a second at D = 768


@dataclass(frozen=True)
class InputFindings:
    """Alignment and leakage of the gate's eval set and training data; None where there is nothing to measure."""

    eval_context_aligned: float  # share of eval context vectors equal to payload[key] (stored keys) or found in it (recovered)
    eval_context_cause: str
    eval_target_aligned: float
    eval_target_cause: str
    training_target_aligned: float | None  # None without training data
    training_context_aligned: float | None
    training_cause: str
    article_overlap: float | None  # share of eval articles that are training articles
    chunk_overlap: float | None  # share of eval keys (contexts and truths) in training windows
    near_duplicate: float | None  # share of eval targets with a training payload row at cos >= 0.995
    training_windows_checked: int

    def as_dict(self) -> dict:
        return asdict(self)


def eval_alignment(eval_set: EvalSet, payload: Payload, context_keys: ContextKeys) -> tuple[AlignmentVerdict, AlignmentVerdict]:
    """(contexts, targets) against the payload, by stored or recovered keys, as plumbing judges them."""
    contexts = judge_context_vectors(eval_set.contexts, context_keys, payload, "context vectors")
    targets = judge_alignment(eval_set.targets, eval_set.truth_keys, payload, "targets")
    return contexts, targets


def training_alignment(training_data: TrainingData, payload: Payload, seed: int = 0) -> tuple[float, float, str, int]:
    """(target share, context share, cause, windows checked) of a seeded sample of training windows."""
    rows = sample_rows(training_data.count, TRAINING_SAMPLE, seed) if training_data.count > TRAINING_SAMPLE else np.arange(training_data.count)
    contexts, targets = training_data.batch(rows)
    target = judge_alignment(targets, training_data.truth_keys[rows], payload, "training targets")
    recovered = training_data.recovered_context_keys
    keys = recovered if recovered is not None else ContextKeys(training_data.context_keys[rows])
    context = judge_context_vectors(contexts, keys, payload, "training context vectors")
    cause = "; ".join(c for c in (target.cause, context.cause) if c)
    return target.fraction, context.fraction, cause, len(rows)


def training_leakage(training_data: TrainingData, eval_set: EvalSet, context_keys: ContextKeys) -> tuple[float, float]:
    """(article overlap, chunk-key overlap) of the eval keys with the training windows' keys (plumbing's figures)."""
    leakage = training_eval_leakage(training_data, eval_set, context_keys)
    return leakage.article_overlap, leakage.chunk_key_overlap


def near_duplicates_in_training(oracle_scores: np.ndarray, oracle_rows: np.ndarray, training_payload_rows: np.ndarray, payload_count: int) -> float:
    """Share of eval targets whose exact top list (the oracle's) holds a training payload row at cos >= 0.995."""
    is_training = np.zeros(payload_count, dtype=bool)
    is_training[np.asarray(training_payload_rows, dtype=np.int64)] = True
    rows = np.asarray(oracle_rows)
    training = np.where(rows >= 0, is_training[np.maximum(rows, 0)], False)
    leaked = ((np.asarray(oracle_scores) >= NEAR_DUPLICATE_COSINE) & training).any(axis=1)
    return float(leaked.mean()) if len(leaked) else 0.0


def measure_inputs(payload: Payload, eval_set: EvalSet, context_keys: ContextKeys, training_data: TrainingData | None,
                   oracle_scores: np.ndarray | None = None, oracle_rows: np.ndarray | None = None, seed: int = 0) -> InputFindings:
    """Every input figure the decision reads before any model figure."""
    contexts, targets = eval_alignment(eval_set, payload, context_keys)
    if training_data is None or training_data.count == 0:
        return InputFindings(contexts.fraction, contexts.cause, targets.fraction, targets.cause,
                             None, None, "", None, None, None, 0)
    target_share, context_share, cause, checked = training_alignment(training_data, payload, seed)
    articles, chunks = training_leakage(training_data, eval_set, context_keys)
    near = None
    if training_data.built_from_payload and oracle_scores is not None and oracle_rows is not None:
        training_rows = np.unique(np.concatenate([np.asarray(training_data.context_rows).reshape(-1), np.asarray(training_data.target_rows).reshape(-1)]))
        near = near_duplicates_in_training(oracle_scores, oracle_rows, training_rows, payload.count)
    return InputFindings(contexts.fraction, contexts.cause, targets.fraction, targets.cause,
                         target_share, context_share, cause, articles, chunks, near, checked)
