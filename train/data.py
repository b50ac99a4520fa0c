"""Training data for the loop: splits by document, the epoch's window order, augmentation, hard negatives,
and the bank of payload chunks the bank loss scores against.

Every random choice is drawn from a generator seeded by (seed, epoch, step, rank), never from a
stream carried across steps, so a run resumed at step k draws exactly what an uninterrupted run
draws at step k. The sampled bank's generator leaves out the rank: every rank scores the same bank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvmcore.blocks import take_rows
from lvmcore.errors import ArtifactError
from lvmcore.keys import pack_keys
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData, windows_from_payload
from lvmcore.artifacts.windows import document_split
from lvmcore.plumbing.key_recovery import PayloadDigests
from lvmcore.plumbing.user_files import ReadOptions, read_payload, read_training


@dataclass
class TrainingSplits:
    """The payload, training windows and held-out validation windows (disjoint by document)."""

    payload: Payload
    train: TrainingData
    validation: TrainingData
    training_articles: np.ndarray  # (A_t,) int64
    validation_articles: np.ndarray  # (A_v,) int64


def select_articles(data: TrainingData, articles: np.ndarray, name: str) -> TrainingData:
    """The windows of `data` whose target and context chunks all belong to `articles`."""
    if data.built_from_payload:
        assert data.payload is not None
        return windows_from_payload(data.payload, articles, data.context_length, data.path, data.provenance)
    keep = np.isin(data.truth_keys[:, 0], articles) & np.isin(data.context_keys[..., 0], articles).all(axis=1)
    rows = np.flatnonzero(keep)
    assert data.contexts is not None and data.targets is not None
    return TrainingData(
        path=Path(f"{data.path}#{name}"),
        context_keys=data.context_keys[rows],
        truth_keys=data.truth_keys[rows],
        provenance=data.provenance,
        contexts=data.contexts[rows],
        targets=data.targets[rows],
    )


def load_splits(
    payload_path: str | Path,
    train_path: str | Path,
    validation_path: str | Path | None,
    seed: int,
    validation_fraction: float,
    options: ReadOptions = ReadOptions(),
) -> TrainingSplits:
    """Load the payload and the windows, in any layout the suite reads (`lvmcore.plumbing.user_files`, the
    suite's own reader, with the same `--field` and `--allow-pickle`); without validation data, split the
    training articles by seeded hash.

    A file without context_keys gets them recovered from the payload, and is refused when some context
    vector matches no payload row. Raises ArtifactError when training and validation share an article
    (FAILURE_MODES row 5: a random split over overlapping windows leaked 91.5% of the eval articles).
    """
    payload = read_payload(payload_path, options)
    digests: list[PayloadDigests] = []  # computed once, and only when a file has no context_keys

    def payload_digests() -> PayloadDigests:
        if not digests:
            digests.append(PayloadDigests.of(payload))
        return digests[0]

    train = read_training(train_path, payload, options, digests=payload_digests, require_keys=True)
    if validation_path is None:
        parts = document_split(train.articles, {"train": 1.0 - validation_fraction, "validation": validation_fraction}, seed=seed)
        validation = select_articles(train, parts["validation"], "validation")
        train = select_articles(train, parts["train"], "train")
    else:
        validation = read_training(validation_path, payload, options, digests=payload_digests, require_keys=True)
        shared = np.intersect1d(train.articles, validation.articles)
        if shared.size:
            raise ArtifactError(
                validation_path,
                f"shares {shared.size} article(s) with the training data {train_path} (first: {int(shared[0])}); "
                "validation must be held out by document",
            )
    if train.count == 0:
        raise ArtifactError(train_path, "holds no training windows")
    if validation.count == 0:
        raise ArtifactError(validation_path or train_path, "holds no validation windows")
    return TrainingSplits(payload, train, validation, train.articles.astype(np.int64), validation.articles.astype(np.int64))


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's permutation of window rows, a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(count)


def step_rng(seed: int, epoch: int, step_in_epoch: int, rank: int) -> np.random.Generator:
    """The generator for one step's augmentation and hard negatives on one rank."""
    return np.random.default_rng([seed, epoch, step_in_epoch, rank, 0xA06])


def bank_sample_rng(seed: int, epoch: int, step_in_epoch: int) -> np.random.Generator:
    """The generator for one step's sampled bank: no rank in the seed, so every rank draws the same rows."""
    return np.random.default_rng([seed, epoch, step_in_epoch, 0xBA4C])


def article_dropout(contexts: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Blank the last k context positions (set them to zero) of each window with the given probability.

    k is uniform in 1..C-1: at least the first chunk of the context always survives, since a
    context with nothing in it carries no signal about its next chunk and only teaches the model
    an average. The model still must not produce NaN on an all-zero context (tested). Blanking the
    most recent chunks makes the model use the whole context instead of echoing the last chunk
    (FAILURE_MODES row 13). contexts (B, C, D); returns a new array.
    """
    count, length, _ = contexts.shape
    out = np.array(contexts, copy=True)
    if probability <= 0 or length < 2:
        return out
    chosen = rng.random(count) < probability  # (B,)
    blank = rng.integers(1, length, size=count)  # (B,) k in 1..C-1
    positions = np.arange(length)[None, :] >= (length - blank)[:, None]  # (B, C) the last k positions
    out[chosen[:, None] & positions] = 0.0
    return out


def span_corruption(contexts: np.ndarray, articles: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """With the given probability per window, replace one context position by the same position of a window
    from a DIFFERENT document in the batch.

    Teaches the model to tolerate an off-topic chunk instead of trusting every position equally.
    A window whose batch holds no other document is left as it is. contexts (B, C, D), articles (B,).
    """
    out = np.array(contexts, copy=True)
    for row, donor, position in span_corruption_swaps(articles, contexts.shape[1], probability, rng):
        out[row, position] = contexts[donor, position]
    return out


def span_corruption_swaps(articles: np.ndarray, length: int, probability: float, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """The (row, donor row, position) swaps `span_corruption` makes, so the context KEYS can follow the vectors."""
    swaps: list[tuple[int, int, int]] = []
    if probability <= 0:
        return swaps
    for row in np.flatnonzero(rng.random(len(articles)) < probability):
        donors = np.flatnonzero(articles != articles[row])
        if donors.size == 0:
            continue
        donor = donors[rng.integers(donors.size)]
        position = rng.integers(length)
        swaps.append((int(row), int(donor), int(position)))
    return swaps


class HardNegativeSampler:
    """Same-document negatives: k payload rows of the target's article, never the target's own key.

    Chunks of the same article are the closest wrong answers (the context chunks themselves among
    them), so they push the model past "anything from this article" towards "the next chunk".
    """

    def __init__(self, payload: Payload, articles: np.ndarray) -> None:
        keys = payload.keys
        rows = np.flatnonzero(np.isin(keys[:, 0], articles))
        codes = pack_keys(keys[rows])
        order = np.argsort(codes, kind="stable")
        self.payload = payload
        self.rows = rows[order]  # payload rows sorted by (article, chunk)
        self.codes = codes[order]
        self.row_articles = keys[self.rows, 0]
        self.article_ids, self.starts, self.counts = np.unique(self.row_articles, return_index=True, return_counts=True)

    def sample(self, truth_keys: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Vectors (B, k, D) of k same-article chunks per truth key (B, 2), drawn with replacement, never the truth."""
        truth_keys = np.asarray(truth_keys, dtype=np.int64)
        slot = np.searchsorted(self.article_ids, truth_keys[:, 0])
        if np.any(slot >= len(self.article_ids)) or np.any(self.article_ids[np.minimum(slot, len(self.article_ids) - 1)] != truth_keys[:, 0]):
            raise ValueError("a truth key's article has no chunks in the payload")
        starts, counts = self.starts[slot], self.counts[slot]  # (B,)
        truth_pos = np.searchsorted(self.codes, pack_keys(truth_keys)) - starts  # (B,) truth's offset inside its article
        # Draw from the article's other count-1 chunks: offsets at or past the truth's move up by one.
        draw = (rng.random((len(truth_keys), k)) * np.maximum(counts - 1, 1)[:, None]).astype(np.int64)  # (B, k)
        draw = draw + (draw >= truth_pos[:, None])
        draw = np.minimum(draw, counts[:, None] - 1)
        rows = self.rows[starts[:, None] + draw]  # (B, k)
        flat = rows.reshape(-1)
        order = np.argsort(flat)
        vectors = np.empty((len(flat), self.payload.dim), dtype=np.float32)
        vectors[order] = self.payload.vectors[flat[order]]
        return vectors.reshape(len(truth_keys), k, self.payload.dim)


@dataclass
class Batch:
    """One process's windows for one step, augmented, with the keys of what each context really holds."""

    contexts: np.ndarray  # (B, C, D) float32
    targets: np.ndarray  # (B, D) float32
    negatives: np.ndarray | None  # (B, k, D) hard negatives, or None
    context_keys: np.ndarray  # (B, C, 2) keys of the chunks in each context, after span corruption
    truth_keys: np.ndarray  # (B, 2)


def assemble_batch(
    data: TrainingData,
    rows: np.ndarray,
    rng: np.random.Generator,
    *,
    article_dropout_p: float = 0.0,
    span_corruption_p: float = 0.0,
    hard_negatives: int = 0,
    sampler: HardNegativeSampler | None = None,
) -> Batch:
    """Contexts (B, C, D), targets (B, D), hard negatives (B, k, D) or None, and the keys, for the given window rows.

    A context position swapped by span corruption takes its donor's key too, so the bank loss
    masks the chunk the model really read. A position blanked by article dropout keeps its key.
    """
    contexts, targets = data.batch(rows)
    articles = data.truth_keys[rows, 0]
    context_keys = np.array(data.context_keys[rows], copy=True)  # (B, C, 2)
    swaps = span_corruption_swaps(articles, contexts.shape[1], span_corruption_p, rng)
    corrupted = np.array(contexts, copy=True)
    for row, donor, position in swaps:
        corrupted[row, position] = contexts[donor, position]
        context_keys[row, position] = data.context_keys[rows[donor], position]
    contexts = article_dropout(corrupted, article_dropout_p, rng)
    negatives = None
    if hard_negatives > 0:
        assert sampler is not None
        negatives = sampler.sample(data.truth_keys[rows], hard_negatives, rng)
    return Batch(
        contexts=np.ascontiguousarray(contexts, dtype=np.float32),
        targets=np.ascontiguousarray(targets, dtype=np.float32),
        negatives=negatives,
        context_keys=context_keys,
        truth_keys=np.asarray(data.truth_keys[rows]),
    )


@dataclass
class TrainingBank:
    """The bank of the bank loss: every payload row of the training articles, as columns.

    Validation and eval articles are never columns, so the loss never scores a held-out chunk.
    """

    payload: Payload
    rows: np.ndarray  # (K,) int64 payload rows, ascending
    codes: np.ndarray  # (K,) int64 packed key of each column
    column_of_row: np.ndarray  # (N,) int64: the column of each payload row, -1 outside the bank
    key_multiplicity: int  # the most columns one key holds (1 when payload keys are unique)

    @classmethod
    def of_articles(cls, payload: Payload, articles: np.ndarray) -> "TrainingBank":
        rows = np.flatnonzero(np.isin(payload.keys[:, 0], articles)).astype(np.int64)
        codes = pack_keys(payload.keys[rows])
        column_of_row = np.full(payload.count, -1, dtype=np.int64)
        column_of_row[rows] = np.arange(len(rows))
        multiplicity = int(np.unique(codes, return_counts=True)[1].max()) if len(codes) else 0
        return cls(payload, rows, codes, column_of_row, multiplicity)

    @property
    def size(self) -> int:
        return int(len(self.rows))

    def vectors(self, columns: np.ndarray | None = None) -> np.ndarray:
        """Payload vectors (k, D) of the given columns (ascending), or of the whole bank."""
        rows = self.rows if columns is None else self.rows[columns]
        return np.ascontiguousarray(take_rows(self.payload.vectors, rows), dtype=np.float32)

    def target_columns(self, data: TrainingData) -> np.ndarray:
        """(W,) the column of each window's target row: the row it was read from, or (an .npz) its key's first row."""
        rows = data.target_rows if data.target_rows is not None else self.payload.rows_of(data.truth_keys)
        columns = np.where(rows >= 0, self.column_of_row[np.maximum(rows, 0)], -1)
        if np.any(columns < 0):
            first = data.truth_keys[int(np.flatnonzero(columns < 0)[0])]
            raise ArtifactError(
                data.path,
                f"{int((columns < 0).sum())} window target(s) are not rows of the training articles in the payload "
                f"(first key: ({int(first[0])}, {int(first[1])})); the bank loss needs every target in its bank",
            )
        return columns
