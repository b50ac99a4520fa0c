"""Users' files, read one way for the suite and the trainer: payload, eval set, validation and training rows.

Both programs used to read users' rows differently: the suite detected every layout
(`lvmcore.artifacts.layouts`), honoured `--field` and `--allow-pickle` and recovered missing context
keys from the payload; `python -m train` read our `.npz` only, so the public pipeline's own training
file was refused. Here is the one entry point both call, with one `ReadOptions` (the suite builds it
from `--field`/`lvm_fields` and `--allow-pickle`, the trainer from the same flags) that the trainer
also hands on to the gate it runs (`ReadOptions.as_args`).

It lives in `plumbing` because recovering keys needs the payload search (`key_recovery`), which the
`artifacts` layer may not import. The suite keeps partial recoveries for its checks to measure
(`require_keys=False`); the trainer asks for every context key (`require_keys=True`), since its bank
loss masks each window's own context chunks by key, and a file whose vectors are not the payload's
is refused with the recovery's figures instead of trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.layout_payload import read_layout_payload
from lvmcore.artifacts.layout_rows import read_rows, read_training_rows
from lvmcore.artifacts.layouts import parse_field_mapping
from lvmcore.artifacts.payload import Payload, load_payload
from lvmcore.artifacts.training_data import TrainingData
from lvmcore.errors import ArtifactError
from lvmcore.plumbing.key_recovery import ContextKeys, PayloadDigests, judge_recovered, recover_context_keys


@dataclass(frozen=True)
class ReadOptions:
    """How users' files are read: the `--field` mapping ({our field: the file's array}) and `--allow-pickle`."""

    fields: dict[str, str] = field(default_factory=dict)
    allow_pickle: bool = False

    @classmethod
    def from_lines(cls, lines: list[str], allow_pickle: bool) -> "ReadOptions":
        """From `NAME=ARRAY` lines (`--field`, `lvm_fields`); a malformed line raises `FieldMappingError` (a ValueError)."""
        return cls(fields=parse_field_mapping(list(lines)), allow_pickle=bool(allow_pickle))

    def as_args(self) -> list[str]:
        """The same options on a suite command line (`--allow-pickle`, `--field NAME=ARRAY` ...)."""
        args = ["--allow-pickle"] if self.allow_pickle else []
        for name, source in self.fields.items():
            args += ["--field", f"{name}={source}"]
        return args


Digests = PayloadDigests | Callable[[], PayloadDigests] | None


def read_payload(path: str | Path, options: ReadOptions = ReadOptions(), check_finite: bool = True) -> Payload:
    """A payload directory in our format, or a file of another layout (source vectors `.npz`, pickled `.npy`)."""
    path = Path(path)
    if path.is_dir() or (not path.exists() and path.suffix not in (".npz", ".npy")):  # ours, or a directory that is not there
        return load_payload(path, check_finite=check_finite)
    return read_layout_payload(path, fields=options.fields or None, allow_pickle=options.allow_pickle, check_finite=check_finite)


def read_eval_rows(path: str | Path, payload: Payload, options: ReadOptions = ReadOptions(), check_finite: bool = True) -> EvalSet:
    """Eval (or validation) rows in any layout the suite reads; their dimension must be the payload's."""
    return read_rows(path, expected_dim=payload.dim, check_finite=check_finite, fields=options.fields or None, allow_pickle=options.allow_pickle)


def read_training(
    path: str | Path, payload: Payload, options: ReadOptions = ReadOptions(), digests: Digests = None, require_keys: bool = False
) -> TrainingData:
    """Training (or validation) windows: a windows spec `.json`, or rows of any layout; missing context keys are recovered.

    digests: the payload's row digests (or a function giving them, so the suite computes them only when
    a file needs them). require_keys: refuse, with the recovery's figures, unless every context vector
    found its key (exactly, or at cosine >= the approximate bound).
    """

    def recover(contexts: np.ndarray, truth_keys: np.ndarray) -> ContextKeys:
        known = digests() if callable(digests) else digests
        return recover_context_keys(contexts, truth_keys, payload, digests=known)

    data = read_training_rows(path, payload, fields=options.fields or None, allow_pickle=options.allow_pickle, recover=recover)
    if require_keys and data.recovered_context_keys is not None:
        refuse_unrecovered(data, payload)
    return data


def refuse_unrecovered(data: TrainingData, payload: Payload) -> None:
    """One line when some context vector of a file without `context_keys` matched no payload row."""
    recovery = data.recovered_context_keys.recovery
    keyed = recovery.exact | recovery.approximate  # (n,)
    if keyed.all():
        return
    verdict = judge_recovered(recovery, "context vectors")
    missing = int((~keyed).sum())
    raise ArtifactError(
        data.path,
        f"has no 'context_keys', and {missing:,} of its {recovery.count:,} context vectors match no row of the payload {payload.path} "
        f"({recovery.summary()}): {verdict.cause or 'their keys cannot be recovered'}; training needs each context chunk's key "
        "(the bank loss masks the window's own chunks): store context_keys, or give the payload these vectors came from",
    )
