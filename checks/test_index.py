"""Plumbing: the retrieval index (FAILURE_MODES rows 6, 7, 14 and the closing lines).

The index checked is the one given by `--index` (the one your pipeline searches), or the suite's
own with `--build-index`. Without either there is no index file to inspect: the metric, row count
and IVF agreement checks skip and say so, and oracle recall runs on exact search over the payload,
where duplicate rows still show. The gate builds its own IVF and checks it against exact search
on the model's queries (`test_ivf_finds_what_exact_search_finds`).
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.search.agreement import AGREEMENT_K, agreement_queries, top_k_row_agreement
from lvmcore.search.exact import exact_search
from lvmcore.search.ivf import index_search, metric_name
from lvmcore.artifacts.payload import Payload
from lvmcore.sampling import sample_rows
from lvmcore.search.hits import equal_vector_hits, first_hit_rank, key_hits, recall_at

pytestmark = pytest.mark.plumbing

ORACLE_QUERIES = 2_000


def need_index(index: faiss.Index | None) -> faiss.Index:
    if index is None:
        pytest.skip("no --index given: there is no index file to check (pass --index FILE for your pipeline's, or --build-index for the suite's own)")
    return index


@pytest.mark.threshold("index_metric_is_inner_product", minimum=1)
def test_index_metric_is_inner_product(plumbing_index: faiss.Index | None, threshold) -> None:
    ivf_index = need_index(plumbing_index)
    threshold.check(
        int(ivf_index.metric_type == faiss.METRIC_INNER_PRODUCT),
        cause=f"the index uses metric '{metric_name(ivf_index)}' where inner product (cosine on unit vectors) was meant",
    )


@pytest.mark.threshold("index_ntotal_minus_payload", minimum=0, above=False)
def test_index_holds_every_payload_row(plumbing_index: faiss.Index | None, payload: Payload, threshold) -> None:
    """ntotal == N: a per-article or partial index ('shard assist', row 14) retrieves with metadata."""
    ivf_index = need_index(plumbing_index)
    threshold.check(
        abs(int(ivf_index.ntotal) - payload.count),
        cause="the index was built from another or a partial bank (a shard, a per-article index, a stale build)",
        context=f"index ntotal {ivf_index.ntotal}, payload rows {payload.count}.",
    )


@pytest.fixture(scope="session")
def oracle_rows(payload: Payload) -> np.ndarray:
    return sample_rows(payload.count, ORACLE_QUERIES, seed=7)


@pytest.mark.threshold("oracle_recall_at_1", minimum=0.999, percent=True)
def test_oracle_recall_with_duplicate_aware_hits(plumbing_index: faiss.Index | None, payload: Payload, oracle_rows: np.ndarray, nprobe: int, threshold) -> None:
    """Payload rows as their own queries must come back first, counting a hit by key or equal vector.

    With IVF-Flat the query's own list is always probed, so a loss here is duplicates or a bad index,
    not quantization (row 7).
    """
    queries = np.ascontiguousarray(payload.vectors[oracle_rows])
    _, rows = exact_search(payload.vectors, queries, 5) if plumbing_index is None else index_search(plumbing_index, queries, 5, nprobe)
    hits = key_hits(rows, payload.keys, payload.keys[oracle_rows]) | equal_vector_hits(rows, payload.vectors, queries)
    by_id = float((rows[:, 0] == oracle_rows).mean())
    threshold.check(
        recall_at(first_hit_rank(hits), 1),
        cause="the index does not hold these vectors as stored (built from another bank, not normalized, or an L2 index)",
        context=f"Top-1 equal to the query's own row id: {100 * by_id:.2f}% (row-id hits understate recall when vectors repeat); "
        + ("exact search over the payload (no --index given)." if plumbing_index is None else "searched in the index."),
        details={"row_id_recall_at_1": by_id, "queries": len(oracle_rows)},
    )


@pytest.mark.threshold("ivf_exact_top10_agreement", minimum=0.9, good=0.95, strong=0.99, percent=True)
def test_ivf_agrees_with_exact_search(plumbing_index: faiss.Index | None, payload: Payload, eval_set: EvalSet, nprobe: int, threshold) -> None:
    """Mean-of-context queries: the share of exact top-10 rows that IVF at the configured nprobe also finds."""
    ivf_index = need_index(plumbing_index)
    queries = agreement_queries(eval_set.contexts)
    overlap = top_k_row_agreement(ivf_index, payload.vectors, queries, AGREEMENT_K, nprobe)
    threshold.check(
        float(overlap),
        cause=f"IVF probes too few lists (nprobe {nprobe}) for this bank, or its centroids were trained on "
        "other data: retrieval losses would be index losses, not model losses",
    )
