"""Sharded search over torch.distributed ranks gives the single-process top-k and metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.artifacts.evalset import write_eval_set
from lvmcore.search.exact import exact_search
from lvmcore.search.ivf import IVFBuild
from lvmcore.artifacts.payload import write_payload
from lvmcore.search.hits import first_hit_rank, key_hits, mean_reciprocal_rank, recall_at
from lvmcore.search.sharded import merge_topk, shard_bounds, sharded_exact_search, sharded_ivf_search

REPO = Path(__file__).resolve().parents[1]
ROWS, DIM, QUERIES, K, WORLD = 5_001, 32, 64, 10, 2  # odd N: the two shards differ in size
NLIST = 16


def make_bank(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors with keys, and queries that are noisy copies of known rows (their truth keys)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)  # (N, D)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = np.stack([np.arange(ROWS) // 50, np.arange(ROWS) % 50], axis=1).astype(np.int64)  # (N, 2)
    truth_rows = rng.choice(ROWS, size=QUERIES, replace=False)
    queries = vectors[truth_rows] + 0.08 * rng.standard_normal((QUERIES, DIM)).astype(np.float32)  # (Q, D)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return vectors, keys, queries.astype(np.float32), keys[truth_rows]


def metrics(rows: np.ndarray, keys: np.ndarray, truth_keys: np.ndarray) -> dict[str, float]:
    ranks = first_hit_rank(key_hits(rows, keys, truth_keys))
    return {"R@1": recall_at(ranks, 1), "R@5": recall_at(ranks, 5), "R@10": recall_at(ranks, 10), "MRR": mean_reciprocal_rank(ranks)}


def _worker(rank: int, world_size: int, rendezvous: str, out_dir: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        vectors, _, queries, _ = make_bank()
        path = Path(out_dir) / "vectors.npy"
        from_array = sharded_exact_search(vectors, queries, K)
        from_file = sharded_exact_search(path, queries, K)  # each rank memory-maps only its shard
        ivf_full_probe = sharded_ivf_search(path, queries, K, IVFBuild(nlist=NLIST), nprobe=NLIST)
        np.savez(Path(out_dir) / f"rank{rank}.npz", array_scores=from_array[0], array_rows=from_array[1], file_rows=from_file[1], ivf_rows=ivf_full_probe[1])
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, np.ndarray]]:
    out = tmp_path_factory.mktemp("sharded")
    vectors, _, _, _ = make_bank()
    np.save(out / "vectors.npy", vectors)
    mp.spawn(_worker, args=(WORLD, str(out / "rendezvous"), str(out)), nprocs=WORLD, join=True)
    return {rank: dict(np.load(out / f"rank{rank}.npz")) for rank in range(WORLD)}


def test_two_ranks_give_the_single_process_top_k(two_rank_results: dict[int, dict[str, np.ndarray]]) -> None:
    vectors, _, queries, _ = make_bank()
    scores, rows = exact_search(vectors, queries, K)
    for rank, got in two_rank_results.items():
        np.testing.assert_array_equal(got["array_rows"], rows, err_msg=f"rank {rank}: sharded top-k rows differ from one process")
        np.testing.assert_allclose(got["array_scores"], scores, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(got["file_rows"], rows, err_msg=f"rank {rank}: memory-mapped shards differ")
    assert sorted(np.unique(rows // (ROWS // 2 + 1)).tolist()) == [0, 1], "queries should hit both shards"


def test_two_ranks_give_the_single_process_metrics(two_rank_results: dict[int, dict[str, np.ndarray]]) -> None:
    vectors, keys, queries, truth_keys = make_bank()
    _, rows = exact_search(vectors, queries, K)
    expected = metrics(rows, keys, truth_keys)
    assert expected["R@1"] > 0.5, f"test bank too hard to tell anything: {expected}"
    for rank, got in two_rank_results.items():
        assert metrics(got["array_rows"], keys, truth_keys) == expected, f"rank {rank}"


def test_ivf_with_every_list_probed_is_exact(two_rank_results: dict[int, dict[str, np.ndarray]]) -> None:
    vectors, _, queries, _ = make_bank()
    _, rows = exact_search(vectors, queries, K)
    for rank, got in two_rank_results.items():
        np.testing.assert_array_equal(got["ivf_rows"], rows, err_msg=f"rank {rank}: per-shard IVF at nprobe=nlist is not exact")


def test_without_a_process_group_it_is_exact_search() -> None:
    vectors, _, queries, _ = make_bank()
    assert not dist.is_initialized()
    np.testing.assert_array_equal(sharded_exact_search(vectors, queries, K)[1], exact_search(vectors, queries, K)[1])


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 10_000), world_size=st.integers(1, 64))
def test_shards_tile_the_payload(count: int, world_size: int) -> None:
    shards = [shard_bounds(count, r, world_size) for r in range(world_size)]
    assert shards[0].start == 0 and shards[-1].stop == count
    assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))
    sizes = [s.count for s in shards]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=60, deadline=None)
@given(data=st.data(), shards=st.integers(1, 5), k=st.integers(1, 8), queries=st.integers(1, 4))
def test_merge_equals_a_global_sort_with_row_tie_break(data: st.DataObject, shards: int, k: int, queries: int) -> None:
    # few distinct scores so ties are common; each row id appears once per query
    total = shards * k
    scores = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=queries * total, max_size=queries * total)), np.float32).reshape(queries, total)
    rows = np.stack([np.random.default_rng(q).permutation(total * 3)[:total] for q in range(queries)])
    got_scores, got_rows = merge_topk(scores, rows, k)
    for q in range(queries):
        expected = sorted(zip(-scores[q], rows[q]))[:k]
        assert [int(r) for _, r in expected] == got_rows[q].tolist()
        np.testing.assert_array_equal(-np.array([s for s, _ in expected], np.float32), got_scores[q])


def test_merge_puts_padding_last() -> None:
    scores = np.array([[0.5, -np.inf, 0.9, -np.inf]], np.float32)
    rows = np.array([[7, -1, 3, -1]])
    got_scores, got_rows = merge_topk(scores, rows, 3)
    assert got_rows.tolist() == [[3, 7, -1]]


@pytest.mark.slow
def test_torchrun_cli_reports_single_process_metrics(tmp_path: Path) -> None:
    vectors, keys, queries, truth_keys = make_bank()
    write_payload(tmp_path / "payload", vectors, keys, embedder="test")
    contexts = np.repeat(queries[:, None, :], 2, axis=1)  # copy-last queries are the queries
    write_eval_set(tmp_path / "eval.npz", contexts, queries, truth_keys, None, {})
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD), "-m", "lvmcore.search.sharded", "--payload", str(tmp_path / "payload"), "--eval-set", str(tmp_path / "eval.npz"), "--k", str(K)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][0])
    _, rows = exact_search(vectors, queries, K)
    expected = metrics(rows, keys, truth_keys)
    assert printed["world_size"] == WORLD
    assert {name: printed[name] for name in expected} == expected
