"""The shipped default bank (fixtures/data/default): it loads, agrees with its RECIPE, and is reproducible.

Reproducible means: re-encoding shipped chunk texts with the encoder named in the manifest gives
back the shipped vectors, and every eval vector is the payload vector of its key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lvmcore.artifacts.evalset import EvalSet, load_eval_set
from lvmcore.keys import duplicate_key_count
from lvmcore.artifacts.payload import Payload, load_payload
from lvmcore.ingest.build import SPLIT
from lvmcore.artifacts.training_data import load_training_data
from lvmcore.artifacts.windows import document_split

DEFAULT = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "default"
SIZE_CAP_BYTES = 24 * 2**20


@pytest.fixture(scope="module")
def payload() -> Payload:
    return load_payload(DEFAULT / "payload")


@pytest.fixture(scope="module")
def eval_set(payload: Payload) -> EvalSet:
    return load_eval_set(DEFAULT / "eval.npz", expected_dim=payload.dim)


@pytest.fixture(scope="module")
def recipe_counts() -> dict:
    """The JSON block under '## Counts' in RECIPE.md."""
    text = (DEFAULT / "RECIPE.md").read_text()
    match = re.search(r"## Counts.*?```json\n(.*?)```", text, re.DOTALL)
    assert match, "RECIPE.md needs a '## Counts' section with a ```json block"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def documents() -> dict:
    return json.loads((DEFAULT / "payload" / "documents.json").read_text())


def test_default_bank_fits_the_size_cap() -> None:
    size = sum(p.stat().st_size for p in DEFAULT.rglob("*") if p.is_file())
    assert size < SIZE_CAP_BYTES, f"fixtures/data/default is {size / 2**20:.1f} MiB, over the {SIZE_CAP_BYTES / 2**20:.0f} MiB cap"


def test_counts_match_recipe_and_manifest(payload: Payload, eval_set: EvalSet, recipe_counts: dict, documents: dict) -> None:
    assert payload.manifest["embedder"] == recipe_counts["embedder"] == eval_set.provenance["embedder"]
    assert payload.count == recipe_counts["chunks"] == sum(d["chunks"] for d in documents.values())
    assert payload.manifest["documents"] == len(documents) == recipe_counts["documents"]
    assert eval_set.count == recipe_counts["eval_rows"]
    for name in ("train", "validation"):
        articles = json.loads((DEFAULT / f"{name}.json").read_text())["articles"]
        assert len(articles) == recipe_counts[f"{name}_articles"], f"{name}.json has {len(articles)} articles, RECIPE says {recipe_counts[f'{name}_articles']}"
    split = document_split(np.arange(len(documents)), SPLIT, int(eval_set.provenance["seed"]))
    assert len(split["eval"]) == recipe_counts["eval_articles"] and set(eval_set.articles.tolist()) <= set(split["eval"].tolist())
    for name in ("train", "validation"):
        assert json.loads((DEFAULT / f"{name}.json").read_text())["articles"] == split[name].tolist(), f"{name}.json is not the recorded split"
        assert load_training_data(DEFAULT / f"{name}.json", payload).count == recipe_counts[f"{name}_windows"]
    for source, count in recipe_counts["documents_by_source"].items():
        assert sum(d["source"] == source for d in documents.values()) == count


def test_payload_keys_are_unique_and_consecutive_per_document(payload: Payload, documents: dict) -> None:
    assert duplicate_key_count(payload.keys) == 0
    counts = np.bincount(payload.keys[:, 0], minlength=len(documents))
    assert np.array_equal(counts, [documents[str(i)]["chunks"] for i in range(len(documents))])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    assert np.array_equal(payload.keys[:, 1], np.arange(payload.count) - np.repeat(starts, counts))


def test_payload_vectors_are_unit_norm(payload: Payload) -> None:
    norms = np.linalg.norm(np.asarray(payload.vectors), axis=1)
    assert np.abs(norms - 1).max() < 1e-4, f"max |norm - 1| = {np.abs(norms - 1).max():.2e}: payload is not L2-normalised"


def test_eval_targets_and_contexts_are_payload_vectors_by_key(payload: Payload, eval_set: EvalSet) -> None:
    assert eval_set.provenance["payload_hash"] == payload.content_hash, "eval set was built from another payload"
    targets, found = payload.vectors_of(eval_set.truth_keys)
    assert found.all(), f"{(~found).sum()} truth keys are missing from the payload"
    assert np.array_equal(targets, eval_set.targets)
    contexts, context_found = payload.vectors_of(eval_set.context_keys)
    assert context_found.all() and np.array_equal(contexts, eval_set.contexts)


def test_splits_are_disjoint_by_article(payload: Payload, eval_set: EvalSet) -> None:
    parts = {name: load_training_data(DEFAULT / f"{name}.json", payload) for name in ("train", "validation")}
    train = set(json.loads((DEFAULT / "train.json").read_text())["articles"])
    validation = set(json.loads((DEFAULT / "validation.json").read_text())["articles"])
    evaluation = set(eval_set.articles.tolist())
    assert not (train & evaluation) and not (validation & evaluation) and not (train & validation)
    assert parts["train"].count > 2 * eval_set.count > 0
    for name, data in parts.items():
        assert data.provenance["payload_hash"] == payload.content_hash and data.provenance["split"] == name


def test_reencoding_shipped_texts_reproduces_shipped_vectors(payload: Payload) -> None:
    from lvmcore.ingest.encoder import TextEncoder

    assert payload.texts is not None, "the default bank must ship texts.jsonl"
    rows = np.sort(np.random.default_rng(0).choice(payload.count, size=16, replace=False))
    encoder = TextEncoder("torch")  # the reference backend, whichever backend built the bank
    assert encoder.embedder == payload.embedder, f"installed encoder {encoder.embedder} is not the bank's {payload.embedder}"
    fresh = encoder.encode([payload.texts[r] for r in rows])  # (16, 384)
    cosines = (fresh * np.asarray(payload.vectors[rows])).sum(axis=1)
    assert cosines.min() > 0.999, f"re-encoded chunk rows {rows[cosines <= 0.999].tolist()} have cosine {cosines.min():.4f} to the shipped vectors"
