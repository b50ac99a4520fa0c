"""Row-wise vector maths (`lvmcore/vectors.py`): norms, cosines, normalization, NaN rows, digests and duplicate rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lvmcore.vectors import cosine_rows
from lvmcore.vectors import row_norms

@settings(deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 16)), elements=st.floats(-100, 100, width=32)))
def test_row_norms_match_numpy_and_normalized_rows_have_norm_one(vectors) -> None:
    np.testing.assert_allclose(row_norms(vectors), np.linalg.norm(vectors.astype(np.float64), axis=1), rtol=1e-6, atol=1e-6)
    nonzero = np.linalg.norm(vectors, axis=1) > 1e-3
    unit = vectors[nonzero] / np.linalg.norm(vectors[nonzero], axis=1, keepdims=True)
    np.testing.assert_allclose(row_norms(unit), 1.0, atol=1e-5)
    np.testing.assert_allclose(cosine_rows(unit, unit), 1.0, atol=1e-5)


@given(st.lists(st.integers(0, 5), min_size=0, max_size=40))
def test_duplicate_vector_counts(row_ids) -> None:
    from lvmcore.vectors import duplicate_vector_counts

    vectors = np.eye(6, dtype=np.float32)[row_ids] if row_ids else np.zeros((0, 6), np.float32)
    duplicates, most = duplicate_vector_counts(vectors)
    assert duplicates == len(row_ids) - len(set(row_ids))
    assert most == (max(row_ids.count(i) for i in set(row_ids)) if row_ids else 0)


def test_nonfinite_rows_are_found_in_every_block_and_any_trailing_shape() -> None:
    from lvmcore.blocks import ROW_BLOCK
    from lvmcore.vectors import nonfinite_rows

    vectors = np.zeros((ROW_BLOCK + 100, 2, 3), dtype=np.float32)  # two blocks, (N, 2, 3) rows
    bad = [5, ROW_BLOCK + 7, ROW_BLOCK + 99]
    vectors[5, 1, 2] = np.nan
    vectors[ROW_BLOCK + 7, 0, 0] = np.inf
    vectors[ROW_BLOCK + 99, 1, 0] = -np.inf
    found = nonfinite_rows(vectors)
    assert found.tolist() == bad and found.dtype == np.int64
    clean = nonfinite_rows(np.zeros((4, 3), np.float32))
    assert clean.tolist() == [] and clean.dtype == np.int64
    assert nonfinite_rows(np.zeros((0, 3), np.float32)).tolist() == []


def test_row_digests_are_uint64_and_equal_exactly_for_equal_rows() -> None:
    from lvmcore.vectors import row_digests

    vectors = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0]], dtype=np.float32)
    digests = row_digests(vectors)
    assert digests.dtype == np.uint64 and digests[0] == digests[1] != digests[2]


def test_cosine_rows_by_hand_zero_rows_and_float32_overflow() -> None:
    a = np.array([[3.0, 4.0], [0.0, 0.0], [1e20, 1e20]], dtype=np.float32)
    b = np.array([[2.0, 0.0], [1.0, 0.0], [1e20, 1e20]], dtype=np.float32)
    cos = cosine_rows(a, b)  # 6 / (5 * 2); a zero row gives 0, not NaN; 1e20 squared overflows float32, not float64
    assert cos.tolist() == pytest.approx([0.6, 0.0, 1.0]) and cos.dtype == np.float64
    assert cosine_rows(b, a).tolist() == pytest.approx([0.6, 0.0, 1.0])


def test_l2_normalize_gives_float32_unit_rows_and_leaves_zero_rows_zero() -> None:
    from lvmcore.vectors import l2_normalize

    unit = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float64))
    assert unit.dtype == np.float32 and unit.reshape(-1).tolist() == pytest.approx([0.6, 0.8, 0.0, 0.0])
