"""Validation shared by every loader: files, text, JSON, values and arrays; each failure one `ArtifactError` line.

Files are checked where they are read (`require_file`, `read_text_utf8`, `read_json`), values where
they are parsed (`require_int`, `require_str`, `require_object`), and `.npy` headers against the
file's size before a byte of data is read (`npy_header`), so a malformed artifact is one line
`<file>: <problem>` and never a traceback or an allocation the file cannot back.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from lvmcore.errors import ArtifactError, exception_reason
from lvmcore.vectors import nonfinite_rows


def require_shape(path: Path, name: str, array: np.ndarray, rank: int, last: int | None = None) -> None:
    """Reject an array of the wrong rank, or whose last dimension is not `last`."""
    if array.ndim != rank:
        raise ArtifactError(path, f"'{name}' has rank {array.ndim} (shape {array.shape}), expected rank {rank}")
    if last is not None and array.shape[-1] != last:
        raise ArtifactError(path, f"'{name}' has last dimension {array.shape[-1]} (shape {array.shape}), expected {last}")


def require_float32(path: Path, name: str, array: np.ndarray) -> None:
    if array.dtype != np.float32:
        raise ArtifactError(path, f"'{name}' has dtype {array.dtype}, expected float32 (convert it explicitly; we never cast silently)")


def require_integer(path: Path, name: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.integer):
        raise ArtifactError(path, f"'{name}' has dtype {array.dtype}, expected an integer type")


def require_finite(path: Path, name: str, vectors: np.ndarray) -> None:
    bad = nonfinite_rows(vectors)
    if bad.size:
        shown = ", ".join(str(int(r)) for r in bad[:5])
        raise ArtifactError(path, f"'{name}' has {bad.size} row(s) with NaN or inf (first: {shown})")


def require_keys_valid(path: Path, name: str, keys: np.ndarray) -> None:
    """Keys must be non-negative integers that fit the packed key code, in (..., 2) arrays of (article, chunk)."""
    require_integer(path, name, keys)
    if keys.ndim == 0 or keys.shape[-1] != 2:
        raise ArtifactError(path, f"'{name}' has shape {keys.shape}, expected (..., 2): one (article, chunk) pair per key")
    if keys.size and keys.min() < 0:
        row = int(np.argwhere(keys < 0)[0][0])
        raise ArtifactError(path, f"'{name}' has a negative key at row {row}: {keys.reshape(-1, 2)[row].tolist() if keys.ndim == 2 else 'see file'}")
    if keys.size and (keys[..., 0].max() >= 2**31 or keys[..., 1].max() >= 2**32):
        raise ArtifactError(path, f"'{name}' has keys out of range (article must be < 2**31, chunk < 2**32)")




# ---- files, text and JSON -----------------------------------------------------------------------

def shown(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters so a hostile value cannot flood the one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_file(path: Path, what: str = "file") -> os.stat_result:
    """A readable regular file, or one line saying what it is instead (missing, a directory, a symlink loop)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise ArtifactError(path, f"is a dangling symlink (to {os.readlink(path)}), expected a {what}") from None
        raise ArtifactError(path, f"{what} not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArtifactError(path, f"is a symlink loop, expected a {what}") from None
        raise ArtifactError(path, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ArtifactError(path, f"is a directory, expected a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactError(path, f"is not a regular file (a device, socket or pipe), expected a {what}")
    return info


def read_bytes(path: Path, what: str = "file") -> bytes:
    require_file(path, what)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactError(path, f"cannot be read: {exc.strerror or exc}") from None


def decode_utf8(path: Path, data: bytes, where: str = "") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(path, f"is not UTF-8 text{where}: byte 0x{data[exc.start]:02x} at offset {exc.start}; re-save it as UTF-8") from None


def read_text_utf8(path: Path, what: str = "file") -> str:
    """The file's text; a file that is not UTF-8 names the first bad byte and its offset."""
    return decode_utf8(path, read_bytes(path, what))


def read_json(path: Path, what: str = "file", empty_hint: str = "") -> Any:
    """The JSON value in a UTF-8 file; empty, undecodable or malformed files are one line each."""
    data = read_bytes(path, what)
    if not data.strip():
        raise ArtifactError(path, f"is empty ({len(data)} bytes){empty_hint}")
    try:
        return json.loads(decode_utf8(path, data))
    except json.JSONDecodeError as exc:
        raise ArtifactError(path, f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise ArtifactError(path, "is not valid JSON: nested too deeply") from None


def require_object(path: Path | None, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ArtifactError(path, f"{name} is {shown(value)} ({type(value).__name__}), expected a JSON object")
    return value


def require_str(path: Path | None, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ArtifactError(path, f"{name} is {shown(value)} ({type(value).__name__}), expected a string")
    return value


def require_int(path: Path | None, name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool, not a float, not a string) within [minimum, maximum]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArtifactError(path, f"{name} is {shown(value)} ({type(value).__name__}), expected an integer")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ArtifactError(path, f"{name} is {value}, expected an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise ArtifactError(path, f"{name} is {value}, more than the {maximum:,} this project accepts")
    return value


def require_number(path: Path | None, name: str, value: Any) -> float:
    """A finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArtifactError(path, f"{name} is {shown(value)}, expected a finite number")
    return float(value)


def require_rows(path: Path, name: str, array: np.ndarray, what: str) -> None:
    """Refuse an artifact with no rows: every check on it would pass on nothing."""
    if array.shape[0] == 0:
        raise ArtifactError(path, f"'{name}' has 0 rows (shape {array.shape}): {what}")


# ---- what a model's files record about its training ---------------------------------------------

PROVENANCE_STRINGS = ("embedder", "norm", "metric", "payload_hash", "payload_sha256", "payload_build_id")


def require_article_ids(path: Path | None, name: str, value: Any) -> list[int]:
    """A list of article indices (the payload keys' first column), as `training_articles` records them.

    The leakage gate intersects them with the eval set's articles: a document id, a number or null in
    their place would make that gate silently wrong, so each is one line naming the first bad item.
    """
    if not isinstance(value, (list, tuple)):
        raise ArtifactError(path, f"{name} is {shown(value)} ({type(value).__name__}), expected a list of article indices (integers)")
    ids = []
    for i, item in enumerate(value):
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)) or not 0 <= item < 2**31:
            what = "a document id? " if isinstance(item, str) else ""
            raise ArtifactError(path, f"{name}[{i}] is {shown(item)} ({type(item).__name__}): {what}expected an article index, an integer "
                                      "in [0, 2**31) as in the payload's keys")
        ids.append(int(item))
    return ids


def require_provenance(path: Path | None, name: str, value: Any) -> dict[str, Any]:
    """A recorded provenance object whose fields the gates read are each of their type (others kept as they are).

    embedder, norm, metric and the payload identities are strings, dim a positive integer, and
    training_articles / validation_articles lists of article indices; null is "not recorded".
    """
    provenance = dict(require_object(path, name, value))
    for field in PROVENANCE_STRINGS:
        if provenance.get(field) is not None:
            require_str(path, f"{name}.{field}", provenance[field])
    if provenance.get("dim") is not None:
        require_int(path, f"{name}.dim", provenance["dim"], minimum=1)
    for field in ("training_articles", "validation_articles"):
        if field in provenance:
            provenance[field] = require_article_ids(path, f"{name}.{field}", provenance[field])
    return provenance


# ---- .npy headers ---------------------------------------------------------------------------------

# What numpy's header parser (struct, then ast.literal_eval of a Python literal) raises on bytes that are
# not a header, and what a zip member's stream raises when its deflate data is corrupt.
HEADER_ERRORS = (ValueError, OSError, EOFError, SyntaxError, TypeError, KeyError, IndexError, UnicodeDecodeError, MemoryError,
                 RecursionError, OverflowError, struct.error, tokenize.TokenError, zlib.error, zipfile.BadZipFile)


def npy_header(path: Path, handle: IO[bytes], total_size: int | None) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data bytes) of the `.npy` stream at `handle`, read up to its data.

    `total_size` is the stream's size in bytes (None: unknown); a header whose shape needs more data
    than follows it is refused here, so a truncated or lying file allocates nothing. Object arrays
    (a pickle follows the header) report data bytes -1.
    """
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy_format._read_array_header(handle, version)  # 3.0: the 2.0 header in UTF-8
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except HEADER_ERRORS as exc:
        raise ArtifactError(path, f"cannot be read as .npy (bad header: {exception_reason(exc)})") from None
    if any(int(n) < 0 for n in shape):
        raise ArtifactError(path, f"has a negative dimension in its header shape {shape}")
    if dtype.hasobject:
        return tuple(int(n) for n in shape), bool(fortran), dtype, -1
    data_bytes = math.prod(int(n) for n in shape) * dtype.itemsize
    if total_size is not None:
        available = total_size - handle.tell()
        if data_bytes > available:
            raise ArtifactError(
                path, f"cannot be read: truncated, its header says shape {tuple(shape)} {dtype} ({data_bytes:,} bytes of data) but {max(available, 0):,} bytes follow the header"
            )
    return tuple(int(n) for n in shape), bool(fortran), dtype, data_bytes


def read_npy_data(path: Path, handle: IO[bytes], shape: tuple[int, ...], fortran: bool, dtype: np.dtype, data_bytes: int) -> np.ndarray:
    """The data after a `.npy` header (see `npy_header`), read into a writable array of exactly that size."""
    data = bytearray(data_bytes)
    filled = 0
    with memoryview(data) as view:  # released before `data` can be freed, also when a read fails
        while filled < data_bytes:
            with view[filled:] as rest:
                count = handle.readinto(rest)
            if not count:
                raise ArtifactError(path, f"cannot be read: truncated, {filled:,} of the {data_bytes:,} data bytes its header describes")
            filled += count
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


NPZ_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError, NotImplementedError, RuntimeError, MemoryError, UnicodeDecodeError)


def read_npz(path: Path, what: str = ".npz file", names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every `.npy` member of an `.npz` (or only `names`), headers checked against the members' sizes
    before any data is read.

    An object member (a pickle) is refused: these arrays are plain numbers. A corrupt archive or
    member (bad CRC, bad deflate stream, truncation) is one line naming the member.
    """
    require_file(path, what)
    wanted = None if names is None else set(names)
    arrays: dict[str, np.ndarray] = {}
    name = ""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy") or (wanted is not None and info.filename[: -len(".npy")] not in wanted):
                    continue
                name = info.filename[: -len(".npy")]
                with archive.open(info) as handle:
                    shape, fortran, dtype, data_bytes = npy_header(path, handle, info.file_size)
                    if dtype.hasobject:
                        raise ArtifactError(path, f"array '{name}' holds pickled Python objects; refusing to load it (these arrays are plain numbers)")
                    arrays[name] = read_npy_data(path, handle, shape, fortran, dtype, data_bytes)
    except ArtifactError as exc:
        if exc.problem.startswith("array '"):
            raise
        raise ArtifactError(path, f"array '{name}' {exc.problem}") from None
    except NPZ_READ_ERRORS as exc:
        where = f" (array '{name}')" if name else ""
        raise ArtifactError(path, f"cannot be read as .npz{where} (truncated or corrupt?): {exception_reason(exc)}") from None
    missing = sorted((wanted or set()) - set(arrays))
    if missing:
        raise ArtifactError(path, f"has no array {', '.join(repr(m) for m in missing)}")
    return arrays
