"""The key of each vector, recovered from the payload when a file stores vectors without their keys.

A public eval set stores contexts (M, C, D) but no `context_keys`. Without keys the context
alignment check had nothing to compare and skipped, and that is how row 2 of FAILURE_MODES.md
(contexts from another encoder, targets re-aligned) passed with exit 0. Here each vector's key is
found in the payload instead:

1. exact: the vector's bytes equal a payload row's bytes, found through a 64-bit hash of every
   payload row (`lvmcore.vectors.row_digests`, blockwise over the memory map) and then confirmed
   byte for byte. Among byte-identical payload rows (duplicate vectors) the `prefer`red key wins
   (for a context: the key its position should have), else the first row.
2. nearest: each remaining vector's nearest payload row by inner product (`exact_search`) and its
   cosine. cos >= ALIGNED_COSINE is a match "only approximately" (the same chunk through float
   noise: the key is kept); below it the vector is unmatched and gets `UNRECOVERED_KEY`, a key
   that names no payload row, so every key check counts it as missing.

At most `max_searched` vectors are searched (a seeded sample; each 1,000 queries cost about 6 s at
584,545 x 768 on 2 cores); the approximate share is then estimated from the sample, and the
figures say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvmcore.artifacts.payload import Payload
from lvmcore.blocks import take_rows
from lvmcore.keys import MAX_ARTICLE, MAX_CHUNK, pack_keys
from lvmcore.progress import phase
from lvmcore.plumbing.alignment import ALIGNED_COSINE, AlignmentVerdict, judge_alignment
from lvmcore.sampling import sample_rows
from lvmcore.search.exact import exact_search
from lvmcore.vectors import cosine_rows, row_digests

UNRECOVERED_KEY = (MAX_ARTICLE - 1, MAX_CHUNK - 1)  # packable even shifted by +-1 (the off-by-one probes shift keys)
MAX_SEARCHED = 16_384


@dataclass(frozen=True)
class PayloadDigests:
    """Every payload row's byte digest, sorted, with the row it came from: one pass over the payload."""

    sorted_digests: np.ndarray  # (N,) uint64
    order: np.ndarray  # (N,) int64, payload row of each sorted digest

    @classmethod
    def of(cls, payload: Payload) -> "PayloadDigests":
        with phase("key recovery: payload row digests"):
            digests = row_digests(payload.vectors)  # (N,)
        order = np.argsort(digests, kind="stable").astype(np.int64)
        return cls(sorted_digests=digests[order], order=order)


@dataclass(frozen=True)
class KeyRecovery:
    """What recovery found for n vectors."""

    keys: np.ndarray  # (n, 2) int64: recovered key, UNRECOVERED_KEY where unmatched or not searched
    exact: np.ndarray  # (n,) bool: bytes equal a payload row
    searched: np.ndarray  # (n,) bool: not exact, and its nearest neighbour was searched
    cosine: np.ndarray  # (n,) float64: cosine to the nearest payload row where searched, NaN elsewhere
    bound: float = ALIGNED_COSINE

    @property
    def count(self) -> int:
        return int(len(self.exact))

    @property
    def approximate(self) -> np.ndarray:
        """(n,) bool: searched and the nearest payload row is at cosine >= bound."""
        return self.searched & (np.nan_to_num(self.cosine, nan=-1.0) >= self.bound)

    @property
    def sampled(self) -> bool:
        return int(self.searched.sum()) < int((~self.exact).sum())

    @property
    def exact_fraction(self) -> float:
        return float(self.exact.mean()) if self.count else 1.0

    @property
    def approximate_fraction(self) -> float:
        """Share of ALL vectors matched only approximately; estimated from the sample when one was drawn."""
        searched = int(self.searched.sum())
        if searched == 0:
            return 0.0
        return float(self.approximate.sum() / searched) * (1.0 - self.exact_fraction)

    @property
    def matched_fraction(self) -> float:
        return self.exact_fraction + self.approximate_fraction

    @property
    def unmatched_mean_cosine(self) -> float:
        """Mean cosine of the unmatched vectors to their nearest payload row (NaN when none was unmatched)."""
        unmatched = self.searched & ~self.approximate
        return float(self.cosine[unmatched].mean()) if unmatched.any() else float("nan")

    @property
    def complete(self) -> bool:
        """Every vector matched a payload row exactly: the recovered keys are as good as stored ones."""
        return bool(self.exact.all())

    def summary(self) -> str:
        mean = self.unmatched_mean_cosine
        text = (
            f"matched exactly {100 * self.exact_fraction:.1f}%, approximately {100 * self.approximate_fraction:.1f}%, "
            f"mean cosine of the unmatched {'n/a' if mean != mean else f'{mean:.3f}'}"
        )
        if self.sampled:
            text += f" (nearest neighbour searched for a seeded sample of {int(self.searched.sum()):,} of the {int((~self.exact).sum()):,} vectors without an exact match)"
        return text

    def figures(self) -> dict:
        return {
            "keys_recovered": True,
            "matched_exactly": self.exact_fraction,
            "matched_approximately": self.approximate_fraction,
            "unmatched_mean_cosine": self.unmatched_mean_cosine,
            "vectors": self.count,
            "nearest_searched": int(self.searched.sum()),
            "approximate_bound": self.bound,
        }


def exact_matches(vectors: np.ndarray, payload: Payload, digests: PayloadDigests, prefer: np.ndarray | None = None) -> np.ndarray:
    """(n,) payload row whose bytes equal each vector's bytes, -1 where none; `prefer` (n, 2) keys break ties."""
    queries = np.ascontiguousarray(vectors)  # (n, D)
    wanted = row_digests(queries)  # (n,)
    lo = np.searchsorted(digests.sorted_digests, wanted, side="left")
    hi = np.searchsorted(digests.sorted_digests, wanted, side="right")
    rows = np.where(hi > lo, digests.order[np.minimum(lo, len(digests.order) - 1)], -1)  # (n,)
    if prefer is not None:
        preferred = pack_keys(np.clip(np.asarray(prefer, dtype=np.int64), 0, None))  # (n,)
        for i in np.flatnonzero(hi - lo > 1):  # vectors the payload holds more than once
            candidates = digests.order[lo[i] : hi[i]]
            same = np.flatnonzero(pack_keys(payload.keys[candidates]) == preferred[i])
            rows[i] = candidates[same[0]] if same.size else candidates.min()
    hit = np.flatnonzero(rows >= 0)
    if hit.size:  # a digest match is confirmed byte for byte
        order = np.argsort(rows[hit], kind="stable")
        found = np.empty((hit.size, queries.shape[1]), dtype=queries.dtype)
        found[order] = take_rows(payload.vectors, rows[hit][order])
        equal = (found.view(np.uint8).reshape(hit.size, -1) == queries[hit].view(np.uint8).reshape(hit.size, -1)).all(axis=1)
        rows[hit[~equal]] = -1
    return rows


def recover_keys(
    vectors: np.ndarray,
    payload: Payload,
    prefer: np.ndarray | None = None,
    digests: PayloadDigests | None = None,
    max_searched: int = MAX_SEARCHED,
    seed: int = 0,
) -> KeyRecovery:
    """Recover the key of each vector (n, D) from the payload: exact byte match first, then nearest neighbour."""
    vectors = np.asarray(vectors).reshape(-1, payload.dim)  # (n, D)
    digests = digests if digests is not None else PayloadDigests.of(payload)
    rows = exact_matches(vectors, payload, digests, prefer)  # (n,)
    exact = rows >= 0
    keys = np.tile(np.asarray(UNRECOVERED_KEY, dtype=np.int64), (len(vectors), 1))  # (n, 2)
    keys[exact] = payload.keys[rows[exact]]
    cosine = np.full(len(vectors), np.nan)
    searched = np.zeros(len(vectors), dtype=bool)
    rest = np.flatnonzero(~exact)
    if rest.size:
        rest = rest[sample_rows(rest.size, max_searched, seed)]
        with phase(f"key recovery: nearest neighbour of {rest.size:,} vectors"):
            _, nearest = exact_search(payload.vectors, vectors[rest], 1)  # (r, 1)
        nearest = nearest[:, 0]
        order = np.argsort(nearest, kind="stable")
        neighbours = np.empty((rest.size, payload.dim), dtype=np.float32)
        neighbours[order] = take_rows(payload.vectors, nearest[order])
        cosine[rest] = cosine_rows(vectors[rest], neighbours)
        searched[rest] = True
        close = cosine[rest] >= ALIGNED_COSINE
        keys[rest[close]] = payload.keys[nearest[close]]
    return KeyRecovery(keys=keys, exact=exact, searched=searched, cosine=cosine)


@dataclass(frozen=True)
class ContextKeys:
    """The key of every context vector (M, C, 2): read from the file, or recovered from the payload."""

    keys: np.ndarray  # (M, C, 2) int64
    recovery: KeyRecovery | None = None  # None: the file stores context_keys

    @property
    def recovered(self) -> bool:
        return self.recovery is not None

    @property
    def complete(self) -> bool:
        """Keys for every context vector that are as good as stored ones (stored, or all recovered exactly)."""
        return self.recovery is None or self.recovery.complete

    def note(self) -> str:
        if self.recovery is None:
            return ""
        return f"Context keys recovered from the payload (the file has none): {self.recovery.summary()}."


def expected_context_keys(truth_keys: np.ndarray, context_length: int) -> np.ndarray:
    """(M, C, 2): the keys a window's context should hold, C chunks before its truth in the same article."""
    truth = np.asarray(truth_keys, dtype=np.int64)  # (M, 2)
    offsets = np.arange(-context_length, 0)  # (C,)
    keys = np.repeat(truth[:, None, :], context_length, axis=1)  # (M, C, 2)
    keys[..., 1] += offsets
    return keys


def recover_context_keys(
    contexts: np.ndarray, truth_keys: np.ndarray, payload: Payload, digests: PayloadDigests | None = None, max_searched: int = MAX_SEARCHED
) -> ContextKeys:
    """Recover the key of every context vector (M, C, D); among duplicate vectors prefer the key its position should have."""
    m, c, _ = contexts.shape
    prefer = expected_context_keys(truth_keys, c).reshape(-1, 2)  # (M*C, 2)
    recovery = recover_keys(contexts.reshape(m * c, -1), payload, prefer=prefer, digests=digests, max_searched=max_searched)
    return ContextKeys(keys=recovery.keys.reshape(m, c, 2), recovery=recovery)


def judge_recovered(recovery: KeyRecovery, what: str) -> AlignmentVerdict:
    """The alignment verdict when keys were recovered: the matched share, and when short of 1, what the unmatched look like."""
    fraction = recovery.matched_fraction
    mean = recovery.unmatched_mean_cosine
    cause = ""
    if fraction < 1.0:
        if mean == mean and mean >= 0.9:
            cause = (f"{what} are near payload vectors but not equal (mean cosine of the unmatched {mean:.3f}): re-encoded, quantized "
                     "or noised after the payload was built; rebuild them from the payload")
        else:
            cause = (f"{what} come from another encoder or source than the payload (mean cosine of the unmatched {mean:.3f}; two "
                     "random chunks score about 0.1-0.2) (rows 1-2); rebuild them from the payload by key")
    summary = f"{recovery.count} {what} checked; keys recovered from the payload (the file has no context_keys): {recovery.summary()}."
    return AlignmentVerdict(fraction, cause, recovery.figures(), summary)


def judge_context_vectors(contexts: np.ndarray, context_keys: ContextKeys, payload: Payload, what: str) -> AlignmentVerdict:
    """Context vectors against the payload: by stored keys (`judge_alignment`), or, recovered, the share found (`judge_recovered`)."""
    if context_keys.recovery is not None:
        return judge_recovered(context_keys.recovery, what)
    return judge_alignment(contexts, context_keys.keys, payload, what)
