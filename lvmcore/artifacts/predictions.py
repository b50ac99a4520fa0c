"""A predictions file: a model's predicted vectors for the eval rows, so any framework can be gated.

Layout, an `.npz` (no pickles, read with `allow_pickle=False`):
    eval_predictions   (M, D) float32: row i is the prediction for eval row i (not normalised: we normalise)
    eval_set_hash      str: `eval_set_fingerprint` of the eval set the rows belong to (ties the file to it)
    train_predictions  (S, D) float32, optional: predictions for training windows, for the generalization gap
    train_rows         (S,) int64, optional with train_predictions: their window indices in the training
                       data the suite is given (`--train-data`), in its order
    provenance         str, optional: JSON (embedder, dim, norm, metric, payload_hash, training_articles),
                       each known field validated (`check_provenance`)
Write one with `write_predictions`, or with numpy alone: the fingerprint is printed by
`python -m lvmcore.artifacts.predictions fingerprint EVAL.npz`, which reads every eval layout the
suite reads and takes its `--field` and `--allow-pickle` (`fingerprint_of_file`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.layout_rows import read_rows
from lvmcore.artifacts.layouts import FieldMappingError, parse_field_mapping
from lvmcore.artifacts.validate import read_npz, require_float32, require_integer, require_provenance, require_shape
from lvmcore.blocks import update_digest
from lvmcore.errors import ArtifactError
from lvmcore.files import write_atomic

FORMAT_ARRAYS = ("eval_predictions", "eval_set_hash")


def eval_set_fingerprint(eval_set: EvalSet) -> str:
    """blake2b-128 of the eval set's contexts, targets and truth keys (float32 / int64 bytes, in row order).

    The keys are hashed as int64 whatever width the file stored, so a public int32 eval set and its
    widened copy share one fingerprint. Contexts are read in blocks (a memory map is not copied).
    """
    digest = hashlib.blake2b(digest_size=16)
    for array, dtype in ((eval_set.contexts, np.float32), (eval_set.targets, np.float32), (eval_set.truth_keys, np.int64)):
        digest.update(str(array.shape).encode())
        update_digest(digest, array, dtype)
    return digest.hexdigest()


@dataclass
class Predictions:
    """A model's predictions, checked against the eval set they claim to belong to."""

    path: Path
    eval_predictions: np.ndarray  # (M, D) float32
    train_predictions: np.ndarray | None = None  # (S, D)
    train_rows: np.ndarray | None = None  # (S,)
    provenance: dict[str, Any] = field(default_factory=dict)


def load_predictions(path: str | Path, eval_set: EvalSet) -> Predictions:
    """Read a predictions `.npz` for `eval_set`; a file of other rows or shapes is one `ArtifactError` line."""
    path = Path(path)
    arrays = read_npz(path, "predictions file")  # headers checked against sizes, pickles refused, corruption one line
    missing = [name for name in FORMAT_ARRAYS if name not in arrays]
    if missing:
        raise ArtifactError(path, f"is not a predictions file: missing {', '.join(missing)} (has: {', '.join(arrays) or 'nothing'})")
    preds = arrays["eval_predictions"]
    require_shape(path, "eval_predictions", preds, rank=2, last=eval_set.dim)
    require_float32(path, "eval_predictions", preds)
    if len(preds) != eval_set.count:
        raise ArtifactError(path, f"holds {len(preds)} eval predictions, the eval set {eval_set.path} has {eval_set.count} rows")
    recorded = one_string(path, "eval_set_hash", arrays["eval_set_hash"])
    actual = eval_set_fingerprint(eval_set)
    if recorded != actual:
        raise ArtifactError(path, f"was made for another eval set (eval_set_hash {recorded}, {eval_set.path} is {actual}): predict the rows of this eval set")
    train_preds = arrays.get("train_predictions")
    train_rows = arrays.get("train_rows")
    if (train_preds is None) != (train_rows is None):
        raise ArtifactError(path, "has train_predictions without train_rows (or the reverse): both or neither")
    if train_preds is not None:
        require_shape(path, "train_predictions", train_preds, rank=2, last=eval_set.dim)
        require_float32(path, "train_predictions", train_preds)
        require_shape(path, "train_rows", train_rows, rank=1)
        require_integer(path, "train_rows", train_rows)
        if len(train_rows) != len(train_preds):
            raise ArtifactError(path, f"has {len(train_preds)} train_predictions but {len(train_rows)} train_rows")
    provenance = read_provenance(path, arrays["provenance"]) if "provenance" in arrays else {}
    return Predictions(path, preds, train_preds, None if train_rows is None else train_rows.astype(np.int64), provenance)


def one_string(path: Path, name: str, array: np.ndarray) -> str:
    """The one string a scalar text array holds (a 0-d or one-element unicode or bytes array)."""
    if array.size != 1 or array.dtype.kind not in "US":
        raise ArtifactError(path, f"'{name}' holds dtype {array.dtype} shape {array.shape}, expected one string")
    value = array.reshape(-1)[0].item()
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def read_provenance(path: Path, array: np.ndarray) -> dict[str, Any]:
    """The JSON object in 'provenance', each field the gates read of its type (`validate.require_provenance`).

    null fields are "not recorded" and dropped, so the record reads them as absent.
    """
    try:
        value = json.loads(one_string(path, "provenance", array))
    except json.JSONDecodeError as exc:
        raise ArtifactError(path, f"'provenance' is not JSON: {exc}") from None
    except RecursionError:
        raise ArtifactError(path, "'provenance' is not JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ArtifactError(path, f"'provenance' is JSON {type(value).__name__}, expected a JSON object")
    return require_provenance(path, "provenance", {k: v for k, v in value.items() if v is not None})


def write_predictions(path: str | Path, eval_set: EvalSet, eval_predictions: np.ndarray, train_predictions: np.ndarray | None = None,
                      train_rows: np.ndarray | None = None, provenance: dict[str, Any] | None = None) -> Path:
    """Write a predictions file for `eval_set` (atomically)."""
    arrays: dict[str, Any] = {"eval_predictions": np.asarray(eval_predictions, dtype=np.float32), "eval_set_hash": np.array(eval_set_fingerprint(eval_set))}
    if train_predictions is not None:
        arrays["train_predictions"] = np.asarray(train_predictions, dtype=np.float32)
        arrays["train_rows"] = np.asarray(train_rows, dtype=np.int64)
    if provenance:
        arrays["provenance"] = np.array(json.dumps(provenance))
    return write_atomic(path, lambda out: np.savez(out, **arrays))


def fingerprint_of_file(path: str | Path, fields: dict[str, str] | None = None, allow_pickle: bool = False) -> str:
    """The `eval_set_hash` of an eval file in any layout the suite reads, read as the suite reads it.

    `fields` and `allow_pickle` are the suite's `--field` mapping and `--allow-pickle`. The fingerprint
    covers contexts, targets and truth keys only, so without `allow_pickle` a provenance it does not
    need is left unread (eval v3 and v2 keep theirs in a pickle) rather than refused.
    """
    mapping = dict(fields or {})
    if not allow_pickle:
        mapping.setdefault("provenance", "")
    return eval_set_fingerprint(read_rows(path, check_finite=False, fields=mapping, allow_pickle=allow_pickle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvmcore.artifacts.predictions", description="Predictions files for `pytest checks -m gate --predictions`.")
    sub = parser.add_subparsers(dest="command", required=True)
    fingerprint = sub.add_parser("fingerprint", help="print the eval_set_hash a predictions file for this eval set must carry")
    fingerprint.add_argument("eval_set", help="the eval set the suite is given (--eval-set), in any layout it reads")
    fingerprint.add_argument("--allow-pickle", action="store_true",
                             help="as in the suite: read a pickled provenance through the restricted unpickler (the fingerprint does "
                             "not need it; without this flag it is left unread)")
    fingerprint.add_argument("--field", action="append", default=[], metavar="NAME=ARRAY",
                             help="as in the suite: read our field NAME from the file's array ARRAY, for a layout we do not know (repeatable)")
    args = parser.parse_args(argv)
    try:
        print(fingerprint_of_file(args.eval_set, parse_field_mapping(args.field), allow_pickle=args.allow_pickle))
    except FieldMappingError as exc:
        print(f"error: --field: {exc}", file=sys.stderr)
        return 2
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
