"""IVF against exact search by row (`lvmcore/search/agreement.py`), against brute force: a full sort of every score."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.sampling import sample_rows
from lvmcore.search.agreement import agreement_queries, top_k_row_agreement


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    rows = rng.normal(size=(count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T  # (M, N)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@settings(deadline=None, max_examples=40)
@given(st.integers(12, 60), st.integers(1, 10), st.integers(1, 8), st.integers(0, 1000))
def test_agreement_is_the_mean_shared_share_of_each_top_k(rows, queries, k, seed) -> None:
    """The index searches a perturbed copy of the payload (an index that is sometimes wrong); the share of each
    query's exact top-k that the index returns, averaged, is counted by hand."""
    rng = np.random.default_rng(seed)
    payload = unit_rows(rng, rows, 8)
    noisy = payload + 0.3 * unit_rows(rng, rows, 8)
    index = faiss.IndexFlatIP(8)
    index.add(noisy)
    asked = unit_rows(rng, queries, 8)
    exact, found = brute_top_k(payload, asked, k), brute_top_k(noisy, asked, k)
    gaps = np.sort(asked.astype(np.float64) @ payload.T.astype(np.float64), axis=1)[:, ::-1]
    if k < rows and (np.abs(gaps[:, k - 1] - gaps[:, k]) < 1e-5).any():
        return  # a tie at the k-th place: either row is a right answer
    expected = np.mean([len(set(e) & set(f)) / k for e, f in zip(exact.tolist(), found.tolist())])
    assert top_k_row_agreement(index, payload, asked, k) == pytest.approx(expected, abs=1e-12)


def test_an_exact_index_agrees_fully_and_a_wrong_one_not_at_all() -> None:
    rng = np.random.default_rng(0)
    payload = unit_rows(rng, 40, 8)
    exact = faiss.IndexFlatIP(8)
    exact.add(payload)
    asked = unit_rows(rng, 10, 8)
    assert top_k_row_agreement(exact, payload, asked, 10) == 1.0
    reversed_index = faiss.IndexFlatIP(8)
    reversed_index.add(-payload)  # returns the bottom 10 of 40: none of the top 10
    assert top_k_row_agreement(reversed_index, payload, asked, 10) == 0.0


@given(st.integers(1, 30), st.integers(1, 4), st.integers(1, 40), st.integers(0, 50))
def test_agreement_queries_are_unit_means_of_a_seeded_sample_of_contexts(windows, context, count, seed) -> None:
    contexts = np.random.default_rng(seed).normal(size=(windows, context, 5)).astype(np.float32)
    queries = agreement_queries(contexts, count, seed)
    chosen = sample_rows(windows, count, seed)
    means = contexts[chosen].astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(queries, means / np.linalg.norm(means, axis=1, keepdims=True), atol=1e-5)
    assert queries.shape == (min(windows, count), 5) and queries.dtype == np.float32
