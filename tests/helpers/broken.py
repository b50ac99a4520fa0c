"""Generator of broken artifacts: each takes a healthy bank and breaks it in exactly one known way.

Every plumbing check has a breaker here; `tests/test_plumbing_checks_fail.py` runs the suite on each
broken bank and shows the check that guards against it fails with the right message. A breaker
returns the pytest arguments that point the suite at the broken artifacts.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from lvmcore.artifacts.evalset import load_eval_set, write_eval_set
from lvmcore.search.ivf import IVFBuild, build_ivf
from lvmcore.artifacts.payload import content_hash, load_payload
from lvmcore.artifacts.training_data import load_training_data, write_windows_spec


@dataclass(frozen=True)
class Bank:
    """Paths of one set of artifacts."""

    payload: Path
    eval: Path
    train: Path

    def args(self) -> list[str]:
        return ["--payload", str(self.payload), "--eval-set", str(self.eval), "--train-data", str(self.train)]


def copy_bank(healthy: Bank, out: Path) -> Bank:
    """A private copy of a healthy bank (payload files hard-linked where possible, never edited in place)."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(healthy.payload, out / "payload", copy_function=shutil.copy2, dirs_exist_ok=True)
    shutil.copy2(healthy.eval, out / "eval.npz")
    shutil.copy2(healthy.train, out / "train.json")
    return Bank(out / "payload", out / "eval.npz", out / "train.json")


def rewrite_payload(bank: Bank, vectors: np.ndarray, keys: np.ndarray, keep_manifest_hash: bool = False) -> None:
    """Replace vectors/keys; the manifest's count and hash follow unless told to keep the stale hash."""
    np.save(bank.payload / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    np.save(bank.payload / "keys.npy", np.asarray(keys, dtype=np.int64))
    texts = bank.payload / "texts.jsonl"
    if texts.exists():
        texts.unlink()  # row texts no longer line up with rows
    manifest = json.loads((bank.payload / "manifest.json").read_text())
    manifest["count"] = int(len(vectors))
    if not keep_manifest_hash:
        manifest["content_hash"] = content_hash(np.asarray(vectors, np.float32), np.asarray(keys, np.int64))
    (bank.payload / "manifest.json").write_text(json.dumps(manifest, indent=2))


def rewrite_eval(bank: Bank, **changes) -> None:
    rows = load_eval_set(bank.eval)
    fields = {
        "contexts": rows.contexts,
        "targets": rows.targets,
        "truth_keys": rows.truth_keys,
        "context_keys": rows.context_keys,
        "provenance": rows.provenance,
    }
    fields.update(changes)
    write_eval_set(bank.eval, **fields)


def another_encoder(vectors: np.ndarray, seed: int = 99) -> np.ndarray:
    """The same rows as if from another encoder: a random rotation plus noise, renormalized."""
    dim = vectors.shape[-1]
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    moved = vectors @ rotation.astype(np.float32)
    return (moved / np.linalg.norm(moved, axis=-1, keepdims=True)).astype(np.float32)


def rng_rows(count: int, fraction: float, seed: int = 5) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(count, size=max(1, int(count * fraction)), replace=False))


def materialize_training(bank: Bank, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Training windows as arrays (the .npz layout), so a breaker can edit their vectors."""
    payload = load_payload(bank.payload)
    data = load_training_data(bank.train, payload)
    rows = np.arange(min(data.count, 3_000))
    contexts, targets = data.batch(rows)
    del out
    return contexts, targets, data.context_keys[rows], data.truth_keys[rows], data.provenance


# ---- payload breakers ---------------------------------------------------------------------------

def nan_payload_rows(bank: Bank, out: Path) -> list[str]:
    payload = load_payload(bank.payload)
    vectors = np.array(payload.vectors)
    vectors[rng_rows(len(vectors), 0.01)] = np.nan
    rewrite_payload(bank, vectors, payload.keys)
    return []


def unnormalized_payload(bank: Bank, out: Path) -> list[str]:
    payload = load_payload(bank.payload)
    scale = np.random.default_rng(3).uniform(0.5, 2.0, size=(payload.count, 1)).astype(np.float32)
    rewrite_payload(bank, np.array(payload.vectors) * scale, payload.keys)
    return []


def duplicate_payload_keys(bank: Bank, out: Path) -> list[str]:
    """Append copies of 4% of rows: the public bank had 584,545 rows but 559,355 distinct keys."""
    payload = load_payload(bank.payload)
    extra = rng_rows(payload.count, 0.04)
    vectors = np.concatenate([payload.vectors, payload.vectors[extra]])
    keys = np.concatenate([payload.keys, payload.keys[extra]])
    rewrite_payload(bank, vectors, keys)
    return []


def duplicate_payload_vectors(bank: Bank, out: Path) -> list[str]:
    """3% of rows hold another row's vector under their own key."""
    payload = load_payload(bank.payload)
    vectors = np.array(payload.vectors)
    victims = rng_rows(payload.count, 0.03)
    vectors[victims] = vectors[(victims + 1) % payload.count]
    rewrite_payload(bank, vectors, payload.keys)
    return []


def stale_manifest_hash(bank: Bank, out: Path) -> list[str]:
    payload = load_payload(bank.payload)
    vectors = np.array(payload.vectors)
    vectors[0] = vectors[1]
    rewrite_payload(bank, vectors, payload.keys, keep_manifest_hash=True)
    return []


def chunk_gaps(bank: Bank, out: Path) -> list[str]:
    """Drop one middle row from 20% of articles, as a filter that ran after keys were assigned."""
    payload = load_payload(bank.payload)
    articles = np.unique(payload.keys[:, 0])
    chosen = articles[rng_rows(len(articles), 0.2)]
    drop = np.isin(payload.keys[:, 0], chosen) & (payload.keys[:, 1] == 2)
    rewrite_payload(bank, np.asarray(payload.vectors)[~drop], payload.keys[~drop])
    return []


# ---- index breakers -----------------------------------------------------------------------------

def l2_index(bank: Bank, out: Path) -> list[str]:
    payload = load_payload(bank.payload)
    index = faiss.IndexFlatL2(payload.dim)
    index.add(np.ascontiguousarray(payload.vectors))
    faiss.write_index(index, str(out / "l2.faiss"))
    return ["--index", str(out / "l2.faiss")]


def partial_index(bank: Bank, out: Path) -> list[str]:
    """An index over half the bank, like a per-shard index reused for the whole payload."""
    payload = load_payload(bank.payload)
    index = faiss.IndexFlatIP(payload.dim)
    index.add(np.ascontiguousarray(payload.vectors[: payload.count // 2]))
    faiss.write_index(index, str(out / "half.faiss"))
    return ["--index", str(out / "half.faiss")]


def index_of_another_bank(bank: Bank, out: Path) -> list[str]:
    """Same row count, vectors from another encoder: a stale index."""
    payload = load_payload(bank.payload)
    index = faiss.IndexFlatIP(payload.dim)
    index.add(another_encoder(np.asarray(payload.vectors)))
    faiss.write_index(index, str(out / "other.faiss"))
    return ["--index", str(out / "other.faiss")]


def too_few_probes(bank: Bank, out: Path) -> list[str]:
    """The pipeline's own IVF index, searched at nprobe 1 of count/8 lists."""
    payload = load_payload(bank.payload)
    faiss.write_index(build_ivf(payload.vectors, IVFBuild(nlist=max(16, payload.count // 8))), str(out / "ivf.faiss"))
    return ["--index", str(out / "ivf.faiss"), "--nprobe", "1"]


# ---- eval-set breakers --------------------------------------------------------------------------

def nan_eval_rows(bank: Bank, out: Path) -> list[str]:
    rows = load_eval_set(bank.eval)
    contexts = rows.contexts.copy()
    contexts[rng_rows(rows.count, 0.02), 0] = np.nan
    rewrite_eval(bank, contexts=contexts)
    return []


def empty_context_positions(bank: Bank, out: Path) -> list[str]:
    """Article-dropout augmentation leaked into the eval set: last positions zeroed."""
    rows = load_eval_set(bank.eval)
    contexts = rows.contexts.copy()
    contexts[rng_rows(rows.count, 0.1), -1] = 0.0
    rewrite_eval(bank, contexts=contexts)
    return []


def targets_from_another_encoder(bank: Bank, out: Path) -> list[str]:
    rows = load_eval_set(bank.eval)
    rewrite_eval(bank, targets=another_encoder(rows.targets))
    return []


def contexts_from_another_encoder(bank: Bank, out: Path) -> list[str]:
    """Row 2: targets re-aligned to the payload, contexts left from the old source."""
    rows = load_eval_set(bank.eval)
    rewrite_eval(bank, contexts=another_encoder(rows.contexts))
    return []


def truth_article_off_by_one(bank: Bank, out: Path) -> list[str]:
    """Row 3: the eval set's article index is one less than the payload's (vectors untouched)."""
    rows = load_eval_set(bank.eval)
    keys = rows.truth_keys.copy()
    keys[:, 0] -= 1
    keep = keys[:, 0] >= 0
    rewrite_eval(bank, contexts=rows.contexts[keep], targets=rows.targets[keep], truth_keys=keys[keep],
                 context_keys=None if rows.context_keys is None else rows.context_keys[keep])
    return []


def context_article_off_by_one(bank: Bank, out: Path) -> list[str]:
    rows = load_eval_set(bank.eval)
    keys = rows.context_keys.copy()
    keys[..., 0] -= 1
    keep = (keys[..., 0] >= 0).all(axis=1)
    rewrite_eval(bank, contexts=rows.contexts[keep], targets=rows.targets[keep], truth_keys=rows.truth_keys[keep], context_keys=keys[keep])
    return []


def degenerate_truth_keys(bank: Bank, out: Path) -> list[str]:
    """Row 4: a legacy eval set with 16 distinct truth keys, all article == chunk."""
    rows = load_eval_set(bank.eval)
    k = np.arange(rows.count) % 16
    rewrite_eval(bank, truth_keys=np.stack([k, k], axis=1))
    return []


def shuffled_context_order(bank: Bank, out: Path) -> list[str]:
    """Context positions permuted in 20% of rows (vectors and keys together): gaps in chunk order."""
    rows = load_eval_set(bank.eval)
    contexts, keys = rows.contexts.copy(), rows.context_keys.copy()
    for row in rng_rows(rows.count, 0.2):
        order = np.roll(np.arange(rows.context_length), 1)
        contexts[row], keys[row] = contexts[row][order], keys[row][order]
    rewrite_eval(bank, contexts=contexts, context_keys=keys)
    return []


def target_inside_context(bank: Bank, out: Path) -> list[str]:
    """Row 12's oracle in disguise: the truth appended as the last context vector."""
    rows = load_eval_set(bank.eval)
    contexts, keys = rows.contexts.copy(), rows.context_keys.copy()
    contexts[:, -1], keys[:, -1] = rows.targets, rows.truth_keys
    rewrite_eval(bank, contexts=contexts, context_keys=keys)
    return []


def eval_from_another_embedder(bank: Bank, out: Path) -> list[str]:
    rows = load_eval_set(bank.eval)
    rewrite_eval(bank, provenance={**rows.provenance, "embedder": "sentence-transformers/gtr-t5-base"})
    return []


def eval_from_another_payload(bank: Bank, out: Path) -> list[str]:
    rows = load_eval_set(bank.eval)
    rewrite_eval(bank, provenance={**rows.provenance, "payload_hash": "0" * 32})
    return []


# ---- training-data breakers ---------------------------------------------------------------------

def training_includes_eval_articles(bank: Bank, out: Path) -> list[str]:
    """Row 5: a split made over windows, not documents."""
    spec = json.loads(bank.train.read_text())
    eval_articles = np.unique(load_eval_set(bank.eval).truth_keys[:, 0])
    write_windows_spec(bank.train, np.concatenate([spec["articles"], eval_articles]), spec["context_length"], spec["provenance"])
    return []


def eval_text_duplicated_in_training(bank: Bank, out: Path) -> list[str]:
    """Eval targets copied (with tiny noise) onto training rows under training keys."""
    payload = load_payload(bank.payload)
    rows = load_eval_set(bank.eval)
    spec = json.loads(bank.train.read_text())
    training_rows = np.flatnonzero(np.isin(payload.keys[:, 0], spec["articles"]))
    victims = training_rows[rng_rows(len(training_rows), 0.05)][: rows.count // 5]
    vectors = np.array(payload.vectors)
    copied = rows.targets[: len(victims)] + 1e-4 * np.random.default_rng(1).normal(size=(len(victims), payload.dim)).astype(np.float32)
    vectors[victims] = copied / np.linalg.norm(copied, axis=1, keepdims=True)
    rewrite_payload(bank, vectors, payload.keys)
    return []


def too_few_eval_rows(bank: Bank, out: Path) -> list[str]:
    """An eval set of 3 rows: it passes every alignment check, and any R@5 > 0 on it is one lucky row."""
    rows = load_eval_set(bank.eval)
    keep = slice(0, 3)
    rewrite_eval(bank, contexts=rows.contexts[keep], targets=rows.targets[keep], truth_keys=rows.truth_keys[keep],
                 context_keys=None if rows.context_keys is None else rows.context_keys[keep])
    return []


def _write_training_npz(bank: Bank, out: Path, contexts, targets, context_keys, truth_keys, provenance) -> list[str]:
    path = out / "train.npz"
    write_eval_set(path, contexts, targets, truth_keys, context_keys, provenance)
    return ["--train-data", str(path)]


def training_targets_from_another_encoder(bank: Bank, out: Path) -> list[str]:
    """Row 1: training targets from another encoder or source than the payload."""
    contexts, targets, ck, tk, prov = materialize_training(bank, out)
    return _write_training_npz(bank, out, contexts, another_encoder(targets), ck, tk, prov)


def training_contexts_from_another_encoder(bank: Bank, out: Path) -> list[str]:
    contexts, targets, ck, tk, prov = materialize_training(bank, out)
    return _write_training_npz(bank, out, another_encoder(contexts), targets, ck, tk, prov)


def training_windows_out_of_order(bank: Bank, out: Path) -> list[str]:
    contexts, targets, ck, tk, prov = materialize_training(bank, out)
    order = np.roll(np.arange(ck.shape[1]), 1)
    return _write_training_npz(bank, out, contexts[:, order], targets, ck[:, order], tk, prov)


@dataclass(frozen=True)
class Breakage:
    """One way to break a bank, the check that must catch it, and words its message must contain."""

    check: str  # the test function's name
    breaker: Callable[[Bank, Path], list[str]]
    message: str  # fnmatch pattern expected in the failure output


BREAKAGES: tuple[Breakage, ...] = (
    Breakage("test_payload_has_no_nan_or_inf_rows", nan_payload_rows, "*payload_nonfinite_rows = *NaN or inf*"),
    Breakage("test_payload_vectors_are_unit_norm", unnormalized_payload, "*payload_off_unit_norm_fraction = *not L2-normalized*"),
    Breakage("test_payload_keys_are_unique", duplicate_payload_keys, "*payload_duplicate_key_fraction = *duplicate keys*"),
    Breakage("test_payload_duplicate_vectors_are_rare", duplicate_payload_vectors, "*payload_duplicate_vector_fraction = *same vector*"),
    Breakage("test_payload_manifest_hash_matches_content", stale_manifest_hash, "*payload_manifest_hash_matches = 0*changed after the manifest*"),
    Breakage("test_payload_chunks_are_contiguous_within_articles", chunk_gaps, "*payload_chunk_gap_fraction = *skip*"),
    Breakage("test_index_metric_is_inner_product", l2_index, "*index_metric_is_inner_product = 0*metric 'l2'*"),
    Breakage("test_index_holds_every_payload_row", partial_index, "*index_ntotal_minus_payload = *partial bank*"),
    Breakage("test_oracle_recall_with_duplicate_aware_hits", index_of_another_bank, "*oracle_recall_at_1 = *does not hold these vectors*"),
    Breakage("test_oracle_recall_with_duplicate_aware_hits", unnormalized_payload, "*oracle_recall_at_1 = *exact search over the payload (no --index given)*"),
    Breakage("test_ivf_agrees_with_exact_search", too_few_probes, "*ivf_exact_top10_agreement = *probes too few lists (nprobe 1)*"),
    Breakage("test_eval_vectors_are_finite", nan_eval_rows, "*eval_nonfinite_rows = *NaN or inf*"),
    Breakage("test_eval_contexts_have_no_empty_positions", empty_context_positions, "*eval_empty_context_positions = *all-zero*"),
    Breakage("test_every_eval_target_matches_payload", targets_from_another_encoder, "*eval_target_aligned_fraction = *targets come from another encoder*"),
    Breakage("test_every_eval_context_vector_matches_payload", contexts_from_another_encoder, "*eval_context_aligned_fraction = *context vectors come from another encoder*"),
    Breakage("test_every_eval_target_matches_payload", truth_article_off_by_one, "*eval_target_aligned_fraction = *off-by-one key*article+1*"),
    Breakage("test_truth_keys_are_covered_by_payload", truth_article_off_by_one, "*truth_key_coverage = *off-by-one key column*article+1*"),
    Breakage("test_context_keys_are_covered_by_payload", context_article_off_by_one, "*context_key_coverage = *off-by-one key column*article+1*"),
    Breakage("test_truth_keys_are_diverse", degenerate_truth_keys, "*truth_key_distinct_fraction = *degenerate truth keys (16 distinct*"),
    Breakage("test_truth_keys_are_not_diagonal", degenerate_truth_keys, "*truth_key_article_equals_chunk_fraction = 100.00%*article == chunk*"),
    Breakage("test_context_keys_are_consecutive_within_one_document", shuffled_context_order, "*context_nonconsecutive_fraction = *gaps in chunk order*"),
    Breakage("test_no_context_contains_its_target", target_inside_context, "*target_in_own_context_fraction = 100.00%*inside its own context*"),
    Breakage("test_provenance_agrees_across_artifacts", eval_from_another_embedder, "*provenance_disagreements = 1*embedder: *gtr-t5-base*"),
    Breakage("test_eval_and_training_data_name_this_payload", eval_from_another_payload, "*provenance_payload_hash_matches = 0*another payload*"),
    Breakage("test_no_eval_article_is_a_training_article", training_includes_eval_articles, "*eval_article_overlap = 100.00%*over windows, not documents*"),
    Breakage("test_no_eval_chunk_is_a_training_chunk", training_includes_eval_articles, "*eval_chunk_key_overlap = 100.00%*"),
    Breakage("test_no_eval_target_has_a_near_duplicate_in_training", eval_text_duplicated_in_training,
             "*eval_near_duplicate_fraction = *repeated*: [0-9]* under other keys: duplicated documents*"),
    Breakage("test_no_eval_target_has_a_near_duplicate_in_training", training_includes_eval_articles,
             "*eval_near_duplicate_fraction = 100.00%*repeated*: [0-9]* under the same key: the eval chunk itself is in the training data*"),
    Breakage("test_every_training_target_matches_payload", training_targets_from_another_encoder, "*training_target_aligned_fraction = *training targets come from another encoder*"),
    Breakage("test_every_training_context_vector_matches_payload", training_contexts_from_another_encoder, "*training_context_aligned_fraction = *training context vectors come from another encoder*"),
    Breakage("test_eval_set_is_large_enough_to_resolve_r_at_5_levels", too_few_eval_rows, "*eval_rows_beyond_needed = -150*3 rows, 153 needed*"),
    Breakage("test_training_windows_are_consecutive", training_windows_out_of_order, "*training_nonconsecutive_fraction = *cross documents or skip chunks*"),
)


def break_bank(healthy: Bank, breakage: Breakage, out: Path) -> list[str]:
    """Copy the healthy bank into `out`, break it, and return the pytest arguments that select it."""
    bank = copy_bank(healthy, out)
    extra = breakage.breaker(bank, out)
    args = bank.args()
    for flag_at in range(0, len(extra), 2):  # a breaker's flags replace the defaults
        flag, value = extra[flag_at], extra[flag_at + 1]
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args
