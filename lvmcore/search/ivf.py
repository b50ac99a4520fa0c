"""IVF-Flat inner-product indexes: built from the payload, cached by content hash, read from a file, searched.

The IVF index holds its own copy of the payload (that is what IVF-Flat is) and is cached on disk
keyed by the payload's content hash and the build settings, so the tenth checkpoint costs no
build. How many lists a search probes (`nprobe`) is an argument of each search, passed to faiss
as search parameters: nothing here writes it onto an index that other callers share.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from lvmcore.artifacts.payload import Payload
from lvmcore.blocks import ROW_BLOCK, gather_rows, iter_blocks
from lvmcore.errors import ArtifactError
from lvmcore.progress import phase
from lvmcore.sampling import sample_rows

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


def read_or_build_ivf(path: Path, vectors: np.ndarray, build: IVFBuild) -> tuple[faiss.IndexIVFFlat, bool]:
    """The index cached at `path`, else one built over `vectors` and saved there.

    Returns (index, was_cached). The file is written under a temporary name and renamed, so a
    concurrent reader (another rank, another session) sees no file or the whole file.
    """
    if path.is_file():
        return faiss.read_index(str(path)), True
    index = build_ivf(vectors, build)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    faiss.write_index(index, str(tmp_path))
    tmp_path.replace(path)
    return index, False


def load_index(path: str | Path) -> faiss.Index:
    """Read a user-supplied FAISS index file (`--index`), naming the file if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "index file not found")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ArtifactError(path, f"cannot be read as a FAISS index: {str(exc).splitlines()[0]}") from None


def is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return False


def index_search(index: faiss.Index, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over a FAISS index: scores (M, k) and rows (M, k); nprobe applies to IVF indexes, for this search only."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
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
