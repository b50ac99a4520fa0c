"""Converters: a file in another pipeline's layout, written once in our format for users who want it on disk.

The suite reads these layouts directly (`lvmcore.artifacts.layouts` lists them); converting is optional.

    python -m lvmcore.artifacts.importers payload SRC OUT_DIR [--embedder NAME] [--allow-pickle] [--field NAME=ARRAY ...]
    python -m lvmcore.artifacts.importers rows SRC OUT.npz [--allow-pickle] [--field NAME=ARRAY ...]

`payload`: a source-vectors `.npz` (or any `.npz` mapped with `--field`), or a pickled payload `.npy`
(only with `--allow-pickle`, read through the restricted unpickler: no code from the file runs).
Vectors are copied as they are; texts, titles and cpe ids go to texts.jsonl; the manifest records
the norm measured and the source file's sha256 (`source_sha256`: the payload identity an eval set
of that pipeline records as `payload_build_id`).
`rows`: eval, validation or training rows of any known layout, in our eval layout (keys widened to
int64, provenance in our field names; context keys are not invented: the suite recovers them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lvmcore.errors import ArtifactError
from lvmcore.files import file_sha256, write_atomic
from lvmcore.artifacts.evalset import write_eval_set
from lvmcore.artifacts.layout_payload import SOURCE_ARRAYS, PickleWarning, measured_norm, read_layout_payload, read_payload_columns
from lvmcore.artifacts.layout_rows import read_rows
from lvmcore.artifacts.layouts import FieldMappingError, parse_field_mapping
from lvmcore.artifacts.payload import Payload, write_payload
from lvmcore.artifacts.validate import require_finite

PUBLIC_ARRAYS = SOURCE_ARRAYS
__all__ = ["PUBLIC_ARRAYS", "PickleWarning", "import_public_payload", "import_rows", "main", "read_public_payload"]


def read_public_payload(path: str | Path, allow_pickle: bool = False, check_finite: bool = True, fields: dict[str, str] | None = None) -> Payload:
    """A payload file of another layout (source-vectors `.npz`, pickled `.npy` with allow_pickle) as an in-memory Payload."""
    return read_layout_payload(path, fields=fields, allow_pickle=allow_pickle, check_finite=check_finite)


def import_public_payload(
    source: str | Path, out_dir: str | Path, embedder: str | None = None, allow_pickle: bool = False, fields: dict[str, str] | None = None
) -> Path:
    """Convert a payload file of another layout into our directory format, keeping its texts and the norm measured."""
    columns = read_payload_columns(source, fields, allow_pickle, converting=True)
    require_finite(columns.path, "vectors", columns.vectors)
    out = write_payload(
        out_dir,
        columns.vectors,
        columns.keys,
        embedder=embedder or "unknown (public format)",
        norm=measured_norm(columns.vectors),
        texts=columns.texts,
        extra={"imported_from": str(source), "layout": columns.layout, "source_sha256": file_sha256(source)},
    )
    if columns.texts is not None and (columns.titles is not None or columns.cpe_ids is not None):
        lines = []
        for row, text in enumerate(columns.texts):
            record = {"text": text}
            if columns.titles is not None:
                record["title"] = columns.titles[row]
            if columns.cpe_ids is not None:
                record["cpe_id"] = columns.cpe_ids[row]
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        data = "".join(lines).encode("utf-8")
        write_atomic(Path(out) / "texts.jsonl", lambda handle: handle.write(data))
    return out


def import_rows(source: str | Path, out: str | Path, allow_pickle: bool = False, fields: dict[str, str] | None = None) -> Path:
    """Convert eval/validation/training rows of any known layout into our eval-set `.npz`."""
    rows = read_rows(source, fields=fields, allow_pickle=allow_pickle)
    provenance = {**rows.provenance, "imported_from": str(source), "source_sha256": file_sha256(source)}
    return write_eval_set(out, rows.contexts, rows.targets, rows.truth_keys, rows.context_keys, provenance)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvmcore.artifacts.importers", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    payload = sub.add_parser("payload", help="convert a source-vectors .npz or a pickled payload .npy into our directory format")
    payload.add_argument("source")
    payload.add_argument("out_dir")
    payload.add_argument("--embedder", default=None, help="embedder id to record in the manifest")
    rows = sub.add_parser("rows", help="convert eval/validation/training rows of a known layout into our eval .npz")
    rows.add_argument("source")
    rows.add_argument("out")
    for each in (payload, rows):
        each.add_argument("--allow-pickle", action="store_true",
                          help="read pickled arrays/payloads through the restricted unpickler (plain data and numpy arrays only)")
        each.add_argument("--field", action="append", default=[], metavar="NAME=ARRAY",
                          help="read our field NAME from the file's array ARRAY (unknown layouts; repeatable); NAME= leaves an optional field out")
    args = parser.parse_args(argv)
    try:
        fields = parse_field_mapping(args.field)
        if args.kind == "payload":
            out = import_public_payload(args.source, args.out_dir, args.embedder, args.allow_pickle, fields)
        else:
            out = import_rows(args.source, args.out, args.allow_pickle, fields)
    except FieldMappingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
