"""Exact inner-product top-k over the payload, streamed over its memory map in blocks.

Exact search never builds a second in-memory copy of the payload: it streams the memory map in
blocks through `faiss.knn` and merges per-block top-k lists in a `faiss.ResultHeap`. For big searches
on a CPU where bfloat16 products are fast, `lvmcore.search.screened` rules most rows out in bfloat16
with a proven bound and scores the rest in float32: the same top-k, about a third less time.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import faiss
import numpy as np

from lvmcore.blocks import iter_blocks
from lvmcore.progress import phase
from lvmcore.search.screened import screen_applies, screened_search

SEARCH_BLOCK_ROWS = 32_768  # 96 MiB of a 768-D payload in RAM at a time
BLAS_TILE = (4_096, 4_096)  # faiss.knn's (query, database) tile, a 64 MiB score buffer; its default (4,096, 1,024) was 9% slower at seed scale


@contextmanager
def blas_tiles(query_rows: int, database_rows: int):
    """faiss's brute-force tile size for the duration of one search, restored afterwards (it is process-wide)."""
    saved = faiss.cvar.distance_compute_blas_query_bs, faiss.cvar.distance_compute_blas_database_bs
    faiss.cvar.distance_compute_blas_query_bs, faiss.cvar.distance_compute_blas_database_bs = query_rows, database_rows
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_query_bs, faiss.cvar.distance_compute_blas_database_bs = saved

def exact_search(
    payload_vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of each query over the payload: scores (M, k) and rows (M, k).

    transform: applied to each block before searching (a two-tower model's payload tower), so an
    encoded bank is searched without ever holding an encoded copy of the whole payload.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(payload_vectors))
    if transform is None and len(queries) and screen_applies(len(queries), len(payload_vectors), k, SEARCH_BLOCK_ROWS):
        scores, rows, left = screened_search(payload_vectors, queries, k, SEARCH_BLOCK_ROWS)
        if len(left):  # zero or crowded queries: plain float32
            scores[left], rows[left] = exact_search_float32(payload_vectors, queries[left], k, None)
        return scores, rows
    return exact_search_float32(payload_vectors, queries, k, transform)


def exact_search_float32(payload_vectors: np.ndarray, queries: np.ndarray, k: int,
                         transform: Callable[[np.ndarray], np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """`exact_search` with every score computed in float32 (k already capped at the payload's size)."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    with blas_tiles(*BLAS_TILE):
        _search_blocks(payload_vectors, queries, k, transform, heap)
    heap.finalize()
    return heap.D, heap.I


def block_top_k(queries: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 top-k of the queries in one block, padded to k columns with (-inf, -1)."""
    scores, rows = faiss.knn(queries, np.ascontiguousarray(block, dtype=np.float32), min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
    return pad_topk(scores, rows, k)


def _search_blocks(payload_vectors: np.ndarray, queries: np.ndarray, k: int, transform: Callable[[np.ndarray], np.ndarray] | None, heap: faiss.ResultHeap) -> None:
    """Stream the payload through faiss.knn block by block, merging each block's top-k into `heap`."""
    blocks = -(-len(payload_vectors) // SEARCH_BLOCK_ROWS)
    with phase(f"exact search ({len(queries):,} queries x {len(payload_vectors):,} rows)", total=blocks) as step:
        for start, block in iter_blocks(payload_vectors, SEARCH_BLOCK_ROWS):
            block = transform(block) if transform is not None else block  # (b, D)
            scores, rows = block_top_k(queries, block, k)  # a short last block is padded: the heap needs k columns
            heap.add_result(scores, np.where(rows >= 0, rows + start, -1))
            step()


def pad_topk(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad (M, k') top-k lists to (M, k) with (-inf, -1), the entries that mean "no result"."""
    short = k - scores.shape[1]
    if short <= 0:
        return scores, rows
    return (
        np.pad(scores, ((0, 0), (0, short)), constant_values=-np.inf),
        np.pad(rows, ((0, 0), (0, short)), constant_values=-1),
    )
