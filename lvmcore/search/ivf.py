"""Search over the payload: exact (blockwise over the memory map) and IVF-Flat, inner product.

Exact search never builds a second in-memory copy of the payload: it streams the memory map in
blocks through `faiss.knn` and merges per-block top-k lists in a `faiss.ResultHeap`. The IVF
index holds its own copy (that is what IVF-Flat is) and is cached on disk keyed by the payload's
content hash, so the tenth checkpoint costs no index build.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from lvmcore.blocks import gather_rows, iter_blocks
from lvmcore.artifacts.payload import Payload

SEARCH_BLOCK_ROWS = 32_768  # 96 MiB of a 768-D payload in RAM at a time
BLAS_TILE = (4_096, 4_096)  # faiss.knn's (query, database) tile, a 64 MiB score buffer; its default (4,096, 1,024) was 9% slower at seed scale


@contextmanager
def blas_tiles(query_rows: int, database_rows: int):
    """faiss's brute-force tile size for the duration of one search, restored afterwards (it is process-wide)."""
    saved = faiss.cvar.distance_compute_blas_query_bs, faiss.cvar.distance_compute_blas_database_bs
    faiss.cvar.distance_compute_blas_query_bs, faiss.cvar.distance_compute_blas_database_bs = query_rows, database_rows
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_query_bs, faiss.cvar.distance_compute_blas_database_bs = saved


@dataclass(frozen=True)
class IVFConfig:
    """IVF-Flat settings. nlist=None picks about 4*sqrt(N), capped to keep >= 39 points per list.

    The k-means that places the lists costs train_points_per_list * nlist * train_iterations dot
    products of length D: at 584,545 x 768 and 3,058 lists, about 21 s per iteration on 2 cores.
    """

    nlist: int | None = None
    nprobe: int = 64
    seed: int = 1234
    train_points_per_list: int = 256  # faiss's own cap (max_points_per_centroid)
    train_iterations: int = 10  # faiss's default for IVF training

    def lists_for(self, count: int) -> int:
        if self.nlist is not None:
            return int(self.nlist)
        return int(max(1, min(4 * np.sqrt(count), count // 39)))

    def cache_name(self, count: int) -> str:
        """What identifies an index built with these settings over `count` rows (not nprobe: that is a search setting)."""
        return f"ivfflat-ip-nlist{self.lists_for(count)}-train{self.train_points_per_list}x{self.train_iterations}-seed{self.seed}"


def exact_search(
    payload_vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of each query over the payload: scores (M, k) and rows (M, k).

    transform: applied to each block before searching (a two-tower model's payload tower), so an
    encoded bank is searched without ever holding an encoded copy of the whole payload.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(payload_vectors))
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    with blas_tiles(*BLAS_TILE):
        _search_blocks(payload_vectors, queries, k, transform, heap)
    heap.finalize()
    return heap.D, heap.I


def _search_blocks(payload_vectors: np.ndarray, queries: np.ndarray, k: int, transform: Callable[[np.ndarray], np.ndarray] | None, heap: faiss.ResultHeap) -> None:
    """Stream the payload through faiss.knn block by block, merging each block's top-k into `heap`."""
    for start, block in iter_blocks(payload_vectors, SEARCH_BLOCK_ROWS):
        block = transform(block) if transform is not None else block  # (b, D)
        scores, rows = faiss.knn(queries, np.ascontiguousarray(block, dtype=np.float32), min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        scores, rows = pad_topk(scores, rows, k)  # a short last block: the heap needs k columns
        heap.add_result(scores, np.where(rows >= 0, rows + start, -1))


def pad_topk(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad (M, k') top-k lists to (M, k) with (-inf, -1), the entries that mean "no result"."""
    short = k - scores.shape[1]
    if short <= 0:
        return scores, rows
    return (
        np.pad(scores, ((0, 0), (0, short)), constant_values=-np.inf),
        np.pad(rows, ((0, 0), (0, short)), constant_values=-1),
    )


def build_ivf(payload_vectors: np.ndarray, config: IVFConfig) -> faiss.IndexIVFFlat:
    """Train an IVF-Flat inner-product index on a sample of the payload and add every row in blocks."""
    count, dim = payload_vectors.shape
    nlist = config.lists_for(count)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample_size = min(count, nlist * config.train_points_per_list)
    rng = np.random.default_rng(config.seed)
    sample_rows = np.sort(rng.choice(count, size=sample_size, replace=False))
    index.cp.seed = config.seed
    index.cp.niter = config.train_iterations
    index.cp.max_points_per_centroid = config.train_points_per_list
    index.train(gather_rows(payload_vectors, sample_rows))
    for _, block in iter_blocks(payload_vectors):
        index.add(np.ascontiguousarray(block))
    index.nprobe = config.nprobe
    return index


def default_cache_dir() -> Path:
    return Path(os.environ.get("LVM_CHECKS_CACHE", Path.home() / ".cache" / "lvm-checks"))


def cached_ivf(payload: Payload, config: IVFConfig, cache_dir: Path | None = None) -> tuple[faiss.IndexIVFFlat, bool]:
    """The payload's IVF index from the on-disk cache, building and saving it on a miss.

    Returns (index, was_cached). The cache key is the payload's content hash and the list count,
    so an edited payload never reuses a stale index.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / "index" / f"{payload.content_hash}-{config.cache_name(payload.count)}.faiss"
    return read_or_build_ivf(path, payload.vectors, config)


def read_or_build_ivf(path: Path, vectors: np.ndarray, config: IVFConfig) -> tuple[faiss.IndexIVFFlat, bool]:
    """The index cached at `path` (nprobe set from `config`), else one built over `vectors` and saved there.

    Returns (index, was_cached). The file is written under a temporary name and renamed, so a
    concurrent reader (another rank, another session) sees no file or the whole file.
    """
    if path.is_file():
        index = faiss.read_index(str(path))
        index.nprobe = config.nprobe
        return index, True
    index = build_ivf(vectors, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    faiss.write_index(index, str(tmp_path))
    tmp_path.replace(path)
    return index, False


def load_index(path: str | Path) -> faiss.Index:
    """Read a user-supplied FAISS index file (`--index`), naming the file if it is unreadable."""
    from lvmcore.errors import ArtifactError

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "index file not found")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ArtifactError(path, f"cannot be read as a FAISS index: {str(exc).splitlines()[0]}") from None


def index_search(index: faiss.Index, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over a FAISS index; nprobe applies to IVF indexes."""
    if nprobe is not None and hasattr(faiss.extract_index_ivf(index) if _is_ivf(index) else index, "nprobe"):
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


AGREEMENT_QUERIES = 1_000  # a seeded sample: the share is an estimate, and each query costs a pass over N
AGREEMENT_K = 10


def agreement_queries(contexts: np.ndarray, count: int = AGREEMENT_QUERIES, seed: int = 11) -> np.ndarray:
    """Unit mean-of-context vectors of a seeded sample of `count` windows (M, C, D): queries that land
    between chunks, as a model's predictions do, rather than on a stored row."""
    sample = np.sort(np.random.default_rng(seed).permutation(len(contexts))[:count])
    queries = np.asarray(contexts[sample], dtype=np.float32).mean(axis=1)
    return queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)


def ivf_exact_agreement(index: faiss.Index, payload_vectors: np.ndarray, queries: np.ndarray, k: int, nprobe: int | None = None) -> float:
    """Mean share of each query's exact top-k rows that the index also returns in its top-k.

    Row ids, not keys: this measures the index against exact search over the same rows, so a
    duplicate vector found under another row id counts as a miss (rare; the bank check bounds it).
    """
    _, exact_rows = exact_search(payload_vectors, queries, k)
    _, index_rows = index_search(index, queries, k, nprobe)
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(exact_rows, index_rows)]))


def list_imbalance(index: faiss.Index) -> float:
    """faiss's imbalance factor of an IVF index: 1.0 when every list holds the same number of rows."""
    return float(faiss.extract_index_ivf(index).invlists.imbalance_factor())


def _is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return False


def metric_name(index: faiss.Index) -> str:
    return {faiss.METRIC_INNER_PRODUCT: "ip", faiss.METRIC_L2: "l2"}.get(index.metric_type, str(index.metric_type))
