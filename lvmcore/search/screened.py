"""Exact inner-product top-k, with most of the payload screened in bfloat16 and every result scored in float32.

Why: at seed scale the gate's exact pass is ~90% of a checkpoint's cost, and it is a float32 matrix
product bound by the CPU's multiply rate. CPUs with native bfloat16 dot products (AVX512-BF16, AMX)
multiply bfloat16 about twice as fast. A bfloat16 score is only an approximation, so it is used
solely to *rule rows out*, with a proven bound; every row that could belong in a query's top-k is
scored again in float32, and the top-k is taken over those float32 scores. The result is the same
top-k as a float32 search (up to the order of scores tied within float32 rounding).

How, for one query q over the payload, block by block:
- Every row gets a bfloat16 score s_hat = bf16(q) . bf16(x) (products accumulated in float32, the sum
  rounded to bfloat16). Before that final rounding it lies within eps of the float32 score s32(x):
      eps = |q - bf16(q)| max|bf16(x)| + |q| max|x - bf16(x)| + gamma (|q| max|x| + |bf16(q)| max|bf16(x)|),
  gamma = D u / (1 - D u), u = 2**-24 (any float32 summation order of D products), the maxima over the
  block's rows. E is the largest eps of the blocks seen so far; h(t) = 2**-8 |t| bounds half a bfloat16 ulp.
- tau_hat is the k-th best bfloat16 score among the rows kept so far (in the first block: of the block).
  The k rows behind it score s32 >= tau_hat - h - E, so the final k-th best float32 score t_k is at least
  that too; a row of the final top-k has s_hat (before rounding) >= t_k - eps >= tau_hat - h - E - eps.
  Rounding to bfloat16 is monotone, so every such row passes s_hat >= bf16(tau_hat - h - E - eps) and is
  kept (with its bfloat16 score), whatever comes later: tau_hat only rises.
- At the end only the kept rows with s_hat >= bf16(tau_hat - h - 2E) can be in the top-k (the same
  argument with the final tau_hat); they are scored in float32 and each query's top-k is taken.

A query for which this cannot pay (a zero vector, or more than CANDIDATE_CAP candidates in one block:
scores that are nearly all tied) is returned to the caller, which searches it in float32. Whether
bfloat16 pays at all is measured once per process (`bf16_pays`): on a CPU without native bfloat16
it is several times slower than float32, and the screen is then never used. The probe also checks
that this machine's bfloat16 product stays inside the error model above; if not, no screen.
"""

from __future__ import annotations

import functools
import os
import time
import warnings

import faiss
import numpy as np

from lvmcore.blocks import iter_blocks
from lvmcore.progress import phase

QUERY_TILE = 4_096  # queries per bfloat16 product: a (4,096, 32,768) bfloat16 score tile is 256 MiB; bfloat16 products pay more the bigger they are (0.53x float32 at this shape, 0.67x at half of it, measured)
GROUP = 128  # scores per group when looking for candidates: the group's maximum is tested first
GROUP_CAP = 256  # groups of one query passing in one block beyond which the query is crowded (bounds the memory of one tile's candidates)
CANDIDATE_CAP = 2_048  # candidates of one query in one block beyond which the float32 search is cheaper
MIN_SCORES = 2_000_000_000  # queries x rows below which the probe and the screen's set-up are not worth it
PAYS_RATIO = 0.9  # bfloat16 must take at most this share of float32's time on the probe (0.8 measured here with AVX512-BF16; several times 1 without)
SWITCH = "LVM_CHECKS_BF16_SCREEN"  # "auto" (default): use it where it pays; "off": never; "on": always where possible
RESCORE_CHUNK = 32_768  # candidates scored in float32 at a time (two (n, D) gathers)
NORM_SLACK = 1 + 1e-4
_UNIT = 2.0**-24


def gamma(dim: int) -> float:
    """The bound on float32 rounding of a length-`dim` dot product, relative to the sum of |products|."""
    return dim * _UNIT / (1 - dim * _UNIT)


def screen_margin(query_norms: np.ndarray, query_errors: np.ndarray, rounded_query_norms: np.ndarray,
                  row_norm_max: float, row_error_max: float, rounded_row_norm_max: float, dim: int) -> np.ndarray:
    """eps per query (module docstring): how far a bfloat16 score before its final rounding can lie from the float32 score."""
    g = gamma(dim)
    eps = query_errors * rounded_row_norm_max + query_norms * row_error_max + g * (query_norms * row_norm_max + rounded_query_norms * rounded_row_norm_max)
    return eps * (1 + 1e-3) + 1e-30  # a hair above the bound: the bound itself is computed in float64


def _torch():
    import torch

    return torch


def rounded(array: np.ndarray):
    """(bfloat16 tensor, norms of the rows, norms of their rounding error, norms of the rounded rows).

    The norms are float32 sums raised by NORM_SLACK, which covers their own rounding (D u << 1e-4):
    every one is an upper bound, which is all `screen_margin` needs. The rounding error of a float32
    value to bfloat16 is itself exact in float32.
    """
    torch = _torch()
    with warnings.catch_warnings():  # a read-only memory map: torch warns that it could be written through; nothing here writes
        warnings.simplefilter("ignore", UserWarning)
        exact = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    low = exact.to(torch.bfloat16)
    norms = torch.linalg.vector_norm(exact, dim=1).numpy().astype(np.float64) * NORM_SLACK
    errors = torch.linalg.vector_norm(exact - low.to(torch.float32), dim=1).numpy().astype(np.float64) * NORM_SLACK
    return low, norms, errors, norms + errors  # |bf16(x)| <= |x| + |x - bf16(x)|


def to_bf16_threshold(values: np.ndarray):
    """float64 thresholds rounded to bfloat16 by round-to-nearest-even, the same (monotone) rounding the product's output gets.

    A threshold that is not a finite number above -3e38 (an unfilled heap's top, -FLT_MAX, less a margin) becomes -inf: no threshold.
    """
    torch = _torch()
    values = np.where(np.isfinite(values) & (values > -3e38), values, -np.inf)
    return torch.from_numpy(values.astype(np.float32)).to(torch.bfloat16)


def candidates(scores, thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, column) of every bfloat16 score >= its query's bfloat16 threshold in a (T, B) tile, and
    which queries are crowded (more than GROUP_CAP groups or CANDIDATE_CAP scores pass: left to float32).

    Groups of GROUP scores are tested on their maximum first. For a positive threshold the maximum is
    taken on the raw 16-bit patterns: for bfloat16 values >= +0 the bit patterns order as the values do,
    and every negative value (sign bit set) reads as a negative int16, below any positive threshold.
    """
    torch = _torch()
    count, cols = scores.shape
    width = -(-cols // GROUP) * GROUP
    if width != cols:  # the payload's last, short block
        scores = torch.nn.functional.pad(scores, (0, width - cols), value=float("-inf"))
    positive = thresholds > 0
    crowded = torch.zeros(count, dtype=torch.bool)
    found_q, found_c = [], []
    for chosen, as_bits in ((positive.nonzero().flatten(), True), ((~positive).nonzero().flatten(), False)):
        if not len(chosen):
            continue
        part, limit = (scores, thresholds) if len(chosen) == count else (scores[chosen], thresholds[chosen])
        if as_bits:
            part, limit = part.view(torch.int16), limit.view(torch.int16)
        groups = part.view(len(chosen), width // GROUP, GROUP)
        hit = groups.amax(-1) >= limit[:, None]  # (n, G)
        too_many = hit.sum(1) > GROUP_CAP
        crowded[chosen[too_many]] = True
        hit &= ~too_many[:, None]
        hit_q, hit_g = hit.nonzero(as_tuple=True)
        inner_i, inner_c = (groups[hit_q, hit_g] >= limit[hit_q][:, None]).nonzero(as_tuple=True)
        column = hit_g[inner_i] * GROUP + inner_c
        inside = column < cols
        found_q.append(chosen[hit_q[inner_i]][inside])
        found_c.append(column[inside])
    query_ids = torch.cat(found_q).numpy().astype(np.int64) if found_q else np.empty(0, np.int64)
    columns = torch.cat(found_c).numpy().astype(np.int64) if found_c else np.empty(0, np.int64)
    crowded = crowded.numpy() | (np.bincount(query_ids, minlength=count) > CANDIDATE_CAP)
    keep = ~crowded[query_ids]
    return query_ids[keep], columns[keep], crowded


def padded_by_query(query_ids: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (query, value, row) triples as one padded list per query: (queries, (n, w) values with -inf, (n, w) rows with -1)."""
    order = np.argsort(query_ids, kind="stable")
    query_ids, values, rows = query_ids[order], values[order], rows[order]
    unique, first, counts = np.unique(query_ids, return_index=True, return_counts=True)
    slot = np.arange(len(query_ids)) - np.repeat(first, counts)
    owner = np.repeat(np.arange(len(unique)), counts)
    padded_values = np.full((len(unique), int(counts.max())), -np.inf, dtype=np.float32)
    padded_rows = np.full(padded_values.shape, -1, dtype=np.int64)
    padded_values[owner, slot] = values
    padded_rows[owner, slot] = rows
    return unique.astype(np.int64), padded_values, padded_rows


def half_ulp_bound(values: np.ndarray) -> np.ndarray:
    """An upper bound on half a bfloat16 ulp at each value: how far below it a value that rounds up to it can lie."""
    return 2.0**-8 * np.abs(values) + 1e-38


def keep_limit(tau_hat: np.ndarray, worst_eps: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """While streaming: a row of a block with margin eps is kept when s_hat >= bf16(this) (module docstring)."""
    return tau_hat - half_ulp_bound(tau_hat) - worst_eps - eps


def final_limit(tau_hat: np.ndarray, worst_eps: np.ndarray) -> np.ndarray:
    """At the end: a kept row is scored in float32 when s_hat >= bf16(this) (module docstring)."""
    return tau_hat - half_ulp_bound(tau_hat) - 2 * worst_eps


def float32_scores(queries: np.ndarray, payload_vectors: np.ndarray, query_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """s32(q, x) for each (query, row) pair, read in row order (the payload may be a memory map), RESCORE_CHUNK pairs at a time."""
    order = np.argsort(rows, kind="stable")
    scores = np.empty(len(rows), dtype=np.float32)
    for i in range(0, len(order), RESCORE_CHUNK):
        part = order[i : i + RESCORE_CHUNK]
        scores[part] = np.einsum("nd,nd->n", queries[query_ids[part]], np.asarray(payload_vectors[rows[part]], dtype=np.float32))
    return scores


def screened_search(payload_vectors: np.ndarray, queries: np.ndarray, k: int, block_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of every query (module docstring): (scores (M, k), rows (M, k), queries left to search in float32).

    The rows of the returned arrays for the left-over queries hold nothing useful.
    """
    torch = _torch()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    count, dim = len(queries), queries.shape[1]
    q_low, q_norms, q_errors, q_low_norms = rounded(queries)
    left = q_norms == 0  # a zero query ties every row: float32 is cheaper
    approx = faiss.ResultHeap(count, k, keep_max=True)  # the bfloat16 scores of the candidates: its top is tau_hat
    worst_eps = np.zeros(count)  # E: the largest eps of any block so far
    pool_q, pool_rows, pool_scores = [], [], []
    blocks = -(-len(payload_vectors) // block_rows)
    with phase(f"exact search, bfloat16 screen ({count:,} queries x {len(payload_vectors):,} rows)", total=blocks) as step:
        for start, block in iter_blocks(payload_vectors, block_rows):
            b_low, b_norms, b_errors, b_low_norms = rounded(block)
            eps = screen_margin(q_norms, q_errors, q_low_norms, float(b_norms.max()), float(b_errors.max()), float(b_low_norms.max()), dim)
            worst_eps = np.maximum(worst_eps, eps)
            active = np.flatnonzero(~left)
            for tile_start in range(0, len(active), QUERY_TILE):
                tile = active[tile_start : tile_start + QUERY_TILE]
                tile_t = torch.from_numpy(tile)
                tile_scores = q_low[tile_t] @ b_low.T  # (T, B) bfloat16
                if start == 0:  # tau_hat of the first block alone, from its k-th best bfloat16 score
                    tau_hat = torch.topk(tile_scores, k, dim=1).values[:, -1].float().numpy().astype(np.float64)
                else:
                    tau_hat = approx.D[tile, 0].astype(np.float64)
                thresholds = to_bf16_threshold(keep_limit(tau_hat, worst_eps[tile], eps[tile]))
                local_q, cols, crowded = candidates(tile_scores, thresholds)
                found = tile_scores[torch.from_numpy(local_q), torch.from_numpy(cols)].float().numpy()
                del tile_scores
                left[tile[crowded]] = True
                if len(local_q):
                    query_ids, rows = tile[local_q], cols + start
                    approx.add_result_subset(*padded_by_query(query_ids, found, rows))
                    pool_q.append(query_ids)
                    pool_rows.append(rows)
                    pool_scores.append(found)
            step()
    return final_top_k(payload_vectors, queries, k, approx, worst_eps, left, pool_q, pool_rows, pool_scores)


def final_top_k(payload_vectors: np.ndarray, queries: np.ndarray, k: int, approx: faiss.ResultHeap, worst_eps: np.ndarray, left: np.ndarray,
                pool_q: list, pool_rows: list, pool_scores: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the pool's candidates with s_hat >= bf16(tau_hat - half ulp - 2E), score them in float32, take each query's top-k."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    if pool_q:
        query_ids, rows, found = np.concatenate(pool_q), np.concatenate(pool_rows), np.concatenate(pool_scores)
        tau_hat = approx.D[:, 0].astype(np.float64)
        thresholds = to_bf16_threshold(final_limit(tau_hat, worst_eps)).float().numpy()
        keep = (found >= thresholds[query_ids]) & ~left[query_ids]
        query_ids, rows = query_ids[keep], rows[keep]
        if len(query_ids):
            heap.add_result_subset(*padded_by_query(query_ids, float32_scores(queries, payload_vectors, query_ids, rows), rows))
    heap.finalize()
    return heap.D, heap.I, np.flatnonzero(left)


@functools.lru_cache(maxsize=1)
def bf16_pays() -> bool:
    """Measured once per process: is a bfloat16 product here inside the error model, and at most PAYS_RATIO of float32's time?"""
    torch = _torch()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((128, 768)).astype(np.float32)
    b = rng.standard_normal((1_024, 768)).astype(np.float32)
    a_low, b_low = rounded(a)[0], rounded(b)[0]
    got = (a_low @ b_low.T).double().numpy()
    truth = a_low.double().numpy() @ b_low.double().numpy().T  # the exact product of the rounded inputs
    allowed = gamma(768) * np.abs(a_low.double().numpy()) @ np.abs(b_low.double().numpy()).T + 2.0**-8 * np.abs(truth)
    if not np.all(np.abs(got - truth) <= allowed * (1 + 1e-3) + 1e-30):
        return False
    big_a = rng.standard_normal((2_048, 768)).astype(np.float32)
    big_b = rng.standard_normal((8_192, 768)).astype(np.float32)
    low_a, low_b = torch.from_numpy(big_a).to(torch.bfloat16), torch.from_numpy(big_b).to(torch.bfloat16)
    out = np.empty((2_048, 8_192), dtype=np.float32)

    def best(fn) -> float:
        times = []
        for _ in range(3):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        return min(times)

    fp32 = best(lambda: np.matmul(big_a, big_b.T, out=out))
    bf16 = best(lambda: low_a @ low_b.T)
    return bf16 <= PAYS_RATIO * fp32


def screen_applies(queries: int, rows: int, k: int, block_rows: int) -> bool:
    """Whether exact search should screen in bfloat16: the switch, then the size, then the probe."""
    mode = os.environ.get(SWITCH, "auto").strip().lower()
    if mode == "off" or rows <= block_rows or k > block_rows // 4:
        return False
    if mode == "on":
        return True
    return queries * rows >= MIN_SCORES and bf16_pays()
