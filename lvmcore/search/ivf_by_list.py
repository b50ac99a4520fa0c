"""IVF-Flat inner-product search batched by inverted list: the same top-k as `index.search`, faster for big batches.

faiss's `index.search` scans each query's `nprobe` lists one query at a time: at seed scale
(584,545 x 768, 3,058 lists, nprobe 64) that reads ~37 MB of list vectors per query, so it is
memory-bound (~1.5-2 ms a query). Here the queries are bucketed by the lists they probe, and each
probed list is read ONCE and scored against all of its queries with one matrix product (BLAS,
compute-bound), then merged into per-query heaps (`faiss.ResultHeap`). It pays when each probed list
has a few queries or more (`by_list_pays`, measured), as for the gate's 5,244 predictions.

`search_by_list` returns what `index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))`
returns: scores (M, k) float32 best first and rows (M, k) int64 (the ids the lists hold), padded with
faiss's own "no result" (score -FLT_MAX, row -1) where the probed lists hold fewer than k vectors.
A matrix product and faiss's per-vector dot product round differently (~1e-7), so rows whose scores
tie within that rounding may come in another order, or swap at the k-th place. Lists are read one
at a time (no (M, nprobe * list size) matrix), in place: an index read with `faiss.IO_FLAG_MMAP`
is read through its memory map.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import faiss
import numpy as np

# Measured at seed scale (584,545 x 768, 3,058 lists, nprobe 64, k 50, 2 shared cores, medians of 5):
# faiss 0.52 s vs by list 0.55 s at 3.1 queries per probed list, 0.68 vs 0.60 at 4.2, 0.68 vs 0.46
# at 6.3, 2.5 vs 0.89 at 33, 12.4 vs 3.9 at 110 (the gate's 5,244 queries); below ~3 the per-list
# overhead loses (0.21 vs 0.34 s at 1.0).
MIN_QUERIES_PER_LIST = 4.0
SCORE_BLOCK = 1 << 22  # most scores (16 MiB) one product holds; a list with more queries is scored in slices

Product = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (a (n, D), b (S, D)) -> a @ b.T (n, S) float32


def by_list_pays(index: faiss.Index, query_count: int, nprobe: int) -> bool:
    """Whether `search_by_list` serves this search and beats faiss's per-query scan.

    Only an IndexIVFFlat itself (no wrapper, no subclass) with inner product, and only when the
    average list holds MIN_QUERIES_PER_LIST probes or more (M * nprobe / nlist).
    """
    if type(index) is not faiss.IndexIVFFlat or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return False
    return query_count * min(int(nprobe), index.nlist) >= MIN_QUERIES_PER_LIST * index.nlist


def search_by_list(index: faiss.IndexIVFFlat, queries: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner product over each query's `nprobe` nearest lists: scores (M, k) float32, rows (M, k) int64."""
    if type(index) is not faiss.IndexIVFFlat or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise TypeError(f"search_by_list searches an inner-product IndexIVFFlat, not a {type(index).__name__} with metric {index.metric_type}")
    if k < 1 or nprobe < 1:
        raise ValueError(f"k and nprobe must be at least 1, got k={k}, nprobe={nprobe}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)  # (M, D)
    nprobe = min(int(nprobe), index.nlist)  # faiss probes every list at most once
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)  # starts at (-FLT_MAX, -1), as faiss's own search
    if len(queries):
        _, probes = index.quantizer.search(queries, nprobe)  # (M, nprobe) list ids, -1 for none
        queries_by_list, bounds = bucket_by_list(probes, index.nlist)
        with one_thread_product() as product:
            for list_no in np.flatnonzero(np.diff(bounds)):  # the lists some query probes
                query_rows = queries_by_list[bounds[list_no]:bounds[list_no + 1]]  # (n,)
                score_list(index.invlists, int(list_no), index.d, queries, query_rows, heap, product)
    heap.finalize()
    return heap.D, heap.I


def bucket_by_list(probes: np.ndarray, nlist: int) -> tuple[np.ndarray, np.ndarray]:
    """The queries grouped by the lists they probe: list l's are queries_by_list[bounds[l]:bounds[l + 1]].

    probes: (M, nprobe) list ids, -1 for none (left out). Returns queries_by_list (M * nprobe,) int64
    query rows, ascending within each list, and bounds (nlist + 1,) int64.
    """
    flat = probes.ravel()  # (M * nprobe,)
    order = np.argsort(flat, kind="stable")  # (M * nprobe,) the -1s first, then list 0's entries, list 1's, ...
    bounds = np.searchsorted(flat[order], np.arange(nlist + 1))  # (nlist + 1,) where each list's run starts
    return order // probes.shape[1], bounds


def score_list(invlists: faiss.InvertedLists, list_no: int, dim: int, queries: np.ndarray, query_rows: np.ndarray,
               heap: faiss.ResultHeap, product: Product) -> None:
    """Score the queries `query_rows` against every vector of list `list_no` and merge the scores into their heaps."""
    size = invlists.list_size(list_no)
    if size == 0:
        return
    codes = invlists.get_codes(list_no)
    ids = invlists.get_ids(list_no)
    try:
        vectors = faiss.rev_swig_ptr(codes, size * dim * 4).view(np.float32).reshape(size, dim)  # (S, D) the list itself, no copy
        list_ids = faiss.rev_swig_ptr(ids, size)  # (S,) int64
        step = max(1, SCORE_BLOCK // size)
        for start in range(0, len(query_rows), step):
            rows = query_rows[start:start + step]  # (n,)
            heap.add_result_subset(rows, product(queries[rows], vectors), list_ids)  # scores (n, S), ids (S,) shared by every row
    finally:
        invlists.release_codes(list_no, codes)
        invlists.release_ids(list_no, ids)


@contextmanager
def one_thread_product() -> Iterator[Product]:
    """a @ b.T on the calling thread only, for the duration of one search (torch's thread count is process-wide; restored after).

    One list's product (~110 x 191 x 768 at seed scale) is too small to share between cores: with
    numpy's 2 OpenBLAS threads on a shared 2-core machine the seed-scale products took 13 s, on one
    thread 1.5 s (the BLAS threads wait for a core another process holds). numpy cannot be told its
    BLAS thread count; torch can, so the products run in torch.
    """
    import torch  # only this path needs it

    def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()  # (n, D) @ (D, S) -> (n, S)

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield product
    finally:
        torch.set_num_threads(saved)
