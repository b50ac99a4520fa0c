"""Does each vector equal the payload vector of its key? Cosines by key, and what a shift explains."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvmcore.artifacts.payload import Payload
from lvmcore.keys import KEY_COLUMNS, shift_keys
from lvmcore.vectors import cosine_rows

ALIGNED_COSINE = 0.999  # the same text through the same encoder gives cos ~ 1; two random chunks ~ 0.1-0.2
BLOCK = 4_096  # rows per alignment block: two float64 copies stay near 50 MiB at D=768


@dataclass(frozen=True)
class Alignment:
    """Cosine of every vector to the payload vector of its key (NaN where the key is missing)."""

    cosines: np.ndarray  # (M,) or (M, C)
    found: np.ndarray  # same shape, bool

    @property
    def checked(self) -> int:
        return int(self.cosines.size)

    @property
    def missing(self) -> int:
        return int((~self.found).sum())

    def aligned_fraction(self, bound: float = ALIGNED_COSINE) -> float:
        """Fraction of ALL vectors (missing keys count as misaligned) whose cosine reaches `bound`."""
        if self.cosines.size == 0:
            return 1.0
        return float((self.found & (np.nan_to_num(self.cosines, nan=-1.0) >= bound)).mean())

    def mean_cosine(self) -> float:
        values = self.cosines[self.found]
        return float(values.mean()) if values.size else float("nan")

    def worst_rows(self, count: int = 3) -> np.ndarray:
        """Leading-axis rows of the lowest cosines (missing keys first)."""
        flat = np.where(self.found, np.nan_to_num(self.cosines, nan=-2.0), -3.0).reshape(len(self.cosines), -1).min(axis=1)
        return np.argsort(flat, kind="stable")[:count]


def align_to_payload(vectors: np.ndarray, keys: np.ndarray, payload: Payload) -> Alignment:
    """Cosine of each vector (..., D) to payload[key] with keys (..., 2), in blocks of rows."""
    vectors = np.asarray(vectors)
    keys = np.asarray(keys)
    lead = vectors.shape[:-1]
    flat_vectors = vectors.reshape(-1, vectors.shape[-1])
    flat_keys = keys.reshape(-1, 2)
    cosines = np.full(len(flat_keys), np.nan)
    found = np.zeros(len(flat_keys), dtype=bool)
    for start in range(0, len(flat_keys), BLOCK):
        stop = start + BLOCK
        payload_rows, ok = payload.vectors_of(flat_keys[start:stop])
        found[start:stop] = ok
        block_cos = cosine_rows(flat_vectors[start:stop], payload_rows)
        cosines[start:stop] = np.where(ok, block_cos, np.nan)
    return Alignment(cosines=cosines.reshape(lead), found=found.reshape(lead))


def shift_explanations(vectors: np.ndarray, keys: np.ndarray, payload: Payload, bound: float = ALIGNED_COSINE) -> dict[str, float]:
    """For vectors that do NOT match their key, the fraction that match payload[key shifted by ±1].

    A high value for e.g. "article+1" names an off-by-one in the article column (row 3 of
    FAILURE_MODES.md); all values near 0 mean the vectors come from elsewhere (another encoder).
    """
    vectors = np.asarray(vectors).reshape(-1, np.asarray(vectors).shape[-1])
    keys = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
    base = align_to_payload(vectors, keys, payload)
    bad = ~(base.found & (np.nan_to_num(base.cosines, nan=-1.0) >= bound))
    result: dict[str, float] = {}
    if not bad.any():
        return result
    for column, name in KEY_COLUMNS:
        for shift in (-1, 1):
            moved, valid = shift_keys(keys[bad], column, shift)
            shifted = align_to_payload(vectors[bad], moved, payload)
            matched = valid & shifted.found & (np.nan_to_num(shifted.cosines, nan=-1.0) >= bound)
            result[f"{name}{shift:+d}"] = float(matched.mean())
    return result


def best_shift(explanations: dict[str, float], at_least: float = 0.5) -> str | None:
    """The shift that explains most mismatches, if it explains at least `at_least` of them."""
    if not explanations:
        return None
    name, share = max(explanations.items(), key=lambda item: item[1])
    return name if share >= at_least else None


SHIFT_SAMPLE = 5_000


def explain_mismatch(vectors: np.ndarray, keys: np.ndarray, payload: Payload, alignment: Alignment, what: str) -> tuple[str, dict]:
    """Name why vectors do not match their keys: an off-by-one key, or vectors from another source.

    Returns the cause sentence and the figures behind it (shift shares, mean cosine, worst rows).
    """
    bad = np.flatnonzero(~(alignment.found & (np.nan_to_num(alignment.cosines, nan=-1) >= ALIGNED_COSINE)).reshape(len(keys), -1).all(axis=1))
    sample = bad[:SHIFT_SAMPLE]
    explanations = shift_explanations(vectors[sample], keys[sample], payload)
    shift = best_shift(explanations)
    mean_cos = alignment.mean_cosine()
    if shift:
        cause = f"off-by-one key: {100 * explanations[shift]:.1f}% of mismatched {what} match the payload at {shift} (row 3)"
    elif alignment.missing == alignment.checked:
        cause = f"no {what} key exists in the payload: the eval set belongs to another bank"
    else:
        cause = (
            f"{what} come from another encoder or source than the payload (mean cosine {mean_cos:.3f}; two random chunks "
            "score about 0.1-0.2) (rows 1-2); rebuild them from the payload by key"
        )
    return cause, {"shift_explanations": explanations, "mean_cosine": mean_cos, "worst_rows": alignment.worst_rows().tolist()}


@dataclass(frozen=True)
class AlignmentVerdict:
    """What an alignment check reports: the aligned share, and when short of 1, why."""

    fraction: float
    cause: str
    details: dict
    summary: str


def judge_alignment(vectors: np.ndarray, keys: np.ndarray, payload: Payload, what: str, alignment: Alignment | None = None) -> AlignmentVerdict:
    """Align vectors to payload[key] (or reuse `alignment`) and name the cause of any mismatch."""
    alignment = alignment if alignment is not None else align_to_payload(vectors, keys, payload)
    fraction = alignment.aligned_fraction()
    cause, details = explain_mismatch(vectors, keys, payload, alignment, what) if fraction < 1.0 else ("", {})
    summary = f"{alignment.checked} {what} checked, mean cosine to payload[key] {alignment.mean_cosine():.4f}, {alignment.missing} keys missing."
    return AlignmentVerdict(fraction, cause, details, summary)
