"""Write a seed bank at the public pipeline's scale: payload, eval set and training windows.

    python bench/make_seed_bank.py --out /work/seed/584k --rows 584545 --dim 768 --eval-rows 5244 --seed 0

Each document is a smooth walk on the unit sphere with its own drift direction:

    chunk[0]   = normalize(start * drift + u),                  u uniform on the sphere
    chunk[t+1] = normalize(carry * chunk[t] + pull * drift + noise * e / sqrt(D)),  e ~ N(0, I)

so the next chunk is predictable from the context (the drift shows in every context chunk) but
not from the last chunk alone: with the default constants copy-last scores cos ~0.53 to the
target, mean-of-context ~0.51, and a predictor that knows the drift ~0.62 (measured on a 150
document simulation). Document lengths are lognormal with median 28 chunks and mean 69.2 (the
public bank's 584,545 rows over 8,447 articles), clipped to >= 6.

The payload is written through a memory map one block of whole documents at a time, so the bank
is never held in RAM (and never twice): peak RSS is about the mapped file pages plus one block.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

if __package__ in (None, ""):  # run as `python bench/make_seed_bank.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvmcore.artifacts.evalset import write_eval_set  # noqa: E402
from lvmcore.artifacts.payload import content_hash  # noqa: E402
from lvmcore.artifacts.training_data import write_windows_spec  # noqa: E402
from lvmcore.artifacts.windows import build_windows, document_split  # noqa: E402

PUBLIC_ROWS = 584_545
PUBLIC_DOCUMENTS = 8_447
EMBEDDER = "seed-bank/walk-v1"
SPLIT = {"train": 0.8, "validation": 0.1, "eval": 0.1}
BLOCK_ROWS = 65_536  # rows per write; a block holds whole documents (a longer one is its own block)


@dataclass(frozen=True)
class WalkConfig:
    """Constants of the per-document walk and of the document-length distribution."""

    carry: float = 0.35  # weight of the previous chunk
    pull: float = 0.45  # weight of the document's drift direction
    noise: float = 0.9  # expected norm of the fresh noise per step
    start: float = 0.3  # drift weight in the first chunk
    intrinsic_dim: int | None = 64  # walks live in a random subspace this wide, so the bank is crowded like real embeddings
    median_length: float = 28.0
    mean_length: float = PUBLIC_ROWS / PUBLIC_DOCUMENTS  # 69.2
    min_length: int = 6


def document_count(rows: int, config: WalkConfig = WalkConfig()) -> int:
    """Documents for `rows` chunks: the public ratio (8,447 per 584,545), at least 1, at most rows / min_length."""
    wanted = max(1, round(rows * PUBLIC_DOCUMENTS / PUBLIC_ROWS))
    return max(1, min(wanted, rows // config.min_length))


def document_lengths(rows: int, seed: int, config: WalkConfig = WalkConfig()) -> np.ndarray:
    """(documents,) int64 lengths summing to `rows`: lognormal, clipped to >= min_length.

    sigma follows from median and mean (mean = median * exp(sigma^2 / 2)); the draw is then
    rescaled above the minimum so the lengths add up to exactly `rows`.
    """
    if rows < config.min_length:
        raise ValueError(f"need at least {config.min_length} rows for one document, got {rows}")
    count = document_count(rows, config)
    sigma = float(np.sqrt(2.0 * np.log(config.mean_length / config.median_length)))
    rng = np.random.default_rng([seed, 0x5EED])
    raw = np.maximum(rng.lognormal(np.log(config.median_length), sigma, size=count), config.min_length)
    excess = raw - config.min_length  # (documents,) >= 0
    target = rows - config.min_length * count
    scaled = excess * (target / excess.sum()) if excess.sum() > 0 else np.full(count, target / count)
    lengths = np.floor(scaled).astype(np.int64)
    short = target - int(lengths.sum())  # < count: hand one extra chunk to the largest remainders
    lengths[np.argsort(-(scaled - lengths), kind="stable")[:short]] += 1
    return lengths + config.min_length


def normalize_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def subspace_basis(dim: int, seed: int, config: WalkConfig = WalkConfig()) -> np.ndarray | None:
    """(k, dim) orthonormal rows spanning the walks' subspace, or None when walks use all dims."""
    k = config.intrinsic_dim
    if k is None or k >= dim:
        return None
    q, _ = np.linalg.qr(np.random.default_rng([seed, 0xBA515]).standard_normal((dim, k)))  # (D, k)
    return np.ascontiguousarray(q.T, dtype=np.float32)  # (k, D)


def document_drift(rng: np.random.Generator, width: int) -> np.ndarray:
    """(width,) unit drift direction: the first draw of a document's RNG."""
    return normalize_rows(rng.standard_normal(width))


def walk_document(article: int, length: int, dim: int, seed: int, config: WalkConfig = WalkConfig(), basis: np.ndarray | None = None) -> np.ndarray:
    """(length, dim) float32 unit chunks of one document; its own RNG, so any block layout gives the same bank.

    basis: (k, dim) from `subspace_basis`; the walk runs in k dims and is mapped into `dim` (an
    orthonormal map keeps norms and cosines).
    """
    width = dim if basis is None else basis.shape[0]
    rng = np.random.default_rng([seed, article])
    drift = document_drift(rng, width)  # (W,)
    first = normalize_rows(config.start * drift + normalize_rows(rng.standard_normal(width)))  # (W,)
    noise = rng.standard_normal((length, width), dtype=np.float32) * np.float32(config.noise / np.sqrt(width))  # (L, W)
    chunks = np.empty((length, width), dtype=np.float32)  # (L, W)
    chunks[0] = first
    pulled = (config.pull * drift).astype(np.float32)  # (W,)
    carry = np.float32(config.carry)
    for t in range(1, length):
        step = carry * chunks[t - 1] + pulled + noise[t]  # (W,)
        chunks[t] = step / np.linalg.norm(step)
    if basis is None:
        return chunks
    out = chunks @ basis  # (L, D)
    return out / np.linalg.norm(out, axis=1, keepdims=True)  # exact unit norm after float32 rounding


def iter_blocks(rows: int, dim: int, seed: int, config: WalkConfig = WalkConfig(), block_rows: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start_row, keys (B, 2) int64, vectors (B, D) float32) blocks of whole documents, in key order."""
    lengths = document_lengths(rows, seed, config)
    basis = subspace_basis(dim, seed, config)
    start = 0
    pending: list[tuple[int, int]] = []  # (article, length) of documents in the next block
    for article, length in enumerate(lengths.tolist()):
        pending.append((article, length))
        if sum(n for _, n in pending) >= block_rows or article == len(lengths) - 1:
            keys = np.concatenate([np.stack([np.full(n, a), np.arange(n)], axis=1) for a, n in pending]).astype(np.int64)
            vectors = np.concatenate([walk_document(a, n, dim, seed, config, basis) for a, n in pending])
            yield start, keys, vectors
            start += len(vectors)
            pending = []


def manifest_for(vectors: np.ndarray, keys: np.ndarray, seed: int, config: WalkConfig) -> dict:
    """The lvmcore.artifacts.payload manifest, with the generator's settings so a bank can be rebuilt."""
    return {
        "embedder": EMBEDDER,
        "dim": int(vectors.shape[1]),
        "norm": "l2",
        "metric": "ip",
        "count": int(vectors.shape[0]),
        "content_hash": content_hash(vectors, keys),
        "generator": {"script": "bench/make_seed_bank.py", "seed": seed, "documents": int(keys[:, 0].max()) + 1 if len(keys) else 0, **asdict(config)},
    }


def write_payload_streaming(directory: Path, rows: int, dim: int, seed: int, config: WalkConfig = WalkConfig(), block_rows: int = BLOCK_ROWS) -> Path:
    """Write vectors.npy through a memory map block by block, then keys.npy and manifest.json.

    The map is reopened for every block so written pages leave this process's resident set;
    the content hash then streams the finished file through `lvmcore.artifacts.payload.content_hash`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    vectors_path = directory / "vectors.npy"
    np.lib.format.open_memmap(vectors_path, mode="w+", dtype=np.float32, shape=(rows, dim)).flush()
    keys = np.empty((rows, 2), dtype=np.int64)
    for start, block_keys, block_vectors in iter_blocks(rows, dim, seed, config, block_rows):
        stop = start + len(block_vectors)
        out = np.lib.format.open_memmap(vectors_path, mode="r+")
        out[start:stop] = block_vectors
        out.flush()
        del out
        keys[start:stop] = block_keys
    np.save(directory / "keys.npy", keys)
    vectors = np.load(vectors_path, mmap_mode="r")
    (directory / "manifest.json").write_text(json.dumps(manifest_for(vectors, keys, seed, config), indent=2) + "\n")
    return directory


def build_payload_in_memory(rows: int, dim: int, seed: int, config: WalkConfig = WalkConfig()) -> tuple[np.ndarray, np.ndarray]:
    """The same bank as `write_payload_streaming`, held in RAM: (vectors (N, D), keys (N, 2)). For tests."""
    blocks = list(iter_blocks(rows, dim, seed, config))
    return np.concatenate([b[2] for b in blocks]), np.concatenate([b[1] for b in blocks])


def write_splits(out: Path, vectors: np.ndarray, keys: np.ndarray, payload_hash: str, eval_rows: int, seed: int, context_length: int) -> dict:
    """eval.npz from held-out documents only; train.json and val.json windows specs; returns counts."""
    parts = document_split(keys[:, 0], SPLIT, seed=seed)
    provenance = {"embedder": EMBEDDER, "dim": int(vectors.shape[1]), "norm": "l2", "metric": "ip", "payload_hash": payload_hash, "source": f"bench/make_seed_bank.py seed={seed}"}
    context_rows, target_rows = build_windows(keys, context_length, parts["eval"])
    available = len(target_rows)
    rng = np.random.default_rng([seed, 0xE7A1])
    chosen = np.sort(rng.choice(available, size=min(eval_rows, available), replace=False))
    context_rows, target_rows = context_rows[chosen], target_rows[chosen]
    gather = np.unique(np.concatenate([context_rows.reshape(-1), target_rows]))
    bank = dict(zip(gather.tolist(), range(len(gather))))
    gathered = np.asarray(vectors[gather])  # (G, D) sorted rows: one pass over the memory map
    lookup = np.vectorize(bank.__getitem__, otypes=[np.int64])
    write_eval_set(
        out / "eval.npz",
        contexts=gathered[lookup(context_rows)],  # (M, C, D)
        targets=gathered[lookup(target_rows)],  # (M, D)
        truth_keys=keys[target_rows],
        context_keys=keys[context_rows],
        provenance={**provenance, "split": "eval", "windows_available": available},
    )
    write_windows_spec(out / "train.json", parts["train"], context_length, {**provenance, "split": "train"})
    write_windows_spec(out / "val.json", parts["validation"], context_length, {**provenance, "split": "validation"})
    train_windows = len(build_windows(keys, context_length, parts["train"])[1])
    return {name: int(len(ids)) for name, ids in parts.items()} | {"eval_rows": int(len(chosen)), "eval_windows_available": available, "train_windows": train_windows}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for payload/, eval.npz, train.json, val.json")
    parser.add_argument("--rows", type=int, default=PUBLIC_ROWS)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--eval-rows", type=int, default=5244)
    parser.add_argument("--context-length", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    config = WalkConfig()
    payload_dir = write_payload_streaming(args.out / "payload", args.rows, args.dim, args.seed, config)
    payload_seconds = time.perf_counter() - began
    vectors = np.load(payload_dir / "vectors.npy", mmap_mode="r")
    keys = np.load(payload_dir / "keys.npy")
    manifest = json.loads((payload_dir / "manifest.json").read_text())
    counts = write_splits(args.out, vectors, keys, manifest["content_hash"], args.eval_rows, args.seed, args.context_length)
    lengths = np.bincount(keys[:, 0])
    payload_bytes = vectors.nbytes
    report = {
        "rows": args.rows,
        "dim": args.dim,
        "documents": int(len(lengths)),
        "length_median": float(np.median(lengths)),
        "length_mean": float(lengths.mean()),
        "length_max": int(lengths.max()),
        **counts,
        "payload_bytes": int(payload_bytes),
        "payload_seconds": round(payload_seconds, 1),
        "total_seconds": round(time.perf_counter() - began, 1),
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_rss_over_payload": round(peak_rss_bytes() / payload_bytes, 3),
        "content_hash": manifest["content_hash"],
    }
    (args.out / "seed_bank.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
