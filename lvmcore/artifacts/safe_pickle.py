"""Reading legacy pickles without running code from them: a restricted unpickler.

A pickle is a small program: each GLOBAL opcode names a callable, and unpickling calls it with
arguments from the file. `numpy.load(allow_pickle=True)` resolves any name (`os.system` included),
so opening a pickled payload runs whatever the file asks for. `restricted_load` resolves names
only from a fixed table of what a legacy payload holds — dicts, lists, tuples, sets, strings,
bytes, numbers, numpy arrays, dtypes and scalars, `pathlib` paths — the way
`torch.load(weights_only=True)` does for checkpoints; any other name is refused with the name it
asked for, before anything is called. Even the allowed callables are wrapped where numpy's own
would allocate on the file's say-so: an array is only ever rebuilt the way `ndarray.__reduce__`
writes it (an empty array, then its state), never by calling `numpy.ndarray(shape)`.

    restricted_load(data_or_file, path)   # the unpickled value, or one ArtifactError line
    load_npy_restricted(path_or_file)     # a .npy array; an object array's pickle goes through restricted_load
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import math
import os
import pathlib
import pickle
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable

import numpy as np

from lvmcore.errors import ArtifactError, exception_reason
from lvmcore.artifacts.validate import npy_header, read_npy_data, require_file

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

ALLOWED = "only dicts, lists, tuples, sets, strings, bytes, numbers, numpy arrays, dtypes and scalars and pathlib paths are allowed"


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle named a global outside the allow-list (or misused an allowed one)."""

    def __init__(self, name: str, why: str = "") -> None:
        self.name = name
        self.why = why
        super().__init__(name)


class _NdarrayClass:
    """Stands for `numpy.ndarray` inside a pickle: passed to `_reconstruct`, never callable, no attributes to set."""

    __slots__ = ()


def safe_globals() -> dict[tuple[str, str], Any]:
    """The allow-list, built afresh for each load.

    Immutable builtin types (set, complex, numpy.dtype, OrderedDict) are given as themselves;
    everything written in Python (the numpy entry points, pathlib's classes) is a fresh closure, so a
    hostile BUILD opcode that sets attributes on a global changes nothing that outlives this load.
    """
    ndarray = _NdarrayClass()

    def reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
        """numpy's array pickle entry point, limited to what `ndarray.__reduce__` writes: an empty ndarray."""
        if subtype is not ndarray:
            raise RefusedGlobal("numpy.core.multiarray._reconstruct", f"it was asked to build a {type(subtype).__name__}, not a numpy.ndarray")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape) or math.prod(shape) != 0:
            raise RefusedGlobal("numpy.core.multiarray._reconstruct", f"it was asked for shape {str(shape)[:40]}; array pickles start from an empty array")
        return _multiarray._reconstruct(np.ndarray, shape, typecode)

    def scalar(dtype: Any, *state: Any) -> Any:
        if not isinstance(dtype, np.dtype):
            raise RefusedGlobal("numpy.core.multiarray.scalar", f"its first argument is a {type(dtype).__name__}, not a dtype")
        return _multiarray.scalar(dtype, *state)

    def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        """Protocol 5's array reduce: the data is in the pickle, so the array is no bigger than the file."""
        if not isinstance(buffer, (bytes, bytearray, pickle.PickleBuffer)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise RefusedGlobal("numpy.core.numeric._frombuffer", "it was not given bytes and a plain dtype")
        return _numeric._frombuffer(buffer, dtype, shape, order)

    def codecs_encode(text: Any, encoding: Any = "utf-8", *_: Any) -> bytes:
        """How protocol 2 writes bytes: `_codecs.encode(str, 'latin1')`; any other codec is refused."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise RefusedGlobal("_codecs.encode", f"only latin1 text -> bytes is allowed, not {str(encoding)[:40]!r}")
        return text.encode("latin1")

    def from_content(kind: type) -> Callable[..., Any]:
        """bytes/bytearray from given content only: `bytes(10**12)` would allocate what the file names."""

        def build(*args: Any) -> Any:
            if args and isinstance(args[0], int):
                raise RefusedGlobal(f"builtins.{kind.__name__}", "a size argument would allocate memory the file does not hold")
            return kind(*args)

        return build

    def path_class(cls: type) -> Callable[..., Any]:
        def build(*parts: Any) -> Any:
            if not all(isinstance(part, str) for part in parts):
                raise RefusedGlobal(f"pathlib.{cls.__name__}", "path parts must be strings")
            return cls(*parts)

        return build

    table: dict[tuple[str, str], Any] = {
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "bytes"): from_content(bytes),
        ("builtins", "bytearray"): from_content(bytearray),
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): codecs_encode,
        ("numpy", "ndarray"): ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("pathlib", "pathlib._local"):  # Python >= 3.13 pickles paths from pathlib._local
        for name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"):
            table[(module, name)] = path_class(getattr(pathlib, name))
    for core in ("core", "_core"):  # numpy 1.x and 2.x names of the same functions
        table[(f"numpy.{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"numpy.{core}.multiarray", "scalar")] = scalar
        table[(f"numpy.{core}.numeric", "_frombuffer")] = frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals come only from `safe_globals()`; nothing is imported by name."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.allowed = safe_globals()

    def find_class(self, module: str, name: str) -> Any:
        key = _compat_pickle.NAME_MAPPING.get((module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if key not in self.allowed:
            raise RefusedGlobal(f"{module}.{name}")
        return self.allowed[key]

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("a persistent id", "persistent references load objects from outside the file")


def restricted_load(data: bytes | BinaryIO, path: str | os.PathLike[str] | None) -> Any:
    """Unpickle `data` (bytes or a binary file) allowing only the types of `ALLOWED`; every failure one line.

    A refused global is named: "refuses to unpickle os.system: only dicts, lists, ... are allowed".
    """
    handle: IO[bytes] = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        return RestrictedUnpickler(handle).load()
    except RefusedGlobal as exc:
        why = f" ({exc.why})" if exc.why else ""
        raise ArtifactError(path, f"refuses to unpickle {exc.name}{why}: {ALLOWED}") from None
    except Exception as exc:  # a corrupt pickle makes the C unpickler raise anything, SystemError included
        raise ArtifactError(path, f"is not a readable pickle (truncated or corrupt?): {type(exc).__name__}: {exception_reason(exc)}") from None


def stream_size(handle: IO[bytes]) -> int | None:
    """Total size of a seekable stream (position kept), None when it cannot seek."""
    try:
        here = handle.tell()
        end = handle.seek(0, io.SEEK_END)
        handle.seek(here)
        return int(end)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


def load_npy_restricted(source: str | os.PathLike[str] | BinaryIO, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """A `.npy` array without running code: header by `numpy.lib.format`, plain data read as bytes,
    an object array's pickle through `restricted_load`. Accepts a path or a binary file (an `.npz`
    member opened with `zipfile`); `path` names it in errors (default: the file's name)."""
    if isinstance(source, (str, os.PathLike)):
        location = Path(source)
        size = require_file(location, ".npy file").st_size
        try:
            with location.open("rb") as handle:
                return _read_npy(handle, location, size)
        except OSError as exc:
            raise ArtifactError(location, f"cannot be read: {exc.strerror or exc}") from None
    location = Path(path if path is not None else getattr(source, "name", "<stream>"))
    return _read_npy(source, location, stream_size(source))


def _read_npy(handle: IO[bytes], path: Path, size: int | None) -> np.ndarray:
    shape, fortran, dtype, data_bytes = npy_header(path, handle, size)
    if dtype.hasobject:
        array = restricted_load(handle, path)
        if not isinstance(array, np.ndarray) or array.shape != shape:
            got = f"array of shape {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise ArtifactError(path, f"holds a pickled {got}, not the object array of shape {shape} its header describes")
        return array
    return read_npy_data(path, handle, shape, fortran, dtype, data_bytes)
