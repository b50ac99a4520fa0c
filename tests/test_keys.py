"""Properties of the key maths (`lvmcore/keys.py`): packing, the key index, duplicates, coverage and its ±1 shifts,
overlap, entropy, consecutive contexts; and the boundaries the mutation run found unpinned."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lvmcore.keys import (
    KeyIndex,
    coverage,
    distinct_count,
    duplicate_key_count,
    key_entropy_bits,
    key_overlap,
    nonconsecutive_context_rows,
    pack_keys,
    shifted_coverage,
    unpack_keys,
    value_overlap,
)

key_lists = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=0, max_size=80)


def as_keys(pairs) -> np.ndarray:
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**32 - 1)), max_size=50))
def test_pack_unpack_round_trip_and_order(pairs) -> None:
    keys = as_keys(pairs)
    codes = pack_keys(keys)
    np.testing.assert_array_equal(unpack_keys(codes), keys)
    assert [tuple(k) for k in keys[np.argsort(codes, kind="stable")]] == sorted(map(tuple, keys))


@given(key_lists, key_lists)
def test_key_index_matches_a_dict(payload_pairs, queries) -> None:
    keys = as_keys(payload_pairs)
    first_row: dict[tuple[int, int], int] = {}
    for row, key in enumerate(map(tuple, keys)):
        first_row.setdefault(key, row)
    index = KeyIndex.from_keys(keys)
    expected = [first_row.get(tuple(q), -1) for q in queries]
    assert index.first_row(as_keys(queries)).tolist() == expected
    assert coverage(index, as_keys(queries)) == (np.mean([e >= 0 for e in expected]) if queries else 1.0)


@given(key_lists)
def test_duplicates_and_distinct_add_up(pairs) -> None:
    keys = as_keys(pairs)
    assert distinct_count(keys) == len(set(pairs))
    assert duplicate_key_count(keys) == len(pairs) - len(set(pairs))


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=60, unique=True))
def test_off_by_one_article_is_recovered_by_the_shift(pairs) -> None:
    keys = as_keys(pairs)
    shifted = keys.copy()
    shifted[:, 0] -= 1  # an eval set whose article index is one less than the payload's
    result = shifted_coverage(KeyIndex.from_keys(keys), shifted)
    assert result["article+1"] == 1.0


@given(key_lists, key_lists)
def test_overlap_is_a_fraction_of_the_right_side(left, right) -> None:
    overlap = key_overlap(as_keys(left), as_keys(right))
    expected = np.mean([tuple(r) in set(left) for r in right]) if right else 0.0
    assert overlap == expected
    assert key_overlap(as_keys(right), as_keys(right)) == (1.0 if right else 0.0)
    articles_left = [a for a, _ in left]
    articles_right = sorted({a for a, _ in right})
    assert value_overlap(np.array(articles_left), np.array(articles_right)) == (
        np.mean([a in set(articles_left) for a in articles_right]) if articles_right else 0.0
    )


def test_unpack_keeps_the_shape_of_its_codes_and_returns_int64() -> None:
    keys = np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 10], [11, 12]]])  # (M=2, C=3, 2)
    out = unpack_keys(pack_keys(keys).astype(np.uint64))
    assert out.shape == (2, 3, 2) and out.dtype == np.int64
    np.testing.assert_array_equal(out, keys)


def test_duplicates_distinct_and_entropy_count_every_key_of_a_context_array() -> None:
    contexts = np.array([[[0, 1], [0, 2]], [[0, 1], [0, 3]], [[0, 1], [0, 2]]])  # (M=3, C=2, 2): 6 keys, 3 distinct
    assert duplicate_key_count(contexts) == 3 and distinct_count(contexts) == 3
    p = np.array([3, 2, 1]) / 6  # (0,1) three times, (0,2) twice, (0,3) once
    assert key_entropy_bits(contexts) == pytest.approx(float(-(p * np.log2(p)).sum()))


@given(key_lists)
def test_key_entropy_is_shannon_entropy_of_the_key_counts(pairs) -> None:
    keys = as_keys(pairs)
    counts = np.array([pairs.count(k) for k in set(pairs)], dtype=np.float64)
    p = counts / counts.sum() if len(counts) else counts
    assert key_entropy_bits(keys) == pytest.approx(float(-(p * np.log2(p)).sum()) if len(p) else 0.0, abs=1e-12)


def test_key_entropy_by_hand() -> None:
    assert key_entropy_bits(as_keys([])) == 0.0
    assert key_entropy_bits(as_keys([(3, 3)] * 16)) == 0.0  # the legacy eval set: one key over and over
    assert key_entropy_bits(as_keys([(0, c) for c in range(8)])) == pytest.approx(3.0)
    assert key_entropy_bits(as_keys([(0, 0), (0, 0), (0, 1), (0, 2)])) == pytest.approx(1.5)


def test_nonconsecutive_rows_by_hand() -> None:
    context = np.array([
        [[4, 1], [4, 2], [4, 3]],  # consecutive
        [[4, 1], [4, 2], [5, 3]],  # the last chunk from another article
        [[4, 1], [4, 3], [4, 4]],  # a gap
        [[4, 1], [5, 2], [6, 3]],  # consecutive chunk numbers, three articles
        [[4, 1], [5, 2], [4, 3]],  # the middle chunk from another article
    ])
    assert nonconsecutive_context_rows(context).tolist() == [False, True, True, True, True]
    truth_next, truth_elsewhere = np.array([[4, 4], [5, 4], [4, 5], [6, 4], [4, 4]]), np.array([[4, 9], [5, 4], [4, 5], [6, 4], [4, 4]])
    assert nonconsecutive_context_rows(context, truth_next).tolist() == [False, True, True, True, True]
    assert nonconsecutive_context_rows(context, truth_elsewhere).tolist() == [True, True, True, True, True]
    assert nonconsecutive_context_rows(context[:1], np.array([[7, 4]])).tolist() == [True]  # the truth in another article


def test_shifted_coverage_by_hand_and_a_key_shifted_below_zero_is_missing() -> None:
    payload = as_keys([(a, c) for a in range(3) for c in range(3)])  # (0..2, 0..2), (0, 0) included
    index = KeyIndex.from_keys(payload)
    result = shifted_coverage(index, as_keys([(0, 0), (1, 2), (2, 1), (2, 2)]))
    assert result == {"article-1": 0.75, "article+1": 0.5, "chunk-1": 0.75, "chunk+1": 0.5}  # (-1,0) and (0,-1) are missing, not (0,0)
    assert shifted_coverage(index, as_keys([])) == {"article-1": 1.0, "article+1": 1.0, "chunk-1": 1.0, "chunk+1": 1.0}
    assert shifted_coverage(index, as_keys([(0, 0)]), shifts=(-1,)) == {"article-1": 0.0, "chunk-1": 0.0}  # (0,-1) is not (0,0)


def test_pack_refuses_each_out_of_range_column_on_its_own_and_says_why() -> None:
    from lvmcore.keys import MAX_ARTICLE, MAX_CHUNK

    assert unpack_keys(pack_keys(as_keys([(MAX_ARTICLE, MAX_CHUNK)]))).tolist() == [[MAX_ARTICLE, MAX_CHUNK]]  # the largest key packs
    message = r"^keys must be non-negative with article < 2\*\*31 and chunk < 2\*\*32$"
    for key in ((-1, 0), (0, -1), (MAX_ARTICLE + 1, 0), (0, MAX_CHUNK + 1)):
        with pytest.raises(ValueError, match=message):
            pack_keys(np.array([key], dtype=np.int64))
    with pytest.raises(ValueError, match=r"^keys must end in a dimension of 2, got shape \(2, 3\)$"):
        pack_keys(np.zeros((2, 3), dtype=np.int64))


def test_an_empty_index_finds_no_row_as_int64() -> None:
    rows = KeyIndex.from_keys(as_keys([])).first_row(as_keys([(1, 2), (3, 4)]))
    assert rows.tolist() == [-1, -1] and rows.dtype == np.int64


def test_shift_keys_of_unsigned_and_context_shaped_keys() -> None:
    from lvmcore.keys import shift_keys

    moved, valid = shift_keys(np.array([[0, 0], [2, 5]], dtype=np.uint32), 1, -1)  # uint keys must not wrap to 2**32 - 1
    assert moved.tolist() == [[0, 0], [2, 4]] and valid.tolist() == [False, True]
    contexts = np.array([[[1, 0], [1, 1]], [[0, 3], [0, 4]]])  # (M=2, C=2, 2)
    moved, valid = shift_keys(contexts, 0, -1)
    assert valid.tolist() == [[True, True], [False, False]]
    assert moved.tolist() == [[[0, 0], [0, 1]], [[0, 0], [0, 0]]]  # rows that fell below zero read (0, 0)
