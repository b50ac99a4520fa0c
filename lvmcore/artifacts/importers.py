"""Importers for the public artifact formats.

Public payload: an `.npz` with `vectors` (N, D) float32, `article_indices` (N,), `chunk_indices` (N,).
Legacy payload: a Python dict pickled into a `.npy` (same three entries). Loading it runs code from
the file, so it is refused unless the caller passes `allow_pickle=True` (the `--allow-pickle` flag),
and then a warning is issued.
Public eval set: our eval layout without `context_keys` or `provenance`: `load_eval_set` reads it.

CLI: `python -m lvmcore.artifacts.importers payload SRC OUT_DIR [--embedder NAME] [--allow-pickle]`
"""

from __future__ import annotations

import argparse
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

from lvmcore.errors import ArtifactError
from lvmcore.artifacts.payload import Payload, write_payload
from lvmcore.artifacts.validate import require_finite, require_float32, require_keys_valid, require_shape

PUBLIC_ARRAYS = ("vectors", "article_indices", "chunk_indices")


class PickleWarning(UserWarning):
    """Loading a pickled artifact runs code from the file."""


def _arrays_from_public(path: Path, source: dict) -> tuple[np.ndarray, np.ndarray]:
    missing = [name for name in PUBLIC_ARRAYS if name not in source]
    if missing:
        raise ArtifactError(path, f"is missing {', '.join(missing)} (public payload format: {', '.join(PUBLIC_ARRAYS)})")
    vectors = np.asarray(source["vectors"])
    articles, chunks = np.asarray(source["article_indices"]), np.asarray(source["chunk_indices"])
    require_shape(path, "vectors", vectors, rank=2)
    require_float32(path, "vectors", vectors)
    for name, column in (("article_indices", articles), ("chunk_indices", chunks)):
        require_shape(path, name, column, rank=1)
        if len(column) != len(vectors):
            raise ArtifactError(path, f"'{name}' has {len(column)} entries for {len(vectors)} vectors")
    keys = np.stack([articles, chunks], axis=1)
    require_keys_valid(path, "article_indices/chunk_indices", keys)
    return vectors, keys.astype(np.int64)


def read_public_payload(path: str | Path, allow_pickle: bool = False, check_finite: bool = True) -> Payload:
    """A public-format payload (`.npz`, or a pickled dict `.npy` with allow_pickle) as an in-memory Payload."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "file not found")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                source = {name: archive[name] for name in archive.files if name in PUBLIC_ARRAYS}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ArtifactError(path, f"cannot be read as .npz (truncated, corrupt or pickled?): {str(exc).splitlines()[0]}") from None
    else:
        if not allow_pickle:
            raise ArtifactError(path, "is not a public .npz payload; if it is a legacy pickled dict, pass --allow-pickle (it runs code from the file)")
        warnings.warn(f"{path}: loading a pickled payload runs code from the file; convert it once with `python -m lvmcore.artifacts.importers payload`", PickleWarning, stacklevel=2)
        try:
            loaded = np.load(path, allow_pickle=True)
            source = loaded.item() if isinstance(loaded, np.ndarray) and loaded.dtype == object else loaded
        except (ValueError, OSError, EOFError) as exc:
            raise ArtifactError(path, f"cannot be read as a pickled payload: {str(exc).splitlines()[0]}") from None
        if not isinstance(source, dict):
            raise ArtifactError(path, f"holds a {type(source).__name__}, expected a dict with {', '.join(PUBLIC_ARRAYS)}")
    vectors, keys = _arrays_from_public(path, source)
    if check_finite:
        require_finite(path, "vectors", vectors)
    manifest = {
        "embedder": "unknown (public format)",
        "dim": int(vectors.shape[1]),
        "norm": "unknown",
        "metric": "ip",
        "count": int(len(vectors)),
        "imported_from": str(path),
    }
    return Payload(path=path, vectors=vectors, keys=keys, manifest=manifest)


def import_public_payload(source: str | Path, out_dir: str | Path, embedder: str | None = None, allow_pickle: bool = False) -> Path:
    """Convert a public payload into our directory format (vectors are copied as they are)."""
    payload = read_public_payload(source, allow_pickle=allow_pickle)
    return write_payload(
        out_dir,
        np.asarray(payload.vectors),
        payload.keys,
        embedder=embedder or payload.manifest["embedder"],
        norm="unknown",
        extra={"imported_from": str(source)},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvmcore.artifacts.importers", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    payload = sub.add_parser("payload", help="convert a public .npz (or legacy pickled) payload into our directory format")
    payload.add_argument("source")
    payload.add_argument("out_dir")
    payload.add_argument("--embedder", default=None, help="embedder id to record in the manifest")
    payload.add_argument("--allow-pickle", action="store_true", help="allow a legacy pickled payload (runs code from the file)")
    args = parser.parse_args(argv)
    try:
        out = import_public_payload(args.source, args.out_dir, args.embedder, args.allow_pickle)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
