"""Eval sets, validation and training data in any known layout (or a mapped one), as `EvalSet` / `TrainingData`.

`read_rows` detects the layout (`lvmcore.artifacts.layouts`), reads each field from its array and
validates it as our own loader does: vectors must be float32 and are never cast; keys are
non-negative integers. Keys stored as int32 (the public pipeline's `truth_keys`) are widened to
int64 explicitly: every int32 value is exactly an int64 value and keys are identifiers compared
only for equality, so widening cannot change which payload row a key names (a float or an
out-of-range key is still refused). A layout's scalar arrays (`context_length`, `num_sequences`,
`vector_dim`) must agree with the arrays' shapes. Object arrays (a pickled `provenance`) are read
only with `allow_pickle` (`--allow-pickle`), through the restricted unpickler; arrays we do not
use (`last_meta`, `alignment_stats`) are never read at all.

Our own layout goes through `lvmcore.artifacts.evalset.load_eval_set` unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lvmcore.artifacts.evalset import EvalSet, eval_set_from_arrays, load_eval_set
from lvmcore.artifacts.layouts import Resolved, canonical_provenance, missing_fields_problem, resolve_fields
from lvmcore.artifacts.npz_members import Member, load_pickled_member, load_plain_members, npz_members, refuse_pickle
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData, load_training_data
from lvmcore.errors import ArtifactError

OPTIONAL_PICKLES = ("provenance",)  # object arrays we read under the flag; anything else pickled is refused


def is_our_layout(resolved: Resolved) -> bool:
    return resolved.layout == "lvm-checks rows"


def read_rows(
    path: str | Path,
    expected_dim: int | None = None,
    check_finite: bool = True,
    fields: dict[str, str] | None = None,
    allow_pickle: bool = False,
) -> EvalSet:
    """Load rows (eval, validation or training) in any known or mapped layout; one `ArtifactError` line per problem."""
    path = Path(path)
    members = npz_members(path)
    resolved = resolve_fields("rows", members, fields)
    if is_our_layout(resolved):
        return load_eval_set(path, expected_dim=expected_dim, check_finite=check_finite)
    problem = missing_fields_problem("rows", resolved, members, fields)
    if problem:
        raise ArtifactError(path, problem)
    arrays = read_fields(path, resolved, members, allow_pickle)
    provenance = provenance_of(path, arrays["provenance"]) if "provenance" in arrays else {}
    rows = eval_set_from_arrays(path, arrays, provenance, expected_dim=expected_dim, check_finite=check_finite)
    check_scalars(path, resolved, members, rows)
    rows.provenance = {**rows.provenance, "layout": resolved.layout}
    return rows


def read_fields(path: Path, resolved: Resolved, members: dict[str, Member], allow_pickle: bool) -> dict[str, Any]:
    """Each mapped field's array: plain arrays without pickle, object arrays only under the flag."""
    plain = {name: source for name, source in resolved.sources.items() if source and not members[source].pickled}
    pickled = {name: source for name, source in resolved.sources.items() if source and members[source].pickled}
    for name, source in pickled.items():
        if name not in OPTIONAL_PICKLES:
            raise ArtifactError(path, f"'{source}' (our {name}) is an object array; {name} must be a numeric array")
        if not allow_pickle:
            raise refuse_pickle(path, source, leave_out=name)
    loaded = load_plain_members(path, list(plain.values()))
    arrays: dict[str, Any] = {name: loaded[source] for name, source in plain.items()}
    for name, source in pickled.items():
        arrays[name] = load_pickled_member(path, source)
    return arrays


def provenance_of(path: Path, raw: Any) -> dict[str, Any]:
    """Provenance from a JSON string, a one-element (unicode or object) array of one, or a dict; in our names."""
    value = raw
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ArtifactError(path, f"'provenance' holds {value.size} elements (shape {value.shape}), expected one")
        value = value.reshape(-1)[0]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ArtifactError(path, f"'provenance' is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ArtifactError(path, f"'provenance' must hold a JSON object or a dict, got {type(value).__name__}")
    return canonical_provenance(value)


SCALAR_MEANING = {"count": "rows", "context_length": "context length", "dim": "vector dimension"}


def check_scalars(path: Path, resolved: Resolved, members: dict[str, Member], rows: EvalSet) -> None:
    """A layout's scalar arrays (num_sequences, context_length, vector_dim) must agree with the arrays."""
    layout = resolved.layout_entry
    if layout is None or not layout.scalars:
        return
    names = [name for name in layout.scalars if name in members]
    pickled = [name for name in names if members[name].pickled]
    if pickled:
        raise ArtifactError(path, f"'{pickled[0]}' is an object array; expected an integer scalar")
    values = load_plain_members(path, names)
    actual = {"count": rows.count, "context_length": rows.context_length, "dim": rows.dim}
    for name in names:
        value = values[name]
        if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
            raise ArtifactError(path, f"'{name}' must be one integer, got dtype {value.dtype} shape {value.shape}")
        what = layout.scalars[name]
        if int(value.reshape(-1)[0]) != actual[what]:
            raise ArtifactError(path, f"'{name}' says {int(value.reshape(-1)[0])} but the arrays hold {actual[what]} ({SCALAR_MEANING[what]})")


Recover = Callable[[np.ndarray, np.ndarray], Any]  # (contexts (W, C, D), truth_keys (W, 2)) -> object with .keys (W, C, 2)


def read_training_rows(
    path: str | Path,
    payload: Payload,
    fields: dict[str, str] | None = None,
    allow_pickle: bool = False,
    recover: Recover | None = None,
) -> TrainingData:
    """Training data in any layout: a windows spec or our `.npz` as `load_training_data` reads them, or rows of
    another layout. Rows without `context_keys` need `recover`, which finds each context vector's key in the
    payload (`lvmcore.plumbing.key_recovery`); what it found is kept in `recovered_context_keys`.
    """
    path = Path(path)
    if path.suffix != ".npz":
        return load_training_data(path, payload)
    members = npz_members(path)
    if is_our_layout(resolve_fields("rows", members, fields)) and "context_keys" in members:
        return load_training_data(path, payload)
    rows = read_rows(path, expected_dim=payload.dim, fields=fields, allow_pickle=allow_pickle)
    if rows.context_keys is not None:
        return TrainingData(path=path, context_keys=rows.context_keys, truth_keys=rows.truth_keys, provenance=rows.provenance,
                            contexts=rows.contexts, targets=rows.targets)
    if recover is None:
        raise ArtifactError(path, "has no 'context_keys'; read it with lvmcore.plumbing.user_files.read_training (the suite's and "
                                  "python -m train's reader, which recovers each context vector's key from the payload) or store context_keys")
    found = recover(rows.contexts, rows.truth_keys)
    return TrainingData(path=path, context_keys=found.keys, truth_keys=rows.truth_keys, provenance=rows.provenance,
                        contexts=rows.contexts, targets=rows.targets, recovered_context_keys=found)
