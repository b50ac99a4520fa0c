"""Compare what each artifact says about how its vectors were made, and which payload it names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvmcore.artifacts.payload import Payload
from lvmcore.files import file_sha256

FIELDS = ("embedder", "dim", "norm", "metric")
UNKNOWN = {None, "", "unknown", "unknown (public format)"}


def provenance_table(sources: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """{field: {artifact: value}} for every field an artifact records (unknown values left out)."""
    table: dict[str, dict[str, str]] = {}
    for field in FIELDS:
        for artifact, values in sources.items():
            value = values.get(field)
            if value not in UNKNOWN:
                table.setdefault(field, {})[artifact] = str(value)
    return table


def disagreements(table: dict[str, dict[str, str]]) -> list[str]:
    """One sentence per field whose recorded values differ between artifacts."""
    problems = []
    for field, values in table.items():
        if len(set(values.values())) > 1:
            problems.append(f"{field}: " + ", ".join(f"{artifact}={value}" for artifact, value in values.items()))
    return problems


# ---- payload identity -----------------------------------------------------------------------------

IDENTITY_FIELDS = {
    "payload_hash": "content hash (blake2b of vectors and keys)",
    "payload_sha256": "sha256 of the payload file",
}


def payload_identities(payload: Payload, kinds: set[str]) -> dict[str, set[str]]:
    """What identifies this payload, for each identity kind asked for (an empty set: it has none of that kind).

    payload_sha256: the file's sha256 when the payload was read from one file, and `source_sha256`
    from the manifest of a payload converted from one (computed only when asked: one pass over the file).
    """
    out: dict[str, set[str]] = {}
    if "payload_hash" in kinds:
        out["payload_hash"] = {payload.content_hash}
    if "payload_sha256" in kinds:
        values = {str(payload.manifest["source_sha256"]).lower()} if payload.manifest.get("source_sha256") else set()
        if Path(payload.path).is_file():
            values.add(file_sha256(payload.path))
        out["payload_sha256"] = values
    return out


@dataclass(frozen=True)
class IdentityComparison:
    """Each artifact's recorded payload identity against this payload's."""

    matched: list[str]  # "eval set: payload_sha256"
    wrong: list[str]  # "eval set records payload_sha256 ab12..., this payload has cd34..."
    not_comparable: list[str]  # recorded, but this payload has no identity of that kind

    @property
    def compared(self) -> int:
        return len(self.matched) + len(self.wrong)


def compare_payload_identity(recorded: dict[str, dict[str, Any]], identities: dict[str, set[str]]) -> IdentityComparison:
    """recorded: {artifact: its provenance}; identities: `payload_identities` of the payload given."""
    matched, wrong, not_comparable = [], [], []
    for artifact, provenance in recorded.items():
        for kind in IDENTITY_FIELDS:
            value = provenance.get(kind)
            if not value:
                continue
            mine = identities.get(kind, set())
            if not mine:
                not_comparable.append(f"{artifact} records {kind} ({IDENTITY_FIELDS[kind]}) but this payload has none")
            elif str(value).lower() in mine:
                matched.append(f"{artifact}: {kind}")
            else:
                wrong.append(f"{artifact} records {kind} {value}, this payload has {', '.join(sorted(mine))}")
    return IdentityComparison(matched, wrong, not_comparable)
