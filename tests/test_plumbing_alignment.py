"""Alignment of vectors to the payload by key (`lvmcore/plumbing/alignment.py`), against brute force: one key and
one cosine at a time in plain Python. (Named apart from checks/test_eval_alignment.py and test_training_alignment.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.artifacts.payload import Payload
from lvmcore.plumbing import alignment
from lvmcore.plumbing.alignment import ALIGNED_COSINE, align_to_payload, best_shift, judge_alignment, shift_explanations

DIM = 4


def payload_of(keys: list[tuple[int, int]], seed: int) -> Payload:
    vectors = np.random.default_rng(seed).normal(size=(len(keys), DIM)).astype(np.float32)
    return Payload(path=Path("p"), vectors=vectors, keys=np.asarray(keys, dtype=np.int64).reshape(-1, 2), manifest={"dim": DIM})


def brute_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if norms == 0 else float(a @ b) / norms


def brute_align(vectors: np.ndarray, keys: np.ndarray, payload: Payload) -> tuple[list, list]:
    """Each vector's cosine to the FIRST payload row holding its key (NaN and False when none does)."""
    first: dict[tuple[int, int], int] = {}
    for row, key in enumerate(payload.keys.tolist()):
        first.setdefault(tuple(key), row)
    cosines, found = [], []
    for vector, key in zip(vectors.reshape(-1, DIM), keys.reshape(-1, 2).tolist()):
        row = first.get(tuple(key))
        found.append(row is not None)
        cosines.append(float("nan") if row is None else brute_cosine(vector, payload.vectors[row]))
    return cosines, found


payload_keys = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=20)


@settings(deadline=None, max_examples=60)
@given(payload_keys, st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.booleans()), min_size=0, max_size=15), st.integers(0, 2), st.integers(0, 3))
def test_alignment_matches_brute_force(keys, queries, context, seed) -> None:
    """Cosines and found flags key by key; a query marked True copies its key's payload vector (cosine 1)."""
    payload = payload_of(keys, seed)
    rng = np.random.default_rng(seed + 1)
    query_keys = np.asarray([(a, c) for a, c, _ in queries], dtype=np.int64).reshape(-1, 2)
    vectors = rng.normal(size=(len(queries), DIM)).astype(np.float32)
    copies, _ = payload.vectors_of(query_keys)
    copy = np.asarray([same for _, _, same in queries], dtype=bool)
    vectors[copy] = copies[copy]
    if context:  # (M, C, D) with (M, C, 2) keys, as context vectors are checked
        vectors, query_keys = np.repeat(vectors[:, None], context, axis=1), np.repeat(query_keys[:, None], context, axis=1)
    found = align_to_payload(vectors, query_keys, payload)
    cosines, present = brute_align(vectors, query_keys, payload)
    assert found.cosines.shape == found.found.shape == query_keys.shape[:-1]
    assert found.found.reshape(-1).tolist() == present
    np.testing.assert_allclose(found.cosines.reshape(-1), cosines, atol=1e-6)  # NaN where missing, on both sides
    aligned = [p and c >= ALIGNED_COSINE for p, c in zip(present, cosines)]
    assert found.aligned_fraction() == pytest.approx(np.mean(aligned) if aligned else 1.0)
    assert (found.checked, found.missing) == (len(present), present.count(False))
    kept = [c for p, c in zip(present, cosines) if p]
    assert (np.isnan(found.mean_cosine()) and not kept) or found.mean_cosine() == pytest.approx(np.mean(kept))


def test_alignment_over_several_blocks_equals_one_block(monkeypatch) -> None:
    payload = payload_of([(a, c) for a in range(5) for c in range(4)], 0)
    keys = payload.keys[np.random.default_rng(0).integers(0, 20, size=23)]
    vectors = np.random.default_rng(1).normal(size=(23, DIM)).astype(np.float32)
    whole = align_to_payload(vectors, keys, payload)
    monkeypatch.setattr(alignment, "BLOCK", 4)  # 6 blocks, the last one short
    blocked = align_to_payload(vectors, keys, payload)
    np.testing.assert_array_equal(whole.cosines, blocked.cosines)
    np.testing.assert_array_equal(whole.found, blocked.found)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.sampled_from(["article-1", "article+1", "chunk-1", "chunk+1", "own", "noise"]), min_size=1, max_size=12), st.integers(0, 3))
def test_shift_explanations_match_brute_force(kinds, seed) -> None:
    """Each row's vector is its key's payload vector shifted as `kinds` says; the shares are counted by hand."""
    payload = payload_of([(a, c) for a in range(6) for c in range(6)], seed)
    rng = np.random.default_rng(seed + 100)  # another stream than the payload's, so a noise row is never a payload row
    keys = rng.integers(1, 5, size=(len(kinds), 2))  # every ±1 neighbour exists
    vectors = rng.normal(size=(len(kinds), DIM)).astype(np.float32)
    moves = {"article-1": (-1, 0), "article+1": (1, 0), "chunk-1": (0, -1), "chunk+1": (0, 1), "own": (0, 0)}
    for row, kind in enumerate(kinds):
        if kind in moves:
            vectors[row] = payload.vectors_of((keys[row] + np.asarray(moves[kind]))[None])[0][0]
    shares = shift_explanations(vectors, keys, payload)
    mismatched = [kind for kind in kinds if kind != "own"]
    if not mismatched:
        assert shares == {}
        return
    assert shares == {name: pytest.approx(mismatched.count(name) / len(mismatched)) for name in ("article-1", "article+1", "chunk-1", "chunk+1")}
    best = best_shift(shares)
    top = max(shares.values())
    assert (best is None) == (top < 0.5) and (best is None or shares[best] == top)


def test_a_key_shifted_below_zero_never_matches() -> None:
    payload = payload_of([(0, 0), (0, 1)], 0)
    vectors = payload.vectors[[1]] * -1.0  # matches nothing
    assert shift_explanations(vectors, np.array([[0, 0]]), payload) == {"article-1": 0.0, "article+1": 0.0, "chunk-1": 0.0, "chunk+1": 0.0}


def test_judge_names_the_shift_another_source_or_another_bank() -> None:
    payload = payload_of([(a, c) for a in range(6) for c in range(6)], 0)
    keys = np.array([[a, c] for a in range(1, 5) for c in range(1, 5)])
    shifted = payload.vectors_of(keys + [1, 0])[0]
    verdict = judge_alignment(shifted, keys, payload, "eval targets")
    assert verdict.fraction == 0.0 and "off-by-one key" in verdict.cause and "article+1" in verdict.cause
    assert verdict.details["shift_explanations"]["article+1"] == 1.0
    noise = np.random.default_rng(5).normal(size=shifted.shape).astype(np.float32)
    assert "another encoder or source" in judge_alignment(noise, keys, payload, "eval targets").cause
    assert "another bank" in judge_alignment(noise, keys + 100, payload, "eval targets").cause
    exact = judge_alignment(payload.vectors_of(keys)[0], keys, payload, "eval targets")
    assert (exact.fraction, exact.cause, exact.details) == (1.0, "", {})
    assert exact.summary == f"{len(keys)} eval targets checked, mean cosine to payload[key] {1.0:.4f}, 0 keys missing."
