"""Malformed artifacts, generated: hypothesis strategies that break a healthy file the ways files break.

Each strategy draws a `Fault`: a name for the tally ("truncated", "non-UTF-8", "wrong type", ...)
and a function that rewrites one file in a scratch copy of a healthy workspace. The categories:
    bytes   empty, truncated at any offset, one byte flipped, replaced by random bytes
    text    non-UTF-8 bytes spliced in at any offset
    json    any value (at any path of the document) replaced by a value of another type or an
            absurd number, or deleted; the whole document replaced by a non-object
    arrays  an .npy or an .npz member of another dtype, rank or length, with NaN/inf, empty,
            pickled (an object array), or missing; a JSON member's fields (`npz_json_faults`)
`tests/test_faults.py` runs every loader and CLI on them.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

NON_UTF8 = (b"\xff", b"\xfe\xfe", b"\xc3(", b"\xa0\xa1", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80")


@dataclass(frozen=True)
class Fault:
    category: str  # bytes / text / json / arrays
    kind: str  # what was done, for the tally
    apply: Callable[[Path], None]  # rewrites the file in place

    def __repr__(self) -> str:  # hypothesis prints this when an example fails
        return f"Fault({self.category}: {self.kind})"


# ---- bytes ---------------------------------------------------------------------------------------

def byte_faults(original: bytes) -> st.SearchStrategy[Fault]:
    size = len(original)

    def truncated(n: int) -> Fault:
        return Fault("bytes", "truncated", lambda p: p.write_bytes(original[:n]))

    def flipped(at: int, value: int) -> Fault:
        data = bytearray(original)
        data[at] ^= value or 0xFF
        return Fault("bytes", "byte flipped", lambda p: p.write_bytes(bytes(data)))

    return st.one_of(
        st.just(Fault("bytes", "empty", lambda p: p.write_bytes(b""))),
        st.integers(1, max(size - 1, 1)).map(truncated),
        st.tuples(st.integers(0, max(size - 1, 0)), st.integers(0, 255)).map(lambda t: flipped(*t)),
        st.binary(min_size=1, max_size=256).map(lambda b: Fault("bytes", "random bytes", lambda p: p.write_bytes(b))),
    )


def text_faults(original: bytes) -> st.SearchStrategy[Fault]:
    def spliced(at: int, bad: bytes) -> Fault:
        return Fault("text", "non-UTF-8", lambda p: p.write_bytes(original[:at] + bad + original[at:]))

    return st.tuples(st.integers(0, len(original)), st.sampled_from(NON_UTF8)).map(lambda t: spliced(*t))


# ---- JSON ----------------------------------------------------------------------------------------

ABSURD_NUMBERS = st.sampled_from([0, -1, -(2**63), 2**63, 10**30, 1e308, -0.5, 0.5, float("nan"), float("inf")])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | ABSURD_NUMBERS | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON document (lists: their first three items), the root excluded."""
    found: list[tuple] = []
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value[:3])) if isinstance(value, list) else []
    for key, child in items:
        found.append(prefix + (key,))
        found.extend(json_paths(child, prefix + (key,)))
    return found


def replaced(document: Any, path: tuple, new: Any, delete: bool = False) -> Any:
    copy = json.loads(json.dumps(document))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return copy


def json_faults(document: Any, dump: Callable[[Any], bytes] | None = None) -> st.SearchStrategy[Fault]:
    """Faults of a JSON document: a value replaced or deleted at any path, or the root replaced."""
    dump = dump or (lambda doc: json.dumps(doc).encode())
    paths = json_paths(document)

    def value_at(path: tuple, new: Any) -> Fault:
        data = dump(replaced(document, path, new))
        return Fault("json", "wrong value", lambda p: p.write_bytes(data))

    def deleted(path: tuple) -> Fault:
        data = dump(replaced(document, path, None, delete=True))
        return Fault("json", "field deleted", lambda p: p.write_bytes(data))

    def root(new: Any) -> Fault:
        data = dump(new)
        return Fault("json", "not an object", lambda p: p.write_bytes(data))

    return st.one_of(
        st.tuples(st.sampled_from(paths), JSON_VALUES).map(lambda t: value_at(*t)),
        st.sampled_from(paths).map(deleted),
        JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(root),
    )


def jsonl_dump(records: list[Any]) -> Callable[[Any], bytes]:
    return lambda doc: "".join(json.dumps(r) + "\n" for r in doc).encode() if isinstance(doc, list) else json.dumps(doc).encode()


# ---- arrays --------------------------------------------------------------------------------------

def array_variants(array: np.ndarray) -> st.SearchStrategy[tuple[str, np.ndarray]]:
    """Arrays a loader must refuse (or read correctly): other dtypes, ranks, lengths, NaN, empty, objects.

    Only the variants that can be made from this array are offered (a string array has no int32 form).
    """
    array = np.asarray(array)

    def with_nonfinite(value: float) -> np.ndarray:
        broken = np.array(array, dtype=array.dtype if array.dtype.kind == "f" else np.float32)
        broken.reshape(-1)[:1] = value
        return broken

    def objects() -> np.ndarray:
        holder = np.empty(max(len(array), 1) if array.ndim else 1, dtype=object)
        holder[:] = [{"row": i} for i in range(len(holder))]
        return holder

    makers: dict[str, Callable[[], np.ndarray]] = {
        "float64": lambda: array.astype(np.float64),
        "int32": lambda: array.astype(np.int32),
        "uint8": lambda: array.astype(np.uint8),
        "bool": lambda: array.astype(bool),
        "strings": lambda: array.astype(str),
        "rank 1": lambda: array.reshape(-1),
        "rank +1": lambda: array[None],
        "one row fewer": lambda: array[:-1],
        "one row more": lambda: np.concatenate([array, array[:1]]),
        "empty": lambda: array[:0],
        "scalar": lambda: array.reshape(-1)[:1].reshape(()),
        "last dim -1": lambda: array[..., :-1],
        "NaN": lambda: with_nonfinite(float("nan")),
        "inf": lambda: with_nonfinite(float("inf")),
        "negative": lambda: (-np.abs(array) - 1).astype(array.dtype),
        "huge": lambda: np.full_like(array, np.iinfo(array.dtype).max) if array.dtype.kind in "iu" else (array * 1e30).astype(array.dtype),
        "object": objects,
    }
    variants = []
    for name, make in makers.items():
        try:
            with np.errstate(all="ignore"):
                variants.append((name, make()))
        except (ValueError, TypeError, IndexError, OverflowError):
            continue
    return st.sampled_from(variants)


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def npy_faults(array: np.ndarray) -> st.SearchStrategy[Fault]:
    return array_variants(array).map(lambda v: Fault("arrays", v[0], lambda p, data=npy_bytes(v[1]): p.write_bytes(data)))


def npz_faults(members: dict[str, np.ndarray]) -> st.SearchStrategy[Fault]:
    """One member replaced by a variant, one member dropped, or an .npz that is not a zip of .npy files."""
    names = sorted(members)

    def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
        with zipfile.ZipFile(path, "w") as archive:
            for name, value in arrays.items():
                archive.writestr(f"{name}.npy", npy_bytes(value))

    def member(name: str, variant: tuple[str, np.ndarray]) -> Fault:
        return Fault("arrays", f"member {name}: {variant[0]}", lambda p: write(p, {**members, name: variant[1]}))

    def dropped(name: str) -> Fault:
        return Fault("arrays", f"member {name}: missing", lambda p: write(p, {k: v for k, v in members.items() if k != name}))

    def not_npy(name: str) -> Fault:
        def apply(path: Path) -> None:
            with zipfile.ZipFile(path, "w") as archive:
                for other, value in members.items():
                    archive.writestr(f"{other}.npy", b"not an npy file" if other == name else npy_bytes(value))
        return Fault("arrays", "member not .npy", apply)

    return st.one_of(
        st.sampled_from(names).flatmap(lambda n: array_variants(members[n]).map(lambda v: member(n, v))),
        st.sampled_from(names).map(dropped),
        st.sampled_from(names).map(not_npy),
    )


def npz_json_faults(members: dict[str, np.ndarray], name: str) -> st.SearchStrategy[Fault]:
    """Faults of the JSON document an .npz member holds as one string (a predictions file's `provenance`):
    any field replaced by a value of another type or an absurd number, or deleted, the archive otherwise intact."""
    document = json.loads(str(members[name].reshape(-1)[0]))

    def dump(doc: Any) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for other, value in {**members, name: np.array(json.dumps(doc))}.items():
                archive.writestr(f"{other}.npy", npy_bytes(value))
        return out.getvalue()

    return json_faults(document, dump)


def npz_members_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=True) as archive:
        return {name: archive[name] for name in archive.files}
