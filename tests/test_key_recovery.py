"""Key recovery (`lvmcore.plumbing.key_recovery`): exact byte matches, nearest neighbours, and the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.artifacts.payload import Payload
from lvmcore.keys import KeyIndex
from lvmcore.plumbing.key_recovery import (
    UNRECOVERED_KEY,
    PayloadDigests,
    expected_context_keys,
    judge_recovered,
    recover_context_keys,
    recover_keys,
)
from lvmcore.vectors import l2_normalize


def make_payload(rows: int = 60, dim: int = 16, seed: int = 0, duplicate: tuple[int, int] | None = None) -> Payload:
    rng = np.random.default_rng(seed)
    vectors = l2_normalize(rng.normal(size=(rows, dim))).astype(np.float32)
    if duplicate is not None:
        vectors[duplicate[1]] = vectors[duplicate[0]]
    keys = np.stack([np.arange(rows) // 10, np.arange(rows) % 10], axis=1).astype(np.int64)
    return Payload(path=Path("p"), vectors=vectors, keys=keys, manifest={"dim": dim})


@settings(max_examples=40, deadline=None)
@given(kinds=st.lists(st.sampled_from(["exact", "noisy", "foreign"]), min_size=1, max_size=30), seed=st.integers(0, 1000))
def test_each_vector_is_matched_exactly_approximately_or_not(kinds, seed) -> None:
    payload = make_payload(seed=seed)
    rng = np.random.default_rng(seed + 1)
    rows = rng.integers(0, payload.count, size=len(kinds))
    vectors = np.asarray(payload.vectors[rows]).copy()
    for i, kind in enumerate(kinds):
        if kind == "noisy":  # the same chunk through float noise: cos ~ 1 - 1e-8, bytes differ
            vectors[i] = vectors[i] + np.float32(1e-4) * rng.normal(size=payload.dim).astype(np.float32)
        elif kind == "foreign":  # another encoder: nowhere near any payload row
            vectors[i] = l2_normalize(rng.normal(size=payload.dim))
    recovery = recover_keys(vectors, payload)
    exact = np.array([k == "exact" for k in kinds])
    np.testing.assert_array_equal(recovery.exact, exact)
    np.testing.assert_array_equal(recovery.keys[exact], payload.keys[rows[exact]])
    noisy = np.array([k == "noisy" for k in kinds])
    assert recovery.approximate[noisy].all()
    np.testing.assert_array_equal(recovery.keys[noisy], payload.keys[rows[noisy]])
    foreign = np.array([k == "foreign" for k in kinds])
    assert not recovery.approximate[foreign].any()
    assert (recovery.keys[foreign] == UNRECOVERED_KEY).all()
    assert not KeyIndex.from_keys(payload.keys).contains(recovery.keys[foreign]).any()  # an unmatched key names no row
    assert np.isclose(recovery.exact_fraction, exact.mean())
    assert np.isclose(recovery.approximate_fraction, noisy.mean())
    assert recovery.complete == bool(exact.all())


def test_figures_name_exact_approximate_and_the_unmatched_cosine() -> None:
    payload = make_payload()
    rng = np.random.default_rng(3)
    vectors = np.concatenate([payload.vectors[:6], l2_normalize(rng.normal(size=(2, payload.dim)))]).astype(np.float32)
    recovery = recover_keys(vectors, payload)
    assert recovery.summary().startswith("matched exactly 75.0%, approximately 0.0%, mean cosine of the unmatched ")
    verdict = judge_recovered(recovery, "context vectors")
    assert verdict.fraction == 0.75 and "another encoder" in verdict.cause and "keys recovered from the payload" in verdict.summary
    assert verdict.details["matched_exactly"] == 0.75 and 0 < verdict.details["unmatched_mean_cosine"] < 0.9


def test_duplicate_vectors_take_the_preferred_key() -> None:
    payload = make_payload(duplicate=(3, 47))  # rows 3 (key 0,3) and 47 (key 4,7) hold the same bytes
    vector = np.asarray(payload.vectors[[3]])
    assert recover_keys(vector, payload).keys[0].tolist() == [0, 3]  # no preference: the first row
    assert recover_keys(vector, payload, prefer=np.array([[4, 7]])).keys[0].tolist() == [4, 7]


def test_a_digest_collision_is_not_an_exact_match() -> None:
    payload = make_payload()
    digests = PayloadDigests.of(payload)
    lying = PayloadDigests(sorted_digests=digests.sorted_digests, order=np.roll(digests.order, 1))  # every digest points at the wrong row
    recovery = recover_keys(np.asarray(payload.vectors[:5]), payload, digests=lying)
    assert not recovery.exact.any() and recovery.approximate.all()  # bytes are compared after the digest matches


def test_sampled_search_estimates_and_says_so() -> None:
    payload = make_payload()
    rng = np.random.default_rng(5)
    vectors = l2_normalize(rng.normal(size=(40, payload.dim))).astype(np.float32)
    recovery = recover_keys(vectors, payload, max_searched=10)
    assert recovery.searched.sum() == 10 and recovery.sampled
    assert "seeded sample of 10 of the 40" in recovery.summary()


def test_context_keys_are_recovered_window_by_window() -> None:
    payload = make_payload()
    rows = np.array([[0, 1, 2, 3, 4], [11, 12, 13, 14, 15]])
    truth = payload.keys[[5, 16]]
    found = recover_context_keys(np.asarray(payload.vectors)[rows], truth, payload)
    np.testing.assert_array_equal(found.keys, payload.keys[rows])
    np.testing.assert_array_equal(expected_context_keys(truth, 5), payload.keys[rows])
    assert found.recovered and found.complete and "recovered from the payload" in found.note()
