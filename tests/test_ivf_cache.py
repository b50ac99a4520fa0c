"""The cached IVF index heals: a file that cannot be used is moved aside and rebuilt, without user action."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.faults import byte_faults
from lvmcore.files import CACHE_TEMP_MIN_AGE_S, CacheWarning
from lvmcore.search.ivf import IVFBuild, index_search, read_or_build_ivf

BUILD = IVFBuild(nlist=8, seed=3)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rows = np.random.default_rng(0).standard_normal((800, 16)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def healthy_bytes(vectors: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ivf") / "index.faiss"
    read_or_build_ivf(path, vectors, BUILD)
    return path.read_bytes()


def top_rows(index: faiss.Index, vectors: np.ndarray) -> np.ndarray:
    return index_search(index, vectors[:50], 5, nprobe=8)[1]


def test_a_build_is_written_whole_and_read_back_next_time(vectors, tmp_path) -> None:
    path = tmp_path / "index.faiss"
    built, was_cached = read_or_build_ivf(path, vectors, BUILD)
    assert not was_cached and sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss"]  # no temp file left
    again, was_cached = read_or_build_ivf(path, vectors, BUILD)
    assert was_cached and np.array_equal(top_rows(built, vectors), top_rows(again, vectors))


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "another payload", "another nlist"])
def test_a_damaged_cache_file_is_moved_aside_rebuilt_and_used_next_time(vectors, healthy_bytes, tmp_path, damage) -> None:
    path = tmp_path / "index.faiss"
    if damage == "another payload":
        read_or_build_ivf(tmp_path / "other.faiss", vectors[:500], BUILD)
        (tmp_path / "other.faiss").rename(path)
    elif damage == "another nlist":
        read_or_build_ivf(tmp_path / "other.faiss", vectors, IVFBuild(nlist=4, seed=3))
        (tmp_path / "other.faiss").rename(path)
    else:
        path.write_bytes({"empty": b"", "truncated": healthy_bytes[: len(healthy_bytes) // 2], "garbage": os.urandom(4096)}[damage])
    with pytest.warns(CacheWarning, match=r"index\.faiss: cached index .*; moved aside to index\.faiss\.corrupt-\d+, rebuilding it"):
        index, was_cached = read_or_build_ivf(path, vectors, BUILD)
    assert not was_cached and index.ntotal == len(vectors) and index.nlist == 8
    assert path.read_bytes() == healthy_bytes  # the same build, byte for byte (seeded k-means)
    assert len(list(tmp_path.glob("index.faiss.corrupt-*"))) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_or_build_ivf(path, vectors, BUILD)[1]  # the next run reads the rebuilt file, silently


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_damage_gives_a_usable_index(vectors, healthy_bytes, tmp_path_factory, data) -> None:
    """Whatever happened to the bytes, the call returns an index over every row (rebuilt when the damage shows)."""
    fault = data.draw(byte_faults(healthy_bytes), label="fault")
    path = tmp_path_factory.mktemp("damaged") / "index.faiss"
    fault.apply(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        index, _ = read_or_build_ivf(path, vectors, BUILD)
    assert index.ntotal == len(vectors) and index.d == vectors.shape[1]
    assert read_or_build_ivf(path, vectors, BUILD)[0].ntotal == len(vectors)


def test_orphan_temp_files_are_removed_and_a_live_writers_file_is_kept(vectors, tmp_path) -> None:
    old = time.time() - CACHE_TEMP_MIN_AGE_S - 60
    orphan = tmp_path / ".index.faiss.pid999999999.ab12.tmp"  # a writer that died (no such pid)
    live = tmp_path / f".index.faiss.pid{os.getpid()}.cd34.tmp"  # this process: still writing
    recent = tmp_path / ".index.faiss.pid999999998.ef56.tmp"  # young: maybe a writer on another host
    for temp in (orphan, live, recent):
        temp.write_bytes(b"partial")
    for temp in (orphan, live):
        os.utime(temp, (old, old))
    read_or_build_ivf(tmp_path / "index.faiss", vectors, BUILD)
    assert not orphan.exists() and live.exists() and recent.exists()
