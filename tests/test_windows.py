"""Windows and document splits (`lvmcore/artifacts/windows.py`): consecutive, complete, a stable partition."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lvmcore.keys import nonconsecutive_context_rows
from lvmcore.artifacts.windows import build_windows, document_split

def as_keys(pairs) -> np.ndarray:
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


@given(st.lists(st.integers(1, 12), min_size=1, max_size=8), st.integers(1, 4))
def test_windows_are_consecutive_and_complete(lengths, context) -> None:
    keys = as_keys([(a, c) for a, n in enumerate(lengths) for c in range(n)])
    context_rows, target_rows = build_windows(keys, context)
    assert len(target_rows) == sum(max(0, n - context) for n in lengths)
    assert not nonconsecutive_context_rows(keys[context_rows], keys[target_rows]).any()


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=200, unique=True), st.integers(0, 5))
def test_document_split_is_a_stable_partition(ids, seed) -> None:
    parts = document_split(np.array(ids), {"train": 0.8, "eval": 0.2}, seed)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == sorted(ids)
    again = document_split(np.array(ids[: len(ids) // 2 + 1]), {"train": 0.8, "eval": 0.2}, seed)
    for name in parts:  # an id lands in the same part whatever other ids are present
        assert set(again[name]) <= set(parts[name])
