"""The seed bank generator: loads with our loaders, has the public length profile, streams faithfully."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import make_seed_bank as seed_bank
from lvmcore.artifacts.evalset import load_eval_set
from lvmcore.keys import nonconsecutive_context_rows
from lvmcore.artifacts.payload import content_hash, load_payload
from lvmcore.artifacts.training_data import load_training_data

ROWS, DIM, EVAL_ROWS = 12_000, 64, 300


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seed")
    seed_bank.main(["--out", str(out), "--rows", str(ROWS), "--dim", str(DIM), "--eval-rows", str(EVAL_ROWS), "--seed", "3"])
    return out


def test_bank_loads_with_our_loaders(bank: Path) -> None:
    payload = load_payload(bank / "payload")
    eval_set = load_eval_set(bank / "eval.npz", expected_dim=payload.dim)
    train = load_training_data(bank / "train.json", payload)
    assert (payload.count, payload.dim) == (ROWS, DIM)
    assert payload.manifest["content_hash"] == payload.content_hash
    assert eval_set.count == EVAL_ROWS and eval_set.context_keys is not None
    assert eval_set.provenance["payload_hash"] == payload.content_hash
    norms = np.linalg.norm(payload.vectors, axis=1)
    assert np.abs(norms - 1).max() < 1e-5, f"payload rows are not unit norm: max |norm-1| {np.abs(norms - 1).max():.2e}"
    # eval contexts and targets are the payload's own vectors, by key
    found_ctx, ok_ctx = payload.vectors_of(eval_set.context_keys)
    found_tgt, ok_tgt = payload.vectors_of(eval_set.truth_keys)
    assert ok_ctx.all() and ok_tgt.all()
    np.testing.assert_array_equal(found_ctx, eval_set.contexts)
    np.testing.assert_array_equal(found_tgt, eval_set.targets)
    assert not nonconsecutive_context_rows(eval_set.context_keys, eval_set.truth_keys).any()
    assert train.count > 5 * EVAL_ROWS


def test_eval_windows_come_from_held_out_documents_only(bank: Path) -> None:
    payload = load_payload(bank / "payload")
    eval_set = load_eval_set(bank / "eval.npz")
    train = load_training_data(bank / "train.json", payload)
    validation = load_training_data(bank / "val.json", payload)
    overlap = np.intersect1d(eval_set.articles, train.articles)
    assert overlap.size == 0, f"{overlap.size} eval articles also in training (first {overlap[:5]})"
    assert np.intersect1d(validation.articles, train.articles).size == 0
    assert np.intersect1d(validation.articles, eval_set.articles).size == 0


def test_document_lengths_follow_the_public_profile() -> None:
    lengths = seed_bank.document_lengths(seed_bank.PUBLIC_ROWS, seed=0)
    assert lengths.sum() == seed_bank.PUBLIC_ROWS
    assert len(lengths) == seed_bank.PUBLIC_DOCUMENTS
    assert lengths.min() >= 6
    assert 24 <= np.median(lengths) <= 33, f"median document length {np.median(lengths)}, public bank ~28"
    assert np.percentile(lengths, 99) > 8 * np.median(lengths), "expected a long tail of long documents"


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(min_value=6, max_value=200_000), seed=st.integers(0, 2**31))
def test_document_lengths_sum_to_rows_and_respect_the_minimum(rows: int, seed: int) -> None:
    lengths = seed_bank.document_lengths(rows, seed)
    assert lengths.sum() == rows
    assert lengths.min() >= 6
    assert len(lengths) == seed_bank.document_count(rows)


def test_next_chunk_is_predictable_but_not_a_copy(bank: Path) -> None:
    eval_set = load_eval_set(bank / "eval.npz")
    last = eval_set.contexts[:, -1]  # (M, D)
    copy_cos = float((last * eval_set.targets).sum(1).mean())
    first = eval_set.contexts[:, 0]
    far_cos = float((first * eval_set.targets).sum(1).mean())
    assert 0.4 < copy_cos < 0.7, f"copy-last cosine {copy_cos:.3f}: should be decent but beatable"
    assert far_cos < copy_cos - 0.1, f"cos(first context chunk, target) {far_cos:.3f} vs copy-last {copy_cos:.3f}: no local structure"


def test_streaming_write_equals_in_memory_build(tmp_path: Path) -> None:
    rows, dim, seed = 3_000, 48, 5
    streamed = seed_bank.write_payload_streaming(tmp_path / "streamed", rows, dim, seed, block_rows=500)
    vectors, keys = seed_bank.build_payload_in_memory(rows, dim, seed)
    on_disk = np.load(streamed / "vectors.npy")
    np.testing.assert_array_equal(on_disk, vectors)
    np.testing.assert_array_equal(np.load(streamed / "keys.npy"), keys)
    manifest = json.loads((streamed / "manifest.json").read_text())
    assert manifest["content_hash"] == content_hash(vectors, keys)
    assert manifest["count"] == rows and manifest["dim"] == dim


def test_different_seeds_give_different_banks() -> None:
    a, _ = seed_bank.build_payload_in_memory(500, 16, seed=0)
    b, _ = seed_bank.build_payload_in_memory(500, 16, seed=1)
    assert not np.array_equal(a, b)
