"""Training data (`train/data.py`): the article split, augmentation (article dropout, span corruption) and hard negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lvmcore.errors import ArtifactError
from lvmcore.artifacts.payload import load_payload
from lvmcore.keys import pack_keys
from train.data import HardNegativeSampler, TrainingBank, article_dropout, assemble_batch, load_splits, span_corruption
from helpers.training_runs import DIM, CONTEXT, ARTICLES, CHUNKS, bank  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_leaking_validation_articles_are_refused(bank: Path) -> None:
    with pytest.raises(ArtifactError, match="shares .* article"):
        load_splits(bank / "payload", bank / "train.json", bank / "train.json", seed=0, validation_fraction=0.1)


def test_without_validation_data_the_articles_are_split_by_hash(bank: Path) -> None:
    splits = load_splits(bank / "payload", bank / "train.json", None, seed=0, validation_fraction=0.3)
    assert splits.validation.count > 0 and splits.train.count > 0
    assert np.intersect1d(splits.training_articles, splits.validation_articles).size == 0


def test_article_dropout_blanks_a_suffix_but_never_the_whole_context() -> None:
    contexts = np.ones((500, CONTEXT, 4), dtype=np.float32)
    out = article_dropout(contexts, 0.5, np.random.default_rng(0))
    blank = (out == 0).all(axis=2)  # (B, C)
    blanked = blank.any(axis=1)
    assert 0.4 < blanked.mean() < 0.6
    assert not blank[:, 0].any()  # k <= C-1: the first chunk always survives
    for row in blank[blanked]:
        k = row.sum()
        assert row[CONTEXT - k :].all() and not row[: CONTEXT - k].any()  # exactly the last k
    assert {int(k) for k in blank[blanked].sum(axis=1)} == set(range(1, CONTEXT))
    assert (contexts == 1).all()  # the input is not modified


def test_span_corruption_swaps_one_position_from_another_document() -> None:
    rng = np.random.default_rng(1)
    contexts = rng.normal(size=(64, CONTEXT, 4)).astype(np.float32)
    articles = np.repeat(np.arange(8), 8)
    out = span_corruption(contexts, articles, 1.0, np.random.default_rng(2))
    for row in range(64):
        changed = np.flatnonzero((out[row] != contexts[row]).any(axis=1))
        assert len(changed) == 1
        position = changed[0]
        donors = np.flatnonzero((contexts[:, position] == out[row, position]).all(axis=1))
        assert len(donors) == 1 and articles[donors[0]] != articles[row]


def test_hard_negatives_come_from_the_same_article_and_never_the_truth(bank: Path) -> None:
    payload = load_payload(bank / "payload")
    sampler = HardNegativeSampler(payload, np.arange(ARTICLES))
    truth = np.array([[3, 0], [3, CHUNKS - 1], [7, 5]] * 50)
    negatives = sampler.sample(truth, 4, np.random.default_rng(0))  # (B, 4, D)
    assert negatives.shape == (150, 4, DIM)
    truth_vectors, _ = payload.vectors_of(truth)
    for row, key in enumerate(truth):
        article_vectors = payload.vectors[payload.keys[:, 0] == key[0]]
        for vector in negatives[row]:
            assert (np.abs(article_vectors - vector).max(axis=1) == 0).any()  # from the same article
            assert not np.array_equal(vector, truth_vectors[row])  # never the positive


def test_span_corruption_moves_the_donor_key_with_the_donor_vector(bank: Path) -> None:
    """The bank loss masks what a context really holds: a swapped-in chunk's key comes with it."""
    splits = load_splits(bank / "payload", bank / "train.json", bank / "validation.json", seed=0, validation_fraction=0.1)
    rows = np.arange(0, splits.train.count, 3)[:40]
    batch = assemble_batch(splits.train, rows, np.random.default_rng(5), span_corruption_p=1.0)
    vectors, found = splits.payload.vectors_of(batch.context_keys)  # (B, C, D)
    assert found.all()
    np.testing.assert_array_equal(batch.contexts, vectors)
    assert (batch.context_keys != splits.train.context_keys[rows]).any(axis=(1, 2)).sum() >= len(rows) // 2
    columns = TrainingBank.of_articles(splits.payload, splits.training_articles).target_columns(splits.train)
    bank_rows = TrainingBank.of_articles(splits.payload, splits.training_articles).rows
    np.testing.assert_array_equal(pack_keys(splits.payload.keys[bank_rows[columns]]), pack_keys(splits.train.truth_keys))
