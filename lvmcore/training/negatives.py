"""The negatives arithmetic the gate re-reads: which rows a sampled bank holds, and how many negatives each positive sees.

Two pure functions of numbers and arrays (no torch), so a gate check (`checks/test_gate_training_record.py`)
can recompute from a run's recorded config what training guaranteed and compare it with what
training measured (`StepLoss.negatives_per_positive`, recorded in history.json):

* `sample_bank_rows`: the S payload rows a sampled bank adds to a step's targets, drawn uniformly
  without replacement among the training rows whose key is not a target key of the step (seeded
  by (seed, epoch, step), the same on every rank);
* `expected_negatives_per_positive`: the floor every positive is guaranteed under a run's config,
  `B(1+k) - 1` for the in-batch loss (`lvmcore/training/in_batch_loss.py`), `K - 1 - max|M_i|` for
  the masked bank (`lvmcore/training/bank_loss.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

LOSSES = ("in_batch", "bank")


def sample_bank_rows(bank_codes: np.ndarray, excluded_codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (S,) into the bank, sorted, drawn uniformly without replacement among the columns whose
    key is not in `excluded_codes` (the step's target keys, already columns of the sampled bank).

    S = min(size, eligible columns). A pure function of its arguments: the same generator state
    gives the same sample, so a seeded run draws the same banks again (and every rank the same).
    """
    eligible = np.flatnonzero(~np.isin(bank_codes, excluded_codes))  # (K_e,)
    if size >= len(eligible):
        return eligible
    return np.sort(eligible[rng.choice(len(eligible), size=size, replace=False)])


def expected_negatives_per_positive(config: Mapping[str, Any]) -> int:
    """The negatives EVERY positive is guaranteed to see under a run's history config (history.json's "config").

    in_batch (also when "loss" is absent, as in runs before the bank loss existed):
        batch_size * accumulation * world_size * (1 + hard_negatives) - 1
        (every target and hard negative of the effective batch over all ranks, but its own target;
        1,023 for 256 x 4 on one process without hard negatives).
    bank:
        bank_size - 1 - max_masked,   max_masked = context_length * m + (m - 1)
        bank_size: the columns scored per positive (the training rows of the full bank; the
        gathered effective batch plus bank_negatives sampled rows for the sampled bank);
        m = bank_key_multiplicity: the most columns one key can hold in a step (1 when payload
        keys are unique, as the plumbing check requires). A window masks at most m columns per
        context key and m - 1 duplicates of its target; with unique keys that is bank_size - 1 - C.
        The full bank reaches this bound (every context chunk of a training window is a training
        row); the sampled bank holds a context chunk only when it was drawn or is another
        window's target, so its recorded minimum is usually above it.
    """
    loss = str(config.get("loss", "in_batch"))
    if loss == "in_batch":
        effective = int(config["batch_size"]) * int(config.get("accumulation", 1)) * int(config.get("world_size", 1))
        return effective * (1 + int(config.get("hard_negatives", 0) or 0)) - 1
    if loss == "bank":
        multiplicity = int(config.get("bank_key_multiplicity", 1))
        max_masked = int(config["context_length"]) * multiplicity + multiplicity - 1
        return int(config["bank_size"]) - 1 - max_masked
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
