"""Fit time and memory against payload rows, and say what they predict for a 100M-vector payload."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GIB = 2**30


@dataclass(frozen=True)
class Line:
    """value = intercept + slope * rows, least squares over the measured sizes."""

    intercept: float
    slope: float
    points: int

    def at(self, rows: float) -> float:
        return self.intercept + self.slope * rows


def fit_line(rows: list[float], values: list[float]) -> Line | None:
    """Least-squares line through (rows, value); None with fewer than two distinct sizes."""
    if len(set(rows)) < 2:
        return None
    slope, intercept = np.polyfit(np.asarray(rows, float), np.asarray(values, float), 1)
    return Line(float(intercept), float(slope), len(rows))


@dataclass(frozen=True)
class ShardPlan:
    """How a payload of `rows` x `dim` splits over ranks that each hold `rank_bytes`."""

    rows: int
    dim: int
    payload_bytes: float
    rss_bytes: float  # predicted peak RSS on one machine
    ranks: int
    rss_per_rank: float
    seconds_one_machine: float | None
    seconds_per_rank: float | None


def plan_shards(rows: int, dim: int, rss_line: Line | None, rss_ratio: float, time_line: Line | None, rank_bytes: float = 100 * GIB) -> ShardPlan:
    """Ranks needed so each rank's peak RSS fits `rank_bytes`, and the search time per rank.

    Memory: the fitted RSS line when there is one, else payload bytes x `rss_ratio`. Time: the
    search is linear in rows, so a rank's time is the line at rows / ranks (the all-gather moves
    M x k pairs per rank, negligible next to the matmul).
    """
    payload_bytes = float(rows) * dim * 4
    rss = rss_line.at(rows) if rss_line is not None else payload_bytes * rss_ratio
    ranks = max(1, math.ceil(rss / rank_bytes))
    one = time_line.at(rows) if time_line is not None else None
    per_rank = time_line.at(rows / ranks) if time_line is not None else None
    return ShardPlan(rows, dim, payload_bytes, rss, ranks, rss / ranks, one, per_rank)
