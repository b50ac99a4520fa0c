"""Streaming a memory map in blocks: same data, and the scanned pages leave this process's RSS."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.blocks import gather_rows, iter_blocks, release_pages, take_rows

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page release and /proc are Linux-only")


def rss_file_bytes() -> int:
    """Pages of mapped files resident in this process (RssFile in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile line in /proc/self/status")


@pytest.fixture
def mapped(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 64 MiB (16,384 x 1,024) float32 file opened read-only mapped, and its values in RAM."""
    values = np.random.default_rng(0).standard_normal((16_384, 1_024), dtype=np.float32)
    np.save(tmp_path / "v.npy", values)
    return np.load(tmp_path / "v.npy", mmap_mode="r"), values


def test_blocks_cover_the_array_in_order(mapped) -> None:
    vectors, values = mapped
    starts, blocks = zip(*[(start, block.copy()) for start, block in iter_blocks(vectors, 5_000)])
    assert starts == (0, 5_000, 10_000, 15_000)
    np.testing.assert_array_equal(np.concatenate(blocks), values)


def test_a_kept_block_still_reads_its_data_after_release(mapped) -> None:
    vectors, values = mapped
    kept = [block for _, block in iter_blocks(vectors, 4_096)]  # every block released on the way
    np.testing.assert_array_equal(kept[1], values[4_096:8_192])


@linux_only
def test_a_full_scan_leaves_no_pages_resident(mapped) -> None:
    """The guard: without the release, RssFile would grow by the whole 64 MiB file."""
    vectors, _ = mapped
    before = rss_file_bytes()
    total = sum(float(block.sum()) for _, block in iter_blocks(vectors, 1_024))
    grown = rss_file_bytes() - before
    assert np.isfinite(total)
    assert grown < 8 << 20, f"a streamed pass left {grown >> 20} MiB of the file resident"


@linux_only
def test_without_release_the_scan_would_stay_resident(mapped) -> None:
    """The control for the test above: touching every page of the map does raise RssFile."""
    vectors, _ = mapped
    before = rss_file_bytes()
    float(np.asarray(vectors).sum())
    assert rss_file_bytes() - before > 48 << 20
    assert release_pages(vectors)
    assert rss_file_bytes() - before < 8 << 20


def test_memory_that_is_not_a_read_only_map_is_never_released(tmp_path: Path) -> None:
    """Releasing anonymous or writable memory would zero or drop data: it must be refused."""
    values = np.ones((4_096, 256), dtype=np.float32)
    assert not release_pages(values)
    np.testing.assert_array_equal(values, 1.0)
    writable = np.lib.format.open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.float32, shape=(4_096, 256))
    writable[:] = 2.0
    assert not release_pages(writable)
    np.testing.assert_array_equal(writable, 2.0)


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 300),
    block_rows=st.integers(1, 64),
    data=st.data(),
)
def test_gather_rows_equals_fancy_indexing(count: int, block_rows: int, data: st.DataObject) -> None:
    vectors = np.arange(count * 3, dtype=np.float32).reshape(count, 3)
    rows = np.array(sorted(data.draw(st.sets(st.integers(0, count - 1), max_size=count))), dtype=np.int64)
    np.testing.assert_array_equal(gather_rows(vectors, rows, block_rows), vectors[rows])


def test_gather_rows_refuses_unsorted_rows() -> None:
    with pytest.raises(ValueError, match="sorted"):
        gather_rows(np.zeros((10, 2), dtype=np.float32), np.array([3, 1]))


@linux_only
def test_take_rows_copies_and_gives_the_touched_pages_back(mapped) -> None:
    vectors, values = mapped
    rows = np.arange(0, len(vectors), 3)  # touches every page of the file
    before = rss_file_bytes()
    taken = take_rows(vectors, rows)
    np.testing.assert_array_equal(taken, values[rows])
    assert rss_file_bytes() - before < 8 << 20, "a scattered gather left the payload's pages resident"
