"""Plumbing: the eval set against the payload (FAILURE_MODES rows 1-4, 12 and the closing lines)."""

from __future__ import annotations

import numpy as np
import pytest

from lvmcore.plumbing.alignment import Alignment, judge_alignment
from lvmcore.plumbing.key_recovery import ContextKeys, judge_recovered
from lvmcore.blocks import iter_blocks
from lvmcore.artifacts.evalset import EvalSet
from lvmcore.keys import coverage, distinct_count, key_entropy_bits, nonconsecutive_context_rows, shifted_coverage
from lvmcore.artifacts.payload import Payload
from lvmcore.vectors import nonfinite_rows, row_norms

pytestmark = pytest.mark.plumbing

ROWS_PER_BLOCK = 2_048

@pytest.mark.threshold("eval_nonfinite_rows", minimum=0, above=False)
def test_eval_vectors_are_finite(eval_set: EvalSet, threshold) -> None:
    bad = np.union1d(nonfinite_rows(eval_set.contexts), nonfinite_rows(eval_set.targets))
    threshold.check(len(bad), cause="NaN or inf in contexts or targets (encoder failure or augmentation bug)",
                    context=f"First bad rows: {bad[:5].tolist()}." if len(bad) else "")


@pytest.mark.threshold("eval_empty_context_positions", minimum=0, above=False)
def test_eval_contexts_have_no_empty_positions(eval_set: EvalSet, threshold) -> None:
    """An all-zero context vector (augmentation leaking into eval, or padding) is not a chunk."""
    m, c, d = eval_set.contexts.shape
    norms = row_norms(eval_set.contexts.reshape(m * c, d)).reshape(m, c)  # (M, C), blockwise; NaN rows stay NaN
    empty = norms < 1e-6
    threshold.check(int(empty.sum()), cause="all-zero context positions: padding or article-dropout augmentation applied to the eval set",
                    context=f"{int(empty.any(axis=1).sum())} rows affected (first: {np.flatnonzero(empty.any(axis=1))[:5].tolist()}).")


@pytest.mark.threshold("eval_target_aligned_fraction", minimum=1.0, percent=True)
def test_every_eval_target_matches_payload(eval_set: EvalSet, payload: Payload, eval_target_alignment: Alignment, threshold) -> None:
    verdict = judge_alignment(eval_set.targets, eval_set.truth_keys, payload, "targets", eval_target_alignment)
    threshold.check(verdict.fraction, cause=verdict.cause, details=verdict.details, context=verdict.summary)


@pytest.mark.threshold("eval_context_aligned_fraction", minimum=1.0, percent=True)
def test_every_eval_context_vector_matches_payload(eval_set: EvalSet, payload: Payload, eval_context_keys: ContextKeys,
                                                  eval_context_alignment: Alignment, threshold) -> None:
    """Every context vector, not only targets: row 2's eval set had aligned targets and stale contexts.

    Without stored context_keys the keys are recovered from the payload, and the figure is the share of
    context vectors found there (exactly, or at cosine >= 0.999): it never skips.
    """
    if eval_context_keys.recovery is not None:
        verdict = judge_recovered(eval_context_keys.recovery, "context vectors")
    else:
        verdict = judge_alignment(eval_set.contexts, eval_context_keys.keys, payload, "context vectors", eval_context_alignment)
    threshold.check(verdict.fraction, cause=verdict.cause, details=verdict.details, context=verdict.summary)


def coverage_cause(keys: np.ndarray, payload: Payload, given: float) -> tuple[str, dict]:
    shifts = shifted_coverage(payload.key_index, keys)
    name, best = max(shifts.items(), key=lambda item: item[1])
    if best > given + 0.01:
        return f"off-by-one key column: coverage {100 * given:.1f}% as given but {100 * best:.1f}% with {name} (row 3)", shifts
    return "keys from another bank or rows dropped from the payload; unmatched rows must never be silently dropped", shifts


@pytest.mark.threshold("truth_key_coverage", minimum=1.0, percent=True)
def test_truth_keys_are_covered_by_payload(eval_set: EvalSet, payload: Payload, threshold) -> None:
    given = coverage(payload.key_index, eval_set.truth_keys)
    cause, shifts = coverage_cause(eval_set.truth_keys, payload, given) if given < 1.0 else ("", {})
    threshold.check(given, cause=cause, details={"shifted_coverage": shifts})


@pytest.mark.threshold("context_key_coverage", minimum=1.0, percent=True)
def test_context_keys_are_covered_by_payload(eval_set: EvalSet, payload: Payload, eval_context_keys: ContextKeys, threshold) -> None:
    """Stored context keys must name payload rows; recovered ones exist only for vectors found in the payload."""
    keys = eval_context_keys.keys.reshape(-1, 2)
    given = coverage(payload.key_index, keys)
    if eval_context_keys.recovery is not None:
        cause, shifts = ("context vectors not found in the payload, so no key could be recovered for them (see "
                         "test_every_eval_context_vector_matches_payload)", {})
    else:
        cause, shifts = coverage_cause(keys, payload, given) if given < 1.0 else ("", {})
    threshold.check(given, cause=cause, details={"shifted_coverage": shifts, "keys_recovered": eval_context_keys.recovered},
                    context=eval_context_keys.note())


@pytest.mark.threshold("truth_key_distinct_fraction", minimum=0.5, percent=True)
def test_truth_keys_are_diverse(eval_set: EvalSet, threshold) -> None:
    """A legacy eval set had 16 distinct keys, all with article == chunk (row 4)."""
    distinct = distinct_count(eval_set.truth_keys)
    diagonal = float((eval_set.truth_keys[:, 0] == eval_set.truth_keys[:, 1]).mean())
    threshold.check(
        distinct / max(1, eval_set.count),
        cause=f"degenerate truth keys ({distinct} distinct of {eval_set.count}; {100 * diagonal:.1f}% have article == chunk): "
        "keys were generated, not taken from the payload",
        details={"distinct": distinct, "entropy_bits": key_entropy_bits(eval_set.truth_keys), "article_equals_chunk": diagonal},
    )


@pytest.mark.threshold("truth_key_article_equals_chunk_fraction", minimum=0.5, above=False, percent=True)
def test_truth_keys_are_not_diagonal(eval_set: EvalSet, threshold) -> None:
    diagonal = float((eval_set.truth_keys[:, 0] == eval_set.truth_keys[:, 1]).mean())
    threshold.check(diagonal, cause="truth keys with article == chunk: a key built from one index twice (row 4)")


@pytest.mark.threshold("context_nonconsecutive_fraction", minimum=0.0, above=False, percent=True)
def test_context_keys_are_consecutive_within_one_document(eval_set: EvalSet, eval_context_keys: ContextKeys, threshold) -> None:
    """Context chunks c..c+C-1 of one article, followed by the truth chunk c+C (recovered keys only when all are exact)."""
    if not eval_context_keys.complete:
        pytest.skip(f"{eval_set.path} has no 'context_keys' and not every context vector matched a payload row exactly "
                    f"({eval_context_keys.recovery.summary()}): chunk order cannot be checked")
    broken = nonconsecutive_context_rows(eval_context_keys.keys, eval_set.truth_keys)
    threshold.check(float(broken.mean()) if len(broken) else 0.0,
                    cause="contexts with gaps in chunk order, mixed documents, or a truth that is not the next chunk",
                    context=f"first broken rows: {np.flatnonzero(broken)[:5].tolist()}. {eval_context_keys.note()}")


@pytest.mark.threshold("target_in_own_context_fraction", minimum=0.0, above=False, percent=True)
def test_no_context_contains_its_target(eval_set: EvalSet, threshold) -> None:
    """A context that already holds its target turns every baseline into an oracle (row 12)."""
    holds_target = np.zeros(eval_set.count, dtype=bool)
    for start, contexts in iter_blocks(eval_set.contexts, ROWS_PER_BLOCK):  # blocks: no (M, C, D) temporary
        stop = start + len(contexts)
        gap = np.abs(contexts - eval_set.targets[start:stop, None, :]).max(axis=2)  # (b, C)
        holds_target[start:stop] = (gap <= 1e-6).any(axis=1)
    threshold.check(float(holds_target.mean()) if eval_set.count else 0.0,
                    cause="the target vector appears inside its own context (windows built off by one, or the truth appended to the context)")
