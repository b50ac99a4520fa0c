"""IVF-Flat inner-product indexes: built from the payload, cached by content hash, read from a file, searched.

The IVF index holds its own copy of the payload (that is what IVF-Flat is) and is cached on disk
keyed by the payload's content hash and the build settings, so the tenth checkpoint costs no
build. How many lists a search probes (`nprobe`) is an argument of each search, passed to faiss
as search parameters: nothing here writes it onto an index that other callers share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from lvmcore.artifacts.payload import Payload
from lvmcore.blocks import ROW_BLOCK, gather_rows, iter_blocks
from lvmcore.artifacts.validate import require_file
from lvmcore.errors import ArtifactError
from lvmcore.files import CACHE_TEMP_MIN_AGE_S, remove_orphan_temps, set_aside, write_atomic
from lvmcore.progress import phase
from lvmcore.sampling import sample_rows
from lvmcore.search.ivf_by_list import by_list_pays, search_by_list

DEFAULT_NPROBE = 64


@dataclass(frozen=True)
class IVFBuild:
    """How an IVF-Flat index is built. nlist=None picks about 4*sqrt(N), capped to keep >= 39 points per list.

    The k-means that places the lists costs train_points_per_list * nlist * train_iterations dot
    products of length D: at 584,545 x 768 and 3,058 lists, about 21 s per iteration on 2 cores.
    """

    nlist: int | None = None
    seed: int = 1234
    train_points_per_list: int = 256  # faiss's own cap (max_points_per_centroid)
    train_iterations: int = 10  # faiss's default for IVF training

    def lists_for(self, count: int) -> int:
        if self.nlist is not None:
            return int(self.nlist)
        return int(max(1, min(4 * np.sqrt(count), count // 39)))

    def cache_name(self, count: int) -> str:
        """What identifies an index built with these settings over `count` rows."""
        return f"ivfflat-ip-nlist{self.lists_for(count)}-train{self.train_points_per_list}x{self.train_iterations}-seed{self.seed}"


def build_ivf(payload_vectors: np.ndarray, build: IVFBuild) -> faiss.IndexIVFFlat:
    """Train an IVF-Flat inner-product index on a sample of the payload and add every row in blocks."""
    count, dim = payload_vectors.shape
    nlist = build.lists_for(count)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    training_rows = sample_rows(count, nlist * build.train_points_per_list, build.seed)
    index.cp.seed = build.seed
    index.cp.niter = build.train_iterations
    index.cp.max_points_per_centroid = build.train_points_per_list
    with phase(f"IVF k-means ({nlist:,} lists, {len(training_rows):,} points, {build.train_iterations} iterations)"):
        index.train(gather_rows(payload_vectors, training_rows))
    with phase(f"IVF add ({count:,} rows)", total=-(-count // ROW_BLOCK)) as step:
        for _, block in iter_blocks(payload_vectors):
            index.add(np.ascontiguousarray(block))
            step()
    return index


def default_cache_dir() -> Path:
    return Path(os.environ.get("LVM_CHECKS_CACHE", Path.home() / ".cache" / "lvm-checks"))


def cached_ivf(payload: Payload, build: IVFBuild, cache_dir: Path | None = None) -> tuple[faiss.IndexIVFFlat, bool]:
    """The payload's IVF index from the on-disk cache, building and saving it on a miss.

    Returns (index, was_cached). The cache key is the payload's content hash and the build
    settings, so an edited payload never reuses a stale index.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / "index" / f"{payload.content_hash}-{build.cache_name(payload.count)}.faiss"
    return read_or_build_ivf(path, payload.vectors, build)


def cached_ivf_problem(index: faiss.Index, vectors: np.ndarray, build: IVFBuild) -> str | None:
    """Why a cached index is not the one its name promises (None when it is): the name holds the
    payload's hash and the build settings, so the header must agree on dimension, rows, lists and metric."""
    count, dim = vectors.shape
    if not isinstance(index, faiss.IndexIVFFlat):
        return f"holds a {type(index).__name__}, not an IndexIVFFlat"
    if index.d != dim or index.ntotal != count:
        return f"holds {index.ntotal:,} rows of dimension {index.d}, the payload has {count:,} of dimension {dim}"
    if index.nlist != build.lists_for(count) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return f"has {index.nlist:,} lists and metric {metric_name(index)}, the build asks for {build.lists_for(count):,} and ip"
    if index.invlists.compute_ntotal() != count:
        return f"its inverted lists hold {index.invlists.compute_ntotal():,} rows, its header says {count:,}"
    return None


def read_cached_ivf(path: Path, vectors: np.ndarray, build: IVFBuild) -> tuple[faiss.IndexIVFFlat | None, str]:
    """The cached index, or (None, why it cannot be used): unreadable, truncated, or not what its name says.

    Read through a memory map (faiss.IO_FLAG_MMAP): the lists stay in the OS page cache instead of a
    1.8 GiB private copy per process at seed scale, opening costs milliseconds instead of seconds, and
    a later atomic replacement of the file leaves this mapping on the old, unchanged file.
    """
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    except (RuntimeError, MemoryError) as exc:
        return None, f"cannot be read as a FAISS index ({faiss_reason(exc)})"
    problem = cached_ivf_problem(index, vectors, build)
    return (None, problem) if problem else (index, "")


def read_or_build_ivf(path: Path, vectors: np.ndarray, build: IVFBuild) -> tuple[faiss.IndexIVFFlat, bool]:
    """The index cached at `path`, else one built over `vectors` and saved there.

    Returns (index, was_cached). The file is written atomically (`lvmcore.files.write_atomic`), so
    a concurrent reader sees no file or the whole file, and a power cut leaves no half file. A cached
    file that cannot be read, or whose header disagrees with its name, is moved aside to
    `<name>.corrupt-<time>` with a `CacheWarning` and rebuilt: a broken cache never breaks the next run.
    Temp files left by a writer that died are removed.
    """
    remove_orphan_temps(path.parent, min_age_s=CACHE_TEMP_MIN_AGE_S)
    if path.exists():
        index, problem = read_cached_ivf(path, vectors, build)
        if index is not None:
            return index, True
        set_aside(path, f"cached index {problem}")
    index = build_ivf(vectors, build)
    write_atomic(path, lambda out: write_index_to(index, out))
    return index, False


def write_index_to(index: faiss.Index, out: BinaryIO) -> None:
    """Stream a faiss index into an open binary file (no second copy of a multi-GiB index in memory)."""
    writer = faiss.PyCallbackIOWriter(out.write)
    faiss.write_index(index, writer)
    del writer  # flushes faiss's buffer into `out`


def faiss_reason(exc: BaseException) -> str:
    """The part of a faiss C++ error a user can read: "read error in ..." from "Error in <signature> at <file>: Error: '...' failed: read error in ..."."""
    text = " ".join(str(exc).split())
    text = text.rsplit(" failed: ", 1)[-1] if " failed: " in text else text.rsplit("Error: ", 1)[-1]
    return (text[:160] or type(exc).__name__).rstrip(".")


def load_index(path: str | Path, expected_dim: int | None = None) -> faiss.Index:
    """Read a user-supplied FAISS index file (`--index`), naming the file if it is unreadable or if its
    dimension is not the payload's (faiss would stop the first search with a bare assertion)."""
    path = Path(path)
    require_file(path, "FAISS index file")
    try:
        index = faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as exc:
        raise ArtifactError(path, f"cannot be read as a FAISS index: {faiss_reason(exc)}") from None
    if expected_dim is not None and index.d != expected_dim:
        raise ArtifactError(path, f"indexes vectors of dimension {index.d}, the payload's are {expected_dim}: it was built over another bank or embedder")
    return index


def is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return False


def index_search(index: faiss.Index, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over a FAISS index: scores (M, k) and rows (M, k); nprobe applies to IVF indexes, for this search only.

    A big batch over an inner-product IndexIVFFlat is searched list by list (`lvmcore/search/ivf_by_list.py`:
    the same results; 3.2x faster than faiss at the gate's 5,244 queries at seed scale); every other search is faiss's own.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if nprobe is not None and by_list_pays(index, len(queries), nprobe):  # crossover ~4 queries per probed list, measured there
        return search_by_list(index, queries, k, nprobe)
    if nprobe is not None and isinstance(index, faiss.IndexIVF):
        return index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=int(nprobe)))
    if nprobe is not None and is_ivf(index):  # an IVF inside a wrapper: faiss takes the parameters at the IVF level only
        ivf = faiss.extract_index_ivf(index)
        saved = ivf.nprobe
        ivf.nprobe = int(nprobe)
        try:
            return index.search(queries, k)
        finally:
            ivf.nprobe = saved
    return index.search(queries, k)


def list_imbalance(index: faiss.Index) -> float:
    """faiss's imbalance factor of an IVF index: 1.0 when every list holds the same number of rows."""
    return float(faiss.extract_index_ivf(index).invlists.imbalance_factor())


def metric_name(index: faiss.Index) -> str:
    return {faiss.METRIC_INNER_PRODUCT: "ip", faiss.METRIC_L2: "l2"}.get(index.metric_type, str(index.metric_type))
