"""Stream an array in row blocks; a read-only memory map gives its pages back after each block.

A full pass over a memory-mapped payload otherwise leaves every page it touched mapped into this
process, so its resident set grows to the payload's size and stays there for the session: a
584,545 x 768 bank adds 1.7 GiB to every suite that scans it once. After each block we tell the
kernel (madvise MADV_DONTNEED) that this process is done with those pages. For a read-only
shared file mapping that only unmaps them: they stay in the OS page cache, the next pass reads
them from RAM, not disk, and the data can never change. Anonymous memory is never released: that
would zero it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys
from typing import Iterator

import numpy as np

ROW_BLOCK = 16_384  # rows per block when scanning memory-mapped vectors (48 MiB at D=768)
_MADV_DONTNEED = 4  # Linux; elsewhere DONTNEED is only advice, so we do nothing


def _load_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _load_madvise()


def is_read_only_map(array: np.ndarray) -> bool:
    """True for a view of a file opened with mmap_mode="r": the one kind of memory safe to release."""
    return isinstance(array, np.memmap) and array.mode == "r" and array.nbytes > 0


def release_pages(array: np.ndarray) -> bool:
    """Unmap the pages under a read-only memory-mapped `array` from this process; False if it is not one.

    Only whole pages inside the array's byte range are released (a page shared with a neighbour
    block would simply be faulted back in from the page cache).
    """
    if _madvise is None or not is_read_only_map(array):
        return False
    start = array.ctypes.data
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # first whole page inside the range
    last = (start + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if last <= first:
        return False
    return _madvise(first, last - first, _MADV_DONTNEED) == 0


def iter_blocks(vectors: np.ndarray, rows: int = ROW_BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, block) over the first axis; a memory map's block is released once the caller moves on.

    A block the caller kept stays valid: reading it again faults the pages back in.
    """
    for start in range(0, len(vectors), rows):
        view = vectors[start : start + rows]
        yield start, np.asarray(view)
        release_pages(view)


def take_rows(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """vectors[rows] as a copy; a memory map then gives back the pages the gather touched.

    Scattered reads (rows looked up by key) pull one page per row into the process and leave it
    there: 120,000 scattered rows hold up to 0.5 GiB of a payload's pages. Sorted `rows` read faster.
    """
    out = np.asarray(vectors[rows])
    release_pages(vectors)
    return out


def gather_rows(vectors: np.ndarray, rows: np.ndarray, block_rows: int = ROW_BLOCK) -> np.ndarray:
    """vectors[rows] for sorted unique `rows`, read block by block so a memory map is released as it goes.

    A random sample of most of a bank (an IVF training set) would otherwise pull every page in.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > 1 and np.any(np.diff(rows) < 0):
        raise ValueError("gather_rows needs sorted row numbers")
    out = np.empty((len(rows), *vectors.shape[1:]), dtype=vectors.dtype)
    bounds = np.searchsorted(rows, np.arange(0, len(vectors) + block_rows, block_rows))
    for index, (start, block) in enumerate(iter_blocks(vectors, block_rows)):
        lo, hi = bounds[index], bounds[index + 1]
        if hi > lo:
            out[lo:hi] = block[rows[lo:hi] - start]
    return out


def update_digest(digest, array: np.ndarray, dtype: np.dtype | type | None = None, block_rows: int = ROW_BLOCK) -> None:
    """Feed `array`'s bytes (as `dtype` if given) to a hashlib digest, streamed in row blocks.

    The digest sees the same bytes as one `update(array.tobytes())`, so block size never changes a
    hash; a memory map is read once and its pages handed back as it goes.
    """
    rows = array.reshape(len(array), -1) if array.ndim and len(array) else array.reshape(0, 1)
    for _, block in iter_blocks(rows, block_rows):
        digest.update(np.ascontiguousarray(block, dtype=dtype).tobytes())
