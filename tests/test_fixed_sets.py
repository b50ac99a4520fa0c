"""The baselines' and oracle's results are computed once and cached by content: hits reuse, edits miss, corruption heals."""

from __future__ import annotations

import numpy as np
import pytest

import lvmcore.gate.fixed_sets as fixed_sets
from lvmcore.artifacts.evalset import load_eval_set, write_eval_set
from lvmcore.artifacts.payload import load_payload
from lvmcore.artifacts.training_data import load_training_data
from lvmcore.gate import baselines
from lvmcore.gate.evaluate import evaluate
from lvmcore.search.ivf import IVFBuild, build_ivf
from lvmcore.gate.inputs import measure_inputs
from lvmcore.plumbing.key_recovery import ContextKeys
from helpers.synthetic import write_healthy_bank


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixed")
    paths = write_healthy_bank(root / "bank")
    payload = load_payload(paths["payload"])
    return {"root": root, "paths": paths, "payload": payload, "eval": load_eval_set(paths["eval"]),
            "train": load_training_data(paths["train"], payload), "index": build_ivf(payload.vectors, IVFBuild(nlist=8))}


def cached(a, cache, eval_set=None):
    return fixed_sets.cached_fixed_results(cache, a["payload"], eval_set or a["eval"], a["train"], a["index"], "test-index", 8)


def test_a_second_call_reads_the_cache_and_gives_the_same_figures(artifacts, tmp_path, monkeypatch) -> None:
    first, was_cached = cached(artifacts, tmp_path)
    assert not was_cached and len(list((tmp_path / "gate").glob("fixed-*.npz"))) == 1
    calls = []
    monkeypatch.setattr(fixed_sets, "fixed_results", lambda *a, **k: calls.append(1))  # a hit must not recompute
    second, was_cached = cached(artifacts, tmp_path)
    assert was_cached and not calls
    for s in first.sets:
        np.testing.assert_array_equal(first.found[s.name].rows, second.found[s.name].rows)
    a = artifacts
    with_fresh = evaluate(baselines.copy_last, a["payload"], a["eval"], training_data=a["train"], ivf_index=a["index"], nprobe=8)
    with_cached = evaluate(baselines.copy_last, a["payload"], a["eval"], training_data=a["train"], ivf_index=a["index"], nprobe=8, fixed=second)
    inputs = measure_inputs(a["payload"], a["eval"], ContextKeys(a["eval"].context_keys), a["train"])
    assert with_fresh.gate_metrics(inputs) == with_cached.gate_metrics(inputs)
    assert with_cached.searched["exact_queries"] == a["eval"].count + min(a["train"].count, 2000)  # only the model's own queries


def test_another_eval_set_misses_the_cache(artifacts, tmp_path) -> None:
    cached(artifacts, tmp_path)
    e = artifacts["eval"]
    write_eval_set(tmp_path / "fewer.npz", e.contexts[:-1], e.targets[:-1], e.truth_keys[:-1], e.context_keys[:-1], e.provenance)
    _, was_cached = cached(artifacts, tmp_path, load_eval_set(tmp_path / "fewer.npz"))
    assert not was_cached and len(list((tmp_path / "gate").glob("fixed-*.npz"))) == 2


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 not a zip"])
def test_a_corrupted_cache_file_is_moved_aside_and_rebuilt(artifacts, tmp_path, damage) -> None:
    cached(artifacts, tmp_path)
    path = next((tmp_path / "gate").glob("fixed-*.npz"))
    path.write_bytes(damage)
    with pytest.warns(UserWarning, match="could not be read"):
        _, was_cached = cached(artifacts, tmp_path)
    assert not was_cached and path.is_file() and path.stat().st_size > 1000
    assert len(list((tmp_path / "gate").glob("*.corrupt-*"))) == 1
    assert cached(artifacts, tmp_path)[1]  # and the rebuilt entry is read next time


def test_a_registered_baseline_appears_with_a_warm_cache(artifacts, tmp_path, monkeypatch) -> None:
    """ARCHITECTURE.md's recipe: register a baseline, and the next session computes and reports it, cache or not."""
    cached(artifacts, tmp_path)
    assert cached(artifacts, tmp_path)[1]  # warm
    monkeypatch.setitem(baselines.CONTEXT_BASELINES, "first_context", lambda contexts: baselines.copy_last(contexts[:, :1, :]))
    fixed, was_cached = cached(artifacts, tmp_path)
    assert not was_cached and "first_context" in fixed.baseline_names
    a = artifacts
    result = evaluate(baselines.copy_last, a["payload"], a["eval"], training_data=a["train"], ivf_index=a["index"], nprobe=8, fixed=fixed)
    assert "first_context" in result.baselines and result.baselines["first_context"].exact.count == a["eval"].count
