"""Which payload an artifact says it was built from, in each form pipelines record it, against the payload given.

An eval set or training data built from another payload passes every per-row check it has no row
for; the identity it records is the one cheap proof of where it came from. Forms read:

| field | form | compared with |
|---|---|---|
| `payload_hash` | our content hash (`Payload.content_hash`, blake2b of vectors and keys) | this payload's content hash |
| `payload_sha256` | a sha256 (64 hex digits, `sha256:` allowed in front) | the payload file's sha256 |
| `payload_build_id` | `NAME@sha256:PREFIX` (the public pipeline's writers: the first 16 hex digits), `sha256:PREFIX`, or a bare sha256 | the start of the payload file's sha256 |

The payload file's sha256 is that of the file given (`--payload payload.npy`) or the
`source_sha256` a converted directory's manifest records. A PREFIX shorter than 12 hex digits names
no file reliably and is refused as such; a value in none of these forms is named as unreadable,
never reported as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvmcore.artifacts.payload import Payload
from lvmcore.files import file_sha256

IDENTITY_FIELDS = ("payload_hash", "payload_sha256", "payload_build_id")
MIN_PREFIX = 12  # hex digits: 48 bits, one accidental match in 2**48 files
CONTENT, SHA256, UNREADABLE = "content hash", "sha256", "unreadable"
FULL_SHA = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
BUILD_ID = re.compile(r"(?:(?P<name>[^@\s]+)@)?sha256:(?P<hex>[0-9a-f]+)")
BUILD_ID_FORMS = f"NAME@sha256:PREFIX (PREFIX at least {MIN_PREFIX} hex digits), sha256:PREFIX or a 64-digit sha256"


@dataclass(frozen=True)
class RecordedIdentity:
    """One identity field as an artifact recorded it, and what we read it as."""

    field: str  # payload_hash, payload_sha256 or payload_build_id
    value: Any  # as recorded
    kind: str  # CONTENT, SHA256 or UNREADABLE
    digest: str = ""  # lower-case hex: the content hash, a full sha256 or a sha256 prefix
    problem: str = ""  # why it is unreadable

    @property
    def is_prefix(self) -> bool:
        return self.kind == SHA256 and len(self.digest) < 64

    def shown(self) -> str:
        """'payload_build_id 'payload@sha256:0123...' (a sha256 prefix, 16 hex digits)' and the like."""
        what = f"a sha256 prefix, {len(self.digest)} hex digits" if self.is_prefix else "a sha256" if self.kind == SHA256 else self.kind
        return f"{self.field} {shown_value(self.value)} ({what})"


def shown_value(value: Any, limit: int = 90) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_identity(field: str, value: Any) -> RecordedIdentity:
    """The recorded `value` of identity `field`, read in the forms that field takes (see the module's table)."""
    if not isinstance(value, str):
        return RecordedIdentity(field, value, UNREADABLE, problem=f"not a string ({type(value).__name__})")
    text = value.strip().lower()
    if field == "payload_hash":
        if re.fullmatch(r"[0-9a-f]+", text):
            return RecordedIdentity(field, value, CONTENT, text)
        return RecordedIdentity(field, value, UNREADABLE, problem="not a hex content hash")
    full = FULL_SHA.fullmatch(text)
    if full:
        return RecordedIdentity(field, value, SHA256, full.group(1))
    build = BUILD_ID.fullmatch(text) if field == "payload_build_id" else None
    if build is None:
        expected = BUILD_ID_FORMS if field == "payload_build_id" else "a 64-digit sha256"
        return RecordedIdentity(field, value, UNREADABLE, problem=f"not {expected}")
    digits = build.group("hex")
    if len(digits) < MIN_PREFIX:
        return RecordedIdentity(field, value, UNREADABLE, problem=f"a sha256 prefix of {len(digits)} hex digits, too short to name one file "
                                f"(at least {MIN_PREFIX})")
    if len(digits) > 64:
        return RecordedIdentity(field, value, UNREADABLE, problem=f"{len(digits)} hex digits after sha256:, more than a sha256 has (64)")
    return RecordedIdentity(field, value, SHA256, digits)


def recorded_identities(provenance: dict[str, Any]) -> list[RecordedIdentity]:
    """Every identity field an artifact's provenance records (null or empty: not recorded)."""
    return [read_identity(field, provenance[field]) for field in IDENTITY_FIELDS if provenance.get(field) not in (None, "")]


@dataclass(frozen=True)
class PayloadIdentity:
    """What identifies the payload given: its content hash, and the sha256 of each file it was read from."""

    content_hash: str
    sha256: dict[str, str]  # sha256 -> where it comes from ("payload.npy", "source_sha256 in manifest.json")


def payload_identity(payload: Payload, with_sha256: bool) -> PayloadIdentity:
    """This payload's identities; the file's sha256 (one pass over the file) only when `with_sha256`."""
    sha256: dict[str, str] = {}
    if with_sha256:
        recorded = payload.manifest.get("source_sha256")
        if isinstance(recorded, str) and FULL_SHA.fullmatch(recorded.strip().lower()):
            sha256[recorded.strip().lower()] = f"source_sha256 in {Path(payload.path).name}/manifest.json"
        if Path(payload.path).is_file():
            sha256[file_sha256(payload.path)] = f"{Path(payload.path).name}"
    return PayloadIdentity(payload.content_hash, sha256)


@dataclass(frozen=True)
class IdentityComparison:
    """Each artifact's recorded payload identity against this payload's, one sentence per identity."""

    matched: list[str]  # "eval set: payload_build_id (first 16 hex digits of the sha256 of payload.npy)"
    wrong: list[str]  # "eval set records payload_build_id '...' (...), but the sha256 of payload.npy is ..."
    unreadable: list[str]  # "eval set records payload_build_id 7 (...), a form we cannot read: ..."
    not_comparable: list[str]  # recorded in a readable form, but this payload has no identity of that kind

    @property
    def compared(self) -> int:
        return len(self.matched) + len(self.wrong)


def needs_sha256(recorded: dict[str, list[RecordedIdentity]]) -> bool:
    return any(identity.kind == SHA256 for identities in recorded.values() for identity in identities)


def compare_payload_identity(recorded: dict[str, list[RecordedIdentity]], payload: PayloadIdentity) -> IdentityComparison:
    """recorded: {artifact: its `recorded_identities`}; payload: `payload_identity` of the payload given."""
    matched: list[str] = []
    wrong: list[str] = []
    unreadable: list[str] = []
    not_comparable: list[str] = []
    for artifact, identities in recorded.items():
        for identity in identities:
            if identity.kind == UNREADABLE:
                unreadable.append(f"{artifact} records {identity.field} {shown_value(identity.value)}, a form we cannot read: {identity.problem}")
            elif identity.kind == CONTENT:
                if identity.digest == payload.content_hash:
                    matched.append(f"{artifact}: payload_hash (content hash)")
                else:
                    wrong.append(f"{artifact} records {identity.shown()}, but this payload's content hash is {payload.content_hash}")
            elif not payload.sha256:
                not_comparable.append(f"{artifact} records {identity.shown()} but this payload was not read from one file and records "
                                      "no source_sha256")
            else:
                found = [source for sha, source in payload.sha256.items() if sha.startswith(identity.digest)]
                compared = f"first {len(identity.digest)} hex digits of " if identity.is_prefix else ""
                if found:
                    matched.append(f"{artifact}: {identity.field} ({compared}the sha256 of {found[0]})")
                else:
                    mine = "; ".join(f"the sha256 of {source} is {sha}" for sha, source in payload.sha256.items())
                    wrong.append(f"{artifact} records {identity.shown()}, but {mine}"
                                 + (f" (compared on the first {len(identity.digest)} hex digits: "
                                    f"{', '.join(sha[: len(identity.digest)] for sha in payload.sha256)})" if identity.is_prefix else ""))
    return IdentityComparison(matched, wrong, unreadable, not_comparable)
