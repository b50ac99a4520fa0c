"""The negatives arithmetic the gate re-reads (lvmcore/training/negatives.py): the rows a sampled bank draws,
against a brute force over random keys, and the floor of negatives per positive against counting the columns
of the step it describes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.training.negatives import expected_negatives_per_positive, sample_bank_rows


@settings(max_examples=150, deadline=None)
@given(
    codes=st.lists(st.integers(-5, 5), min_size=0, max_size=30),
    excluded=st.lists(st.integers(-6, 6), max_size=6),
    size=st.integers(0, 35),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_bank_rows_draws_min_size_distinct_eligible_rows_sorted(codes: list[int], excluded: list[int], size: int, seed: int) -> None:
    bank_codes, excluded_codes = np.array(codes, dtype=np.int64), np.array(excluded, dtype=np.int64)
    eligible = [row for row, code in enumerate(codes) if code not in excluded]  # brute force, row by row
    rows = sample_bank_rows(bank_codes, excluded_codes, size, np.random.default_rng(seed))
    assert len(rows) == min(size, len(eligible))
    assert set(rows.tolist()) <= set(eligible) and len(set(rows.tolist())) == len(rows), "a drawn row is excluded or drawn twice"
    assert rows.tolist() == sorted(rows.tolist())
    if size >= len(eligible):
        assert rows.tolist() == eligible, "a bank no larger than the request is taken whole"
    again = sample_bank_rows(bank_codes, excluded_codes, size, np.random.default_rng(seed))
    assert np.array_equal(rows, again), "one generator state, two samples"


def test_sample_bank_rows_is_uniform_over_the_eligible_rows() -> None:
    """3 of 6 eligible rows, 6,000 draws: each row is drawn half the time (binomial sd 0.0065); excluded rows never."""
    codes = np.array([0, 1, 2, 3, 4, 5, 6, 7], dtype=np.int64)
    rng = np.random.default_rng(0)
    counts = np.zeros(8)
    for _ in range(6000):
        counts[sample_bank_rows(codes, np.array([2, 5]), 3, rng)] += 1
    assert counts[[2, 5]].sum() == 0
    np.testing.assert_allclose(counts[[0, 1, 3, 4, 6, 7]] / 6000, 0.5, atol=0.03)


@pytest.mark.parametrize("batch,accumulation,world,hard", [(3, 1, 1, 0), (4, 2, 1, 1), (2, 3, 2, 2), (1, 1, 1, 0)])
def test_in_batch_negatives_count_every_column_of_the_effective_batch_but_its_own(batch: int, accumulation: int, world: int, hard: int) -> None:
    """Count the columns a positive sees: every target and hard negative of batch x accumulation x world, minus its own target."""
    columns = [("target", i) for i in range(batch * accumulation * world)] + [("hard", i, j) for i in range(batch * accumulation * world) for j in range(hard)]
    seen = [c for c in columns if c != ("target", 0)]
    config = {"loss": "in_batch", "batch_size": batch, "accumulation": accumulation, "world_size": world, "hard_negatives": hard}
    assert expected_negatives_per_positive(config) == len(seen)


@pytest.mark.parametrize("context,multiplicity", [(5, 1), (3, 2), (1, 3), (0, 1)])
def test_bank_negatives_are_the_columns_left_after_the_most_a_window_can_mask(context: int, multiplicity: int) -> None:
    """A bank where every key is held by `multiplicity` columns: a window masks each copy of its C context keys and
    the other copies of its target key; the floor is what is left, minus the positive."""
    keys = 40
    column_keys = [k for k in range(keys) for _ in range(multiplicity)]
    context_keys, target_key = set(range(1, context + 1)), 0
    positive = column_keys.index(target_key)
    unmasked = [j for j, k in enumerate(column_keys) if j != positive and k not in context_keys and k != target_key]
    config = {"loss": "bank", "bank_size": len(column_keys), "context_length": context, "bank_key_multiplicity": multiplicity}
    assert expected_negatives_per_positive(config) == len(unmasked)
