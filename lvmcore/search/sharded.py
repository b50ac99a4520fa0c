"""Exact and IVF search over a payload split into row shards, one per torch.distributed rank.

When the payload outgrows one machine, each rank memory-maps only its contiguous shard of rows
[r*N/W, (r+1)*N/W), searches it (blockwise exact, or an IVF-Flat index built on the shard),
shifts its row ids to global rows, and all ranks all-gather their (scores, rows) top-k lists and
merge them. The merge sorts by score, then by global row id, so ties resolve the same way
whatever the world size. Every rank returns the same merged result.

Run under `torchrun` (gloo on CPU, nccl is not needed: the exchanged lists are tiny, M x k):

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m lvmcore.search.sharded --payload /data/payload --eval-set /data/eval.npz --k 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lvmcore.search.exact import exact_search, pad_topk
from lvmcore.search.ivf import DEFAULT_NPROBE, IVFBuild, build_ivf, default_cache_dir, index_search, read_or_build_ivf

NO_ROW = -1


@dataclass(frozen=True)
class Shard:
    """Rows [start, stop) of the payload that one rank owns."""

    rank: int
    world_size: int
    start: int
    stop: int

    @property
    def count(self) -> int:
        return self.stop - self.start


def shard_bounds(count: int, rank: int, world_size: int) -> Shard:
    """The contiguous shard [r*N//W, (r+1)*N//W): sizes differ by at most one row, and the shards tile [0, N)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    return Shard(rank, world_size, rank * count // world_size, (rank + 1) * count // world_size)


def open_vectors(source: str | Path | np.ndarray) -> np.ndarray:
    """The payload's (N, D) vectors: an array as given, or `vectors.npy` (or a payload dir) memory-mapped.

    Memory-mapping means a rank that slices out its shard reads only that shard's pages.
    """
    if isinstance(source, np.ndarray):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / "vectors.npy"
    from lvmcore.artifacts.payload import load_npy

    return load_npy(path, mmap=True)


def merge_topk(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge concatenated per-shard lists (M, S*k) into the global top-k (M, k).

    Order: score descending, then row id ascending (a stable tie-break that does not depend on
    shard order). Padding entries (row -1, score -inf) sort last.
    """
    rows = np.asarray(rows, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    sort_rows = np.where(rows < 0, np.iinfo(np.int64).max, rows)  # (M, S*k)
    order = np.lexsort((sort_rows, -scores), axis=-1)[:, :k]  # (M, k)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def to_global_rows(rows: np.ndarray, shard: Shard) -> np.ndarray:
    """Shift shard-local row ids to payload rows, keeping -1 (no result) as -1."""
    rows = np.asarray(rows, dtype=np.int64)
    return np.where(rows >= 0, rows + shard.start, NO_ROW)


def gather_and_merge(scores: np.ndarray, rows: np.ndarray, k: int, group: dist.ProcessGroup | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All-gather every rank's (M, k) lists and merge them; without a process group, merge locally."""
    scores, rows = pad_topk(np.asarray(scores, np.float32), np.asarray(rows, np.int64), k)
    if not (dist.is_available() and dist.is_initialized()):
        return merge_topk(scores, rows, k)
    world_size = dist.get_world_size(group)
    local_scores = torch.from_numpy(np.ascontiguousarray(scores))  # (M, k)
    local_rows = torch.from_numpy(np.ascontiguousarray(rows))  # (M, k)
    all_scores = [torch.empty_like(local_scores) for _ in range(world_size)]
    all_rows = [torch.empty_like(local_rows) for _ in range(world_size)]
    dist.all_gather(all_scores, local_scores, group=group)
    dist.all_gather(all_rows, local_rows, group=group)
    merged_scores = torch.cat(all_scores, dim=1).numpy()  # (M, W*k)
    merged_rows = torch.cat(all_rows, dim=1).numpy()  # (M, W*k)
    return merge_topk(merged_scores, merged_rows, k)


def rank_and_world(group: dist.ProcessGroup | None) -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


def local_shard(source: str | Path | np.ndarray, group: dist.ProcessGroup | None = None) -> tuple[np.ndarray, Shard, int]:
    """This rank's slice of the payload (a memory-map view when `source` is a file), its bounds, and N."""
    vectors = open_vectors(source)
    rank, world_size = rank_and_world(group)
    shard = shard_bounds(len(vectors), rank, world_size)
    return vectors[shard.start : shard.stop], shard, len(vectors)


def sharded_exact_search(
    payload_vectors: str | Path | np.ndarray,
    queries: np.ndarray,
    k: int,
    group: dist.ProcessGroup | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k over the whole payload, each rank searching only its shard.

    Every rank must pass the same queries. Returns scores (M, k) float32 and global payload rows
    (M, k) int64, the same on every rank. Outside torch.distributed this is one shard: the whole payload.
    """
    vectors, shard, count = local_shard(payload_vectors, group)
    k = min(k, count)
    if shard.count:
        scores, rows = exact_search(vectors, queries, k)  # (M, min(k, shard)) each
    else:  # more ranks than rows: this rank contributes padding only
        scores, rows = np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    return gather_and_merge(scores, to_global_rows(rows, shard), k, group)


def shard_ivf_path(cache_dir: Path, payload_hash: str, shard: Shard, config: IVFBuild) -> Path:
    return cache_dir / "index" / f"{payload_hash}-shard{shard.rank}of{shard.world_size}-{config.cache_name(shard.count)}.faiss"


def shard_ivf(vectors: np.ndarray, shard: Shard, config: IVFBuild, payload_hash: str | None = None, cache_dir: Path | None = None):
    """An IVF-Flat index over this rank's shard; cached on disk when the payload's content hash is known."""
    if payload_hash is None:
        return build_ivf(vectors, config)
    path = shard_ivf_path(Path(cache_dir) if cache_dir is not None else default_cache_dir(), payload_hash, shard, config)
    return read_or_build_ivf(path, vectors, config)[0]


def sharded_ivf_search(
    payload_vectors: str | Path | np.ndarray,
    queries: np.ndarray,
    k: int,
    config: IVFBuild = IVFBuild(),
    nprobe: int = DEFAULT_NPROBE,
    group: dist.ProcessGroup | None = None,
    payload_hash: str | None = None,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """IVF-Flat top-k with one index per shard (nlist per shard from `config`), merged like the exact search.

    With nprobe equal to each shard's nlist this is exact; at nprobe < nlist each shard loses
    what its own quantizer loses, so recall tracks a single index of the same lists per row.
    """
    vectors, shard, count = local_shard(payload_vectors, group)
    k = min(k, count)
    index = shard_ivf(vectors, shard, config, payload_hash, cache_dir)
    scores, rows = index_search(index, queries, k, nprobe)
    return gather_and_merge(scores, to_global_rows(rows, shard), k, group)


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: sharded search of an eval set's queries; rank 0 prints R@K and MRR as JSON."""
    from lvmcore.artifacts.evalset import load_eval_set
    from lvmcore.artifacts.payload import load_manifest
    from lvmcore.search.hits import first_hit_rank, key_hits, mean_reciprocal_rank, recall_at

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--payload", type=Path, required=True)
    parser.add_argument("--eval-set", type=Path, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", choices=("targets", "copy-last"), default="copy-last", help="targets: oracle recall; copy-last: the copy-last baseline")
    parser.add_argument("--ivf", action="store_true", help="IVF-Flat per shard instead of exact search")
    parser.add_argument("--nlist", type=int, default=None)
    parser.add_argument("--nprobe", type=int, default=64)
    args = parser.parse_args(argv)
    if not dist.is_initialized() and "RANK" in os.environ:
        dist.init_process_group("gloo")
    eval_set = load_eval_set(args.eval_set)
    queries = eval_set.targets if args.queries == "targets" else eval_set.contexts[:, -1]
    if args.ivf:
        payload_hash = str(load_manifest(args.payload / "manifest.json").get("content_hash", "")) or None
        scores, rows = sharded_ivf_search(args.payload, queries, args.k, IVFBuild(nlist=args.nlist), nprobe=args.nprobe, payload_hash=payload_hash)
    else:
        scores, rows = sharded_exact_search(args.payload, queries, args.k)
    rank, world_size = rank_and_world(None)
    if rank == 0:
        keys = np.load(args.payload / "keys.npy", mmap_mode="r")
        ranks = first_hit_rank(key_hits(rows, keys, eval_set.truth_keys))
        result = {f"R@{k}": recall_at(ranks, k) for k in (1, 5, 10) if k <= args.k} | {"MRR": mean_reciprocal_rank(ranks), "world_size": world_size, "queries": args.queries, "search": "ivf" if args.ivf else "exact"}
        print(json.dumps(result))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
