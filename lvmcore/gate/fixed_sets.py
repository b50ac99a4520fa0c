"""The baselines' and oracle's search results, cached on disk by what they depend on.

They depend only on the payload, the eval set, the training data (the ridge is fitted on it), the
search depth, nprobe and the IVF index, never on the model, yet at 584,545 x 768 they are most of a
gate run. The cache key is a hash of content hashes of exactly those inputs (and `CACHE_VERSION`,
bumped when their computation changes), so a stale entry cannot be found by construction; an
entry that fails to load is moved aside with a warning and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.predictions import eval_set_fingerprint
from lvmcore.artifacts.training_data import TrainingData
from lvmcore.blocks import update_digest
from lvmcore.errors import exception_reason
from lvmcore.files import CACHE_TEMP_MIN_AGE_S, remove_orphan_temps, set_aside, write_atomic
from lvmcore.gate.evaluate import RIDGE_MAX_WINDOWS, fixed_results, search_depth
from lvmcore.gate.query_sets import FixedResults, Found, QuerySet
from lvmcore.gate.baselines import registry_identity

CACHE_VERSION = 1


def training_fingerprint(training_data: TrainingData | None) -> str:
    """blake2b-128 of the training windows' keys and, when stored as arrays, their vectors ('none' without)."""
    if training_data is None:
        return "none"
    digest = hashlib.blake2b(digest_size=16)
    arrays = [training_data.context_keys, training_data.truth_keys]
    if not training_data.built_from_payload:
        arrays += [training_data.contexts, training_data.targets]
    for array in arrays:
        digest.update(str(array.shape).encode())
        update_digest(digest, array)
    return digest.hexdigest()


def cache_key(payload: Payload, eval_set: EvalSet, training_data: TrainingData | None, index_identity: str | None, nprobe: int | None, ridge_windows: int, seed: int) -> str:
    parts = {
        "version": CACHE_VERSION, "payload": payload.content_hash, "eval": eval_set_fingerprint(eval_set), "train": training_fingerprint(training_data),
        "depth": search_depth(eval_set), "index": index_identity, "nprobe": nprobe, "ridge_windows": ridge_windows, "seed": seed,
        "baselines": registry_identity(),
    }
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()


def _save(path: Path, fixed: FixedResults) -> None:
    arrays: dict[str, np.ndarray] = {}
    for s in fixed.sets:
        found = fixed.found[s.name]
        arrays[f"{s.name}.queries"], arrays[f"{s.name}.scores"], arrays[f"{s.name}.rows"] = s.queries, found.scores, found.rows
        if found.ivf_rows is not None:
            arrays[f"{s.name}.ivf_rows"] = found.ivf_rows
    meta = {"names": [s.name for s in fixed.sets], "ridge_alpha": fixed.ridge_alpha, "seconds": fixed.seconds, "searched": fixed.searched}
    arrays["meta"] = np.array(json.dumps(meta))
    write_atomic(path, lambda out: np.savez(out, **arrays))


def _load(path: Path, eval_set: EvalSet) -> FixedResults:
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["meta"]))
        sets, found = [], {}
        for name in meta["names"]:
            queries = archive[f"{name}.queries"]
            if queries.shape != eval_set.targets.shape:
                raise ValueError(f"{name} queries have shape {queries.shape}")
            sets.append(QuerySet(name, queries, eval_set.targets, eval_set.truth_keys, eval_set.context_keys, False))
            ivf = archive[f"{name}.ivf_rows"] if f"{name}.ivf_rows" in archive.files else None
            found[name] = Found(archive[f"{name}.scores"], archive[f"{name}.rows"], ivf)
    return FixedResults(sets, found, meta["ridge_alpha"], {**{k: 0.0 for k in meta["seconds"]}, "fixed_sets_from_cache": 0.0}, meta["searched"])


def cached_fixed_results(cache_dir: Path | None, payload: Payload, eval_set: EvalSet, training_data: TrainingData | None, ivf_index, index_identity: str | None,
                         nprobe: int | None, ridge_windows: int = RIDGE_MAX_WINDOWS, seed: int = 0) -> tuple[FixedResults, bool]:
    """(results, was_cached): from `cache_dir/gate/<key>.npz`, else computed and saved there (cache_dir None: never cached)."""
    if cache_dir is None:
        return fixed_results(payload, eval_set, training_data, ivf_index, nprobe, ridge_windows, seed), False
    path = Path(cache_dir) / "gate" / f"fixed-{cache_key(payload, eval_set, training_data, index_identity, nprobe, ridge_windows, seed)}.npz"
    remove_orphan_temps(path.parent, min_age_s=CACHE_TEMP_MIN_AGE_S)
    if path.is_file():
        clock = time.perf_counter()
        try:
            fixed = _load(path, eval_set)
            fixed.seconds["fixed_sets_from_cache"] = time.perf_counter() - clock
            return fixed, True
        except Exception as exc:  # a damaged cache file fails in whatever way its bytes do: rebuild it, never stop the run
            set_aside(path, f"cached baseline results could not be read ({exception_reason(exc, limit=160)})")
    fixed = fixed_results(payload, eval_set, training_data, ivf_index, nprobe, ridge_windows, seed)
    _save(path, fixed)
    return fixed, False
