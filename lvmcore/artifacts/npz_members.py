"""What an `.npz` (or `.npy`) holds, read from each member's header alone: names, dtypes, shapes, pickles.

Layout detection needs to know which arrays a file holds and which of them are object arrays
(pickles) before anything is loaded: a pickle runs code when it is read, so an object member is
only ever read under an explicit flag, through `lvmcore.artifacts.safe_pickle`. The `.npy` header
is a Python literal parsed by numpy with `ast.literal_eval`, so reading it runs nothing
(`lvmcore.artifacts.validate.npy_header`, which also checks the shape against the bytes that follow).
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from lvmcore.errors import ArtifactError, exception_reason
from lvmcore.artifacts.validate import NPZ_READ_ERRORS, npy_header, read_npz, require_file

PICKLE_FLAG = "--allow-pickle"


@dataclass(frozen=True)
class Member:
    """One array of a file, as its header describes it."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def pickled(self) -> bool:
        """An object array: its data is a pickle, and reading it can run code."""
        return bool(self.dtype.hasobject)


def read_header(handle: IO[bytes], path: Path, name: str, size: int | None) -> Member:
    """The header of one `.npy` stream (magic, dtype, shape) without reading its data (`validate.npy_header`)."""
    try:
        shape, _, dtype, _ = npy_header(path, handle, size)
    except ArtifactError as exc:
        raise ArtifactError(path, f"array '{name}' {exc.problem}") from None
    return Member(name=name, dtype=dtype, shape=shape)


def npz_members(path: str | Path) -> dict[str, Member]:
    """Every array of an `.npz`, by name (the `.npy` suffix dropped), in the archive's order."""
    path = Path(path)
    require_file(path, ".npz file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[: -len(".npy")]
                with archive.open(info) as handle:
                    members[name] = read_header(handle, path, name, info.file_size)
            return members
    except NPZ_READ_ERRORS as exc:
        raise ArtifactError(path, f"cannot be read as .npz (truncated or corrupt?): {exception_reason(exc)}") from None


def npy_member(path: str | Path) -> Member:
    """The header of a single `.npy` file."""
    path = Path(path)
    size = require_file(path, ".npy file").st_size
    with path.open("rb") as handle:
        return read_header(handle, path, path.stem, size)


def refuse_pickle(path: Path, name: str, leave_out: str | None = None) -> ArtifactError:
    """The one message for an object array read without the flag: what it is, which flag, the way round it."""
    way_round = f", or leave it out with --field {leave_out}=" if leave_out else ""
    return ArtifactError(
        path,
        f"'{name}' is an object array (a Python pickle: reading it can run code from the file); it is read only with "
        f"{PICKLE_FLAG} (restricted unpickler: plain data and numpy arrays, nothing else){way_round}",
    )


def load_plain_members(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The named members that are NOT pickles, each header checked against its size first (`validate.read_npz`)."""
    return read_npz(path, names=names)


def load_pickled_member(path: Path, name: str) -> Any:
    """One object member of an `.npz`, read through the restricted unpickler (never numpy's allow_pickle)."""
    from lvmcore.artifacts.safe_pickle import load_npy_restricted  # the one reader of pickles

    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as handle:
            return load_npy_restricted(handle, path)
    except ArtifactError as exc:
        raise ArtifactError(path, f"'{name}': {exc.problem}") from None
    except (pickle.UnpicklingError, *NPZ_READ_ERRORS) as exc:
        raise ArtifactError(path, f"'{name}' cannot be read as a pickled array: {exception_reason(exc)}") from None
