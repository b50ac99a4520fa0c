"""Searching an IVF-Flat index list by list returns faiss's own top-k, and index_search takes that path only where it pays."""

from __future__ import annotations

from unittest import mock

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.search import ivf, ivf_by_list
from lvmcore.search.ivf import index_search
from lvmcore.search.ivf_by_list import MIN_QUERIES_PER_LIST, search_by_list

TIE = 1e-5  # scores this close are a tie: a matrix product and faiss's per-vector dot product round differently (~1e-7)


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((count, dim)).astype(np.float32)  # (count, dim)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def ivf_flat(centroids: np.ndarray, bank: np.ndarray, ids: np.ndarray | None = None, metric: int = faiss.METRIC_INNER_PRODUCT) -> faiss.IndexIVFFlat:
    """An IVF-Flat index over `bank` with the given centroids (no k-means: the lists are exactly the nearest centroids)."""
    nlist, dim = centroids.shape
    quantizer = faiss.IndexFlat(dim, metric)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
    assert index.is_trained
    if len(bank):
        index.add_with_ids(bank, ids if ids is not None else np.arange(len(bank), dtype=np.int64))
    return index


def faiss_search(index: faiss.Index, queries: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    return index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))


def tie_tolerant_differences(expected: tuple[np.ndarray, np.ndarray], found: tuple[np.ndarray, np.ndarray], tol: float = TIE) -> list[str]:
    """How `found` differs from faiss's `expected` top-k beyond ties: [] when they agree.

    Scores must match place by place within tol, and the "no result" rows (-1, scored -FLT_MAX)
    sit in the same places; a row both hold must score the same in both; a row only one holds
    must score within tol of the k-th score (two rows tied at the last place, either may take it).
    """
    (expected_scores, expected_rows), (scores, rows) = expected, found
    problems = []
    if scores.shape != expected_scores.shape or rows.shape != expected_rows.shape:
        return [f"shapes {scores.shape}, {rows.shape}, faiss's {expected_scores.shape}, {expected_rows.shape}"]
    for query, (want_scores, want_rows, got_scores, got_rows) in enumerate(zip(expected_scores, expected_rows, scores, rows)):
        if not np.allclose(got_scores, want_scores, rtol=0, atol=tol):
            problems.append(f"query {query}: scores {got_scores.tolist()}, faiss's {want_scores.tolist()}")
            continue
        if not np.array_equal(got_rows == -1, want_rows == -1):
            problems.append(f"query {query}: no-result rows (-1) at {np.flatnonzero(got_rows == -1).tolist()}, faiss's at {np.flatnonzero(want_rows == -1).tolist()}")
            continue
        want = {int(r): float(s) for r, s in zip(want_rows, want_scores) if r != -1}
        got = {int(r): float(s) for r, s in zip(got_rows, got_scores) if r != -1}
        if len(got) != int((got_rows != -1).sum()):
            problems.append(f"query {query}: a row twice in {got_rows.tolist()}")
        last = float(want_scores[-1])
        for row in want.keys() | got.keys():
            if row in want and row in got and abs(want[row] - got[row]) > tol:
                problems.append(f"query {query}: row {row} scores {got[row]}, in faiss's {want[row]}")
            elif (row in want) != (row in got) and abs(want.get(row, got.get(row)) - last) > tol:
                problems.append(f"query {query}: row {row} ({want.get(row, got.get(row))}) in one top-{len(want_rows)} only, not tied with the k-th ({last})")
    return problems


# ---- search_by_list returns faiss's own results ----------------------------------------------------


@st.composite
def banks(draw: st.DrawFn) -> dict:
    """A small random bank: unit rows, some exact duplicates (ties), lists left empty, zero queries, odd ids."""
    dim = draw(st.integers(1, 24))
    nlist = draw(st.integers(1, 12))
    count = draw(st.integers(0, 120))  # count < nlist leaves lists empty; so does a centroid nobody is nearest to
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bank = unit_rows(rng, count, dim)  # (N, D)
    duplicates = draw(st.integers(0, count // 2))
    if duplicates:
        bank[rng.choice(count, duplicates, replace=False)] = bank[rng.choice(count, duplicates)]  # exact ties
    queries = unit_rows(rng, draw(st.integers(1, 40)), dim)  # (M, D)
    queries[rng.random(len(queries)) < draw(st.sampled_from([0.0, 0.2, 1.0]))] = 0.0  # zero queries: every score ties
    if draw(st.booleans()) and count:
        queries[: min(len(queries), count)] = bank[: len(queries)]  # queries that are bank rows: their own row is a clear best
    return dict(
        centroids=unit_rows(rng, nlist, dim), bank=bank, queries=queries,
        ids=rng.permutation(count).astype(np.int64) * 3 + 7,  # ids are what the lists hold, not positions in the bank
        nprobe=draw(st.integers(1, nlist + 3)),  # past nlist, faiss probes every list
        k=draw(st.integers(1, 60)),  # often more than the probed lists hold: faiss's fill
        score_block=draw(st.sampled_from([ivf_by_list.SCORE_BLOCK, 1, 5])),  # a list's queries scored in slices too
    )


@settings(max_examples=300, deadline=None)
@given(banks())
def test_search_by_list_returns_faiss_top_k_up_to_ties(case: dict) -> None:
    index = ivf_flat(case["centroids"], case["bank"], case["ids"])
    expected = faiss_search(index, case["queries"], case["k"], case["nprobe"])
    with mock.patch.object(ivf_by_list, "SCORE_BLOCK", case["score_block"]):
        found = search_by_list(index, case["queries"], case["k"], case["nprobe"])
    assert found[0].dtype == np.float32 and found[1].dtype == np.int64
    problems = tie_tolerant_differences(expected, found)
    assert not problems, f"{len(problems)} differences from faiss's index.search beyond ties (tol {TIE}) over {len(case['queries'])} queries: " + "; ".join(problems[:3])


def test_search_by_list_pads_like_faiss_where_the_probed_lists_hold_fewer_than_k() -> None:
    rng = np.random.default_rng(1)
    index = ivf_flat(unit_rows(rng, 6, 8), unit_rows(rng, 10, 8))  # 10 rows over 6 lists, some empty
    queries = unit_rows(rng, 30, 8)
    expected_scores, expected_rows = faiss_search(index, queries, 20, 2)
    scores, rows = search_by_list(index, queries, 20, 2)
    assert (expected_rows == -1).any(), "the case must leave faiss short of k results"
    assert np.array_equal(rows == -1, expected_rows == -1) and np.array_equal(scores[rows == -1], expected_scores[expected_rows == -1]), (
        f"the fill differs from faiss's: {scores[rows == -1][:3]} / {expected_scores[expected_rows == -1][:3]}")


def test_search_by_list_reads_a_memory_mapped_index_in_place(tmp_path) -> None:
    rng = np.random.default_rng(2)
    index = ivf_flat(unit_rows(rng, 16, 12), unit_rows(rng, 900, 12))
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    mapped = faiss.read_index(str(tmp_path / "index.faiss"), faiss.IO_FLAG_MMAP)
    assert isinstance(faiss.downcast_InvertedLists(mapped.invlists), faiss.OnDiskInvertedLists)
    queries = unit_rows(rng, 200, 12)
    in_memory, in_place = search_by_list(index, queries, 10, 4), search_by_list(mapped, queries, 10, 4)
    assert np.array_equal(in_memory[1], in_place[1]) and np.array_equal(in_memory[0], in_place[0])


def test_search_by_list_refuses_an_index_it_does_not_search() -> None:
    rng = np.random.default_rng(3)
    l2 = ivf_flat(unit_rows(rng, 4, 8), unit_rows(rng, 50, 8), metric=faiss.METRIC_L2)
    with pytest.raises(TypeError, match="inner-product IndexIVFFlat"):
        search_by_list(l2, unit_rows(rng, 5, 8), 3, 2)


def test_the_tie_tolerant_comparison_rejects_what_is_not_a_tie() -> None:
    scores = np.array([[0.9, 0.5, 0.5, -np.finfo(np.float32).max]], np.float32)
    rows = np.array([[4, 2, 8, -1]])
    assert tie_tolerant_differences((scores, rows), (scores, rows[:, [0, 2, 1, 3]])) == []  # tied rows swap freely
    assert tie_tolerant_differences((scores, rows), (scores, rows[:, [1, 0, 2, 3]]))  # 0.9 and 0.5 do not
    assert tie_tolerant_differences((scores, rows), (scores, np.array([[4, 2, 9, -1]])))  # a row faiss has not, at a tie: allowed
    assert tie_tolerant_differences((scores, rows), (scores, np.array([[5, 2, 8, -1]])))  # one not at a tie: not
    assert tie_tolerant_differences((scores, rows), (scores, np.array([[4, 2, 8, 0]])))  # no fill where faiss has one
    assert tie_tolerant_differences((scores, rows), (scores, np.array([[4, 4, 8, -1]])))  # a row twice


# ---- index_search: by list where it pays, faiss everywhere else ------------------------------------


@pytest.fixture
def by_list_spy(monkeypatch) -> list:
    """Calls index_search makes to search_by_list (which still runs)."""
    calls = []

    def spy(index, queries, k, nprobe):
        calls.append((type(index).__name__, len(queries), k, nprobe))
        return search_by_list(index, queries, k, nprobe)

    monkeypatch.setattr(ivf, "search_by_list", spy)
    return calls


NLIST, DIM, NPROBE = 8, 16, 2
BIG = int(MIN_QUERIES_PER_LIST * NLIST / NPROBE)  # the fewest queries that pay: MIN_QUERIES_PER_LIST probes per list on average


def routing_index(kind: str) -> faiss.Index:
    rng = np.random.default_rng(4)
    centroids, bank = unit_rows(rng, NLIST, DIM), unit_rows(rng, 600, DIM)
    if kind == "IndexIVFFlat ip":
        return ivf_flat(centroids, bank)
    if kind == "IndexIVFFlat l2":
        return ivf_flat(centroids, bank, metric=faiss.METRIC_L2)
    if kind == "IndexIDMap(IndexIVFFlat ip)":
        return faiss.IndexIDMap(ivf_flat(centroids, bank[:0]))
    if kind == "IndexIVFFlatDedup ip":  # a subclass: its lists are not one row per id
        quantizer = faiss.IndexFlatIP(DIM)
        quantizer.add(centroids)
        index = faiss.IndexIVFFlatDedup(quantizer, DIM, NLIST, faiss.METRIC_INNER_PRODUCT)
    elif kind == "IndexIVFPQ ip":
        quantizer = faiss.IndexFlatIP(DIM)
        quantizer.add(centroids)
        index = faiss.IndexIVFPQ(quantizer, DIM, NLIST, 4, 4, faiss.METRIC_INNER_PRODUCT)
        index.train(bank)
    else:
        raise AssertionError(kind)
    index.add(bank)
    return index


def add_to_wrapper(index: faiss.Index) -> faiss.Index:
    if isinstance(index, faiss.IndexIDMap):
        index.add_with_ids(unit_rows(np.random.default_rng(4), 600, DIM), np.arange(600, dtype=np.int64) + 1000)
    return index


@pytest.mark.parametrize(
    "kind, queries, nprobe, by_list",
    [
        ("IndexIVFFlat ip", 5 * BIG, NPROBE, True),
        ("IndexIVFFlat ip", BIG, NPROBE, True),  # exactly MIN_QUERIES_PER_LIST per list
        ("IndexIVFFlat ip", int(MIN_QUERIES_PER_LIST), 10 * NLIST, True),  # nprobe past nlist counts as nlist: every list probed by each query
        ("IndexIVFFlat ip", int(MIN_QUERIES_PER_LIST) - 1, 10 * NLIST, False),  # ... so these are too few however large nprobe is
        ("IndexIVFFlat ip", BIG - 1, NPROBE, False),  # one query short
        ("IndexIVFFlat ip", 5 * BIG, None, False),  # the index's own nprobe: faiss's search
        ("IndexIVFFlat l2", 5 * BIG, NPROBE, False),
        ("IndexIVFPQ ip", 5 * BIG, NPROBE, False),
        ("IndexIDMap(IndexIVFFlat ip)", 5 * BIG, NPROBE, False),
        ("IndexIVFFlatDedup ip", 5 * BIG, NPROBE, False),
    ],
)
def test_index_search_goes_by_list_only_for_a_big_batch_over_an_inner_product_ivf_flat(by_list_spy, capfd, kind, queries, nprobe, by_list) -> None:
    index = add_to_wrapper(routing_index(kind))
    batch = unit_rows(np.random.default_rng(5), queries, DIM)
    scores, rows = index_search(index, batch, 7, nprobe)
    assert bool(by_list_spy) == by_list, f"{kind}, {queries} queries, nprobe {nprobe}: search_by_list called {len(by_list_spy)} times, expected {'once' if by_list else 'never'}"
    if by_list:
        problems = tie_tolerant_differences(faiss_search(index, batch, 7, nprobe), (scores, rows))
        assert not problems, f"index_search by list differs from faiss's: {problems[:3]}"
    else:  # faiss's own search, exactly as before
        ivf_index = faiss.extract_index_ivf(index)
        saved, ivf_index.nprobe = ivf_index.nprobe, nprobe or ivf_index.nprobe
        try:
            expected = index.search(batch, 7)
        finally:
            ivf_index.nprobe = saved
        assert np.array_equal(rows, expected[1]) and np.array_equal(scores, expected[0])
    assert capfd.readouterr().out == "", "a search printed to stdout"
