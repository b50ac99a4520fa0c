"""The file layouts we read, detected by the arrays a file holds, and the name mapping for unknown ones.

A layout says which array of a file holds each of our fields. Two kinds of file are read:

- `payload`: the bank (`vectors`, `article_indices`, `chunk_indices`, optional `texts`, `titles`, `cpe_ids`);
- `rows`: an eval set, validation or training data (`contexts`, `targets`, `truth_keys`, optional
  `context_keys`, `provenance`).

Known layouts are detected, never chosen by a team's name: the one whose signature arrays are all
present (and whose pickled arrays are object arrays) wins, the most specific first. A file of an
unknown layout is read by mapping its names, `--field contexts=context_sequences` (repeatable) or
the `lvm_fields` ini option; `--field provenance=` (empty) leaves an optional field out.

Provenance field names differ between pipelines too: `canonical_provenance` maps the ones we know
(`embedder_id` -> `embedder`, norm `l2_once` -> `l2`) and keeps what was recorded under `recorded`.
Payload identities (`payload_build_id` in any of its forms) are kept as recorded and read by
`lvmcore/plumbing/identity.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lvmcore.artifacts.npz_members import Member

FIELDS = {
    "payload": ("vectors", "article_indices", "chunk_indices", "texts", "titles", "cpe_ids"),
    "rows": ("contexts", "targets", "truth_keys", "context_keys", "provenance"),
}
REQUIRED = {
    "payload": ("vectors", "article_indices", "chunk_indices"),
    "rows": ("contexts", "targets", "truth_keys"),
}
ALL_FIELDS = tuple(dict.fromkeys(FIELDS["payload"] + FIELDS["rows"]))


@dataclass(frozen=True)
class Layout:
    """One known layout: which array holds each field, and how to recognise a file written in it."""

    name: str
    kind: str  # "payload" or "rows"
    container: str  # "npz", "npy-pickle" or "directory"
    fields: dict[str, str]  # our field -> the array's name in the file
    signature: tuple[str, ...] = ()  # arrays that must all be present
    absent: tuple[str, ...] = ()  # arrays that must not be present
    pickled: tuple[str, ...] = ()  # arrays that must be object arrays (pickles)
    scalars: dict[str, str] = field(default_factory=dict)  # what a scalar array must equal: array -> "count"|"context_length"|"dim"
    description: str = ""

    def matches(self, members: dict[str, Member]) -> bool:
        return (
            all(name in members for name in self.signature)
            and not any(name in members for name in self.absent)
            and all(name in members and members[name].pickled for name in self.pickled)
        )


OURS_ROWS = {name: name for name in FIELDS["rows"]}

LAYOUTS: tuple[Layout, ...] = (
    Layout("lvm-checks payload", "payload", "directory", {}, description="our directory: vectors.npy, keys.npy, manifest.json, texts.jsonl"),
    Layout(
        "lvm-checks rows", "rows", "npz", OURS_ROWS, signature=("contexts", "targets", "truth_keys"), absent=("last_meta",),
        description="our eval/training .npz: contexts, targets, truth_keys, context_keys, provenance (JSON string)",
    ),
    Layout(
        "source vectors", "payload", "npz",
        {"vectors": "vectors", "article_indices": "article_indices", "chunk_indices": "chunk_indices",
         "texts": "concept_texts", "titles": "article_titles", "cpe_ids": "cpe_ids"},
        signature=("vectors", "article_indices", "chunk_indices"),
        description="compressed .npz: vectors f32 (N, D), article_indices/chunk_indices (N,), concept_texts, article_titles, cpe_ids",
    ),
    Layout(
        "payload pickle", "payload", "npy-pickle", {},
        description=".npy holding a pickled dict {row: (text, {article_index, chunk_index, cpe_id}, vector)} (or of the three "
        "source-vector arrays); read only with --allow-pickle",
    ),
    Layout(
        "sequences v1", "rows", "npz",
        {"contexts": "context_sequences", "targets": "target_vectors", "truth_keys": "truth_keys", "provenance": "provenance"},
        signature=("context_sequences", "target_vectors", "truth_keys"),
        scalars={"context_length": "context_length", "num_sequences": "count", "vector_dim": "dim"},
        description="training/validation/clean eval .npz: context_sequences (N, C, D), target_vectors, truth_keys int32, "
        "context_length, num_sequences, vector_dim, provenance (JSON in a one-element unicode array)",
    ),
    Layout(
        "eval v3", "rows", "npz", OURS_ROWS, signature=("contexts", "targets", "truth_keys"), absent=("last_meta",),
        pickled=("provenance",),
        description="eval .npz: contexts, targets, truth_keys int64, provenance as a one-element object array (pickle)",
    ),
    Layout(
        "eval v2", "rows", "npz", OURS_ROWS, signature=("contexts", "targets", "truth_keys", "last_meta"),
        description="eval v3 plus last_meta (object array of dicts) and alignment_stats; neither is read",
    ),
)


def specificity(layout: Layout) -> int:
    return len(layout.signature) + len(layout.absent) + len(layout.pickled)


def detect_layout(kind: str, members: dict[str, Member]) -> Layout | None:
    """The most specific known `kind` layout this file matches, or None."""
    candidates = [layout for layout in LAYOUTS if layout.kind == kind and layout.container == "npz" and layout.matches(members)]
    return max(candidates, key=specificity, default=None)


class FieldMappingError(ValueError):
    """A `--field` / `lvm_fields` entry that is not NAME=ARRAY with NAME one of our fields."""


def parse_field_mapping(lines: list[str]) -> dict[str, str]:
    """`NAME=ARRAY` lines (blank lines and # comments skipped) as {our field: array name}; ARRAY may be empty."""
    mapping: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, source = (part.strip() for part in line.partition("="))
        if not sep or name not in ALL_FIELDS:
            raise FieldMappingError(f"field mapping {line!r}: expected NAME=ARRAY with NAME one of {', '.join(ALL_FIELDS)}")
        if not source and name in REQUIRED["payload"] + REQUIRED["rows"]:
            raise FieldMappingError(f"field mapping {line!r}: {name} is required and cannot be left out")
        mapping[name] = source
    return mapping


@dataclass(frozen=True)
class Resolved:
    """How one file is read: the layout's name and, for each of our fields, its array (None: not read)."""

    layout: str
    sources: dict[str, str | None]
    layout_entry: Layout | None

    def source(self, name: str) -> str | None:
        return self.sources.get(name)


def resolve_fields(kind: str, members: dict[str, Member], mapping: dict[str, str] | None) -> Resolved:
    """Detect the layout, then apply the user's mapping entries whose array this file holds (or that leave a field out).

    Mapping entries naming arrays this file does not hold are for another file and are ignored here.
    """
    layout = detect_layout(kind, members)
    sources: dict[str, str | None] = {}
    if layout is not None:
        sources = {name: source for name, source in layout.fields.items() if source in members}
    else:
        sources = {name: name for name in FIELDS[kind] if name in members}
    applied = False
    for name, source in (mapping or {}).items():
        if name not in FIELDS[kind]:
            continue
        if source == "":
            sources[name], applied = None, True
        elif source in members:
            sources[name], applied = source, True
    if layout is None:
        label = "mapped" if applied else "unknown"
    else:
        label = f"{layout.name}, mapped" if applied else layout.name
    return Resolved(layout=label, sources=sources, layout_entry=layout)


def nearest_layout(kind: str, members: dict[str, Member]) -> Layout | None:
    """The known `kind` layout with the most of its signature arrays present (at least two), for the error message."""
    scored = [(sum(name in members for name in layout.signature), layout) for layout in LAYOUTS
              if layout.kind == kind and layout.signature and not layout.matches(members)]
    best = max(scored, key=lambda item: item[0], default=(0, None))
    return best[1] if best[0] >= 2 else None


def missing_fields_problem(kind: str, resolved: Resolved, members: dict[str, Member], mapping: dict[str, str] | None) -> str | None:
    """The one-line problem when a required field has no array, naming what the file holds and how to map it."""
    missing = [name for name in REQUIRED[kind] if not resolved.source(name)]
    if not missing:
        return None
    unused = [f"{n}={s}" for n, s in (mapping or {}).items() if n in FIELDS[kind] and s and s not in members]
    hint = f"; mapping entries naming arrays it lacks: {', '.join(unused)}" if unused else ""
    known = ", ".join(layout.name for layout in LAYOUTS if layout.kind == kind)
    closest = nearest_layout(kind, members)
    if closest is not None:
        lacks = [name for name in closest.signature if name not in members]
        hint = f"; closest known layout: {closest.name}, which also needs {', '.join(lacks)}" + hint
    return (
        f"is missing array(s) {', '.join(missing)} and matches no known {kind} layout ({known}); it has: "
        f"{', '.join(members) or 'nothing'}. Map its arrays with --field NAME=ARRAY (e.g. --field {missing[0]}=...) "
        f"or lvm_fields in pytest.ini{hint}"
    )


# ---- provenance names ---------------------------------------------------------------------------

PROVENANCE_NAMES = {"embedder_id": "embedder", "vector_dim": "dim"}  # their name -> ours
NORM_NAMES = {"l2_once": "l2"}


def canonical_provenance(recorded: dict[str, Any]) -> dict[str, Any]:
    """Provenance in our field names; what the file recorded stays under `recorded` when anything was renamed.

    Our own names win over an alias. Identity fields (`payload_build_id`, ...) keep their recorded names and
    values: `lvmcore.plumbing.identity` reads each form they take.
    """
    out: dict[str, Any] = {}
    renamed = False
    for name, value in recorded.items():
        ours = PROVENANCE_NAMES.get(name)
        if ours is not None and ours not in recorded:
            out[ours], renamed = value, True
        else:
            out[name] = value
    norm = out.get("norm")
    if isinstance(norm, str) and norm in NORM_NAMES:
        out["norm"], renamed = NORM_NAMES[norm], True
    if renamed:
        out["recorded"] = dict(recorded)
    return out
