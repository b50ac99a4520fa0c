"""The gate's query sets and what one search returned for them: the types evaluate, fixed_sets, predict and routes share.

A model reaches the gate as `PredictFn` (contexts -> predictions) and, for a two-tower model,
`BankFn` (its payload tower); `lvmcore.gate.predict` makes them from a loaded model,
`lvmcore.gate.routes` from every other route. A `QuerySet` is one set of queries with what a hit
means for it; `Found` is what the one search (`lvmcore.gate.evaluate.search_once`) returned for it;
`FixedResults` are the sets that do not depend on the model, cached on disk by
`lvmcore.gate.fixed_sets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PredictFn = Callable[[np.ndarray], np.ndarray]  # contexts (M, C, D) -> predictions (M, D)
BankFn = Callable[[np.ndarray], np.ndarray]  # payload vectors (N, D) -> the bank a two-tower model's predictions are searched in


@dataclass
class QuerySet:
    """One set of queries with what a hit means for it."""

    name: str
    queries: np.ndarray  # (M, D)
    targets: np.ndarray  # (M, D), in the bank's space
    truth_keys: np.ndarray  # (M, 2)
    context_keys: np.ndarray | None  # (M, C, 2)
    encoded_bank: bool  # search bank_fn(payload) instead of the payload


@dataclass
class Found:
    """What the one search returned for a query set: exact top-(50 + C + margin) scores and rows
    (deep enough to drop the query's own context chunks and keep 50), IVF top-50 rows if searched."""

    scores: np.ndarray  # (M, K >= 50)
    rows: np.ndarray  # (M, K >= 50)
    ivf_rows: np.ndarray | None = None  # (M, 50)


@dataclass
class FixedResults:
    """The query sets that do not depend on the model (the baselines and the oracle) and their search results.

    Computed once per (payload, eval set, training data, search settings) and reused for every
    checkpoint: in one session through the gate fixture, across sessions through
    `lvmcore.gate.fixed_sets` (an on-disk cache keyed by content hashes).
    """

    sets: list[QuerySet]  # the baselines, then the oracle
    found: dict[str, Found]
    ridge_alpha: float | None
    seconds: dict[str, float]
    searched: dict[str, int]

    @property
    def baseline_names(self) -> list[str]:
        return [s.name for s in self.sets if s.name != "oracle"]
