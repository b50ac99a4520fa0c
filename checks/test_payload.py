"""Plumbing: the payload bank itself (FAILURE_MODES rows 6 and the closing lines)."""

from __future__ import annotations

import numpy as np
import pytest

from lvmcore.keys import duplicate_key_count, pack_keys
from lvmcore.artifacts.payload import Payload
from lvmcore.vectors import duplicate_vector_counts, nonfinite_rows, row_norms

pytestmark = pytest.mark.plumbing

NORM_TOLERANCE = 1e-3


@pytest.mark.threshold("payload_nonfinite_rows", minimum=0, above=False)
def test_payload_has_no_nan_or_inf_rows(payload: Payload, threshold) -> None:
    bad = nonfinite_rows(payload.vectors)
    threshold.check(
        len(bad),
        cause="NaN or inf vectors from the encoder or a failed write; such rows poison every inner product",
        context=f"First bad rows: {bad[:5].tolist()}." if len(bad) else "",
    )


@pytest.mark.threshold("payload_off_unit_norm_fraction", minimum=0.0, above=False, percent=True)
def test_payload_vectors_are_unit_norm(payload: Payload, threshold) -> None:
    norms = row_norms(payload.vectors)
    finite = np.isfinite(norms)
    off = finite & (np.abs(norms - 1.0) > NORM_TOLERANCE)
    threshold.check(
        float(off.mean()) if len(norms) else 0.0,
        cause="vectors not L2-normalized before an inner-product index: scores are no longer cosines, long vectors win",
        context=f"{int(off.sum())} of {len(norms)} rows have |norm - 1| > {NORM_TOLERANCE} (norms {np.nanmin(norms):.4f}..{np.nanmax(norms):.4f}).",
        details={"tolerance": NORM_TOLERANCE, "min_norm": float(np.nanmin(norms)), "max_norm": float(np.nanmax(norms))},
    )


@pytest.mark.threshold("payload_duplicate_key_fraction", minimum=0.0, above=False, percent=True)
def test_payload_keys_are_unique(payload: Payload, threshold) -> None:
    duplicates = duplicate_key_count(payload.keys)
    threshold.check(
        duplicates / max(1, payload.count),
        cause="duplicate keys in the payload (row 6): a hit test by row id with 'last duplicate wins' misses; "
        "de-duplicate the bank or decide hits by key",
        context=f"{duplicates} of {payload.count} rows repeat an earlier key.",
        details={"duplicate_rows": duplicates},
    )


@pytest.mark.threshold("payload_duplicate_vector_fraction", minimum=0.01, above=False, percent=True)
def test_payload_duplicate_vectors_are_rare(payload: Payload, threshold) -> None:
    """Distinct keys holding the same vector make retrieval ambiguous; some boilerplate is normal."""
    duplicates, most_copies = duplicate_vector_counts(payload.vectors)
    threshold.check(
        duplicates / max(1, payload.count),
        cause="the same vector stored under several keys (row 6/7): a copied chunk, a chunker repeating text, "
        "or rows appended twice; hits must be decided by key or equal vector",
        context=f"{duplicates} rows repeat an earlier vector; the most repeated vector appears {most_copies} times.",
        details={"duplicate_vector_rows": duplicates},
    )


@pytest.mark.threshold("payload_manifest_hash_matches", minimum=1)
def test_payload_manifest_hash_matches_content(payload: Payload, threshold) -> None:
    recorded = payload.manifest.get("content_hash")
    if recorded is None:
        pytest.skip(f"{payload.path} records no content_hash (a file of another layout has no manifest): there is no recorded hash "
                    "to compare its content with (test_eval_and_training_data_name_this_payload ties it to the eval set by file sha256)")
    threshold.check(
        int(recorded == payload.content_hash),
        cause="vectors.npy or keys.npy changed after the manifest was written: indexes and eval sets built "
        "for the recorded bank may not match this one",
        context=f"manifest {recorded}, content {payload.content_hash}.",
    )


@pytest.mark.threshold("payload_chunk_gap_fraction", minimum=0.0, above=False, percent=True)
def test_payload_chunks_are_contiguous_within_articles(payload: Payload, threshold) -> None:
    """Each article's chunk indices should run 0..n-1: gaps break windows and hint at dropped rows."""
    codes = np.unique(pack_keys(payload.keys))
    articles = codes >> 32
    chunks = codes & 0xFFFFFFFF
    starts = np.r_[True, articles[1:] != articles[:-1]]
    expected = np.arange(len(codes)) - np.maximum.accumulate(np.where(starts, np.arange(len(codes)), 0))
    broken_articles = np.unique(articles[chunks != expected])
    n_articles = len(np.unique(articles))
    threshold.check(
        len(broken_articles) / max(1, n_articles),
        cause="articles whose chunk indices skip or do not start at 0: rows dropped during ingest, or keys "
        "assigned after filtering",
        context=f"{len(broken_articles)} of {n_articles} articles have gaps (first: {broken_articles[:5].tolist()}).",
    )
