"""Payload identities in every form pipelines record them (`lvmcore/plumbing/identity.py`): read, compared, named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lvmcore.artifacts.layout_payload import read_layout_payload
from lvmcore.plumbing.identity import (
    CONTENT,
    SHA256,
    UNREADABLE,
    PayloadIdentity,
    compare_payload_identity,
    needs_sha256,
    payload_identity,
    read_identity,
    recorded_identities,
)

from helpers.pipeline_layouts import HARDCODED_BUILD_ID, build_id_of, sha256_of, write_source_vectors

SHA = "0123456789abcdef" * 4


@pytest.mark.parametrize("field, value, kind, digest", [
    ("payload_hash", "AB12cd", CONTENT, "ab12cd"),
    ("payload_sha256", SHA.upper(), SHA256, SHA),
    ("payload_sha256", f"sha256:{SHA}", SHA256, SHA),
    ("payload_build_id", SHA, SHA256, SHA),
    ("payload_build_id", f"payload@sha256:{SHA[:16]}", SHA256, SHA[:16]),
    ("payload_build_id", f"sha256:{SHA[:12]}", SHA256, SHA[:12]),
    ("payload_build_id", f"wiki.v2-584k@sha256:{SHA}", SHA256, SHA),
])
def test_each_recorded_form_is_read(field: str, value: str, kind: str, digest: str) -> None:
    identity = read_identity(field, value)
    assert (identity.kind, identity.digest) == (kind, digest)


@pytest.mark.parametrize("field, value, problem", [
    ("payload_build_id", "build-7", "not NAME@sha256:PREFIX"),
    ("payload_build_id", f"payload@sha256:{SHA[:8]}", "8 hex digits, too short to name one file (at least 12)"),
    ("payload_build_id", f"payload@sha256:{SHA}00", "66 hex digits"),
    ("payload_build_id", f"payload@md5:{SHA[:32]}", "not NAME@sha256:PREFIX"),
    ("payload_sha256", SHA[:16], "not a 64-digit sha256"),
    ("payload_hash", "not hex", "not a hex content hash"),
    ("payload_build_id", 1234, "not a string (int)"),
    ("payload_hash", ["ab"], "not a string (list)"),
])
def test_a_form_we_cannot_read_is_named_as_such(field: str, value, problem: str) -> None:
    identity = read_identity(field, value)
    assert identity.kind == UNREADABLE and problem in identity.problem


def test_null_or_empty_is_not_recorded_and_everything_else_is() -> None:
    assert recorded_identities({"payload_build_id": None, "payload_hash": "", "embedder": "x"}) == []
    assert [i.field for i in recorded_identities({"payload_build_id": 0, "payload_hash": "ab"})] == ["payload_hash", "payload_build_id"]


def compare(value: str, field: str = "payload_build_id", sha: str = SHA):
    recorded = {"eval set": recorded_identities({field: value})}
    return compare_payload_identity(recorded, PayloadIdentity("c0ffee", {sha: "payload.npy"}))


def test_a_build_id_prefix_matches_the_start_of_the_file_sha256() -> None:
    result = compare(f"payload@sha256:{SHA[:16]}")
    assert result.matched == ["eval set: payload_build_id (first 16 hex digits of the sha256 of payload.npy)"] and not result.wrong


def test_a_wrong_build_id_fails_with_both_values_and_the_prefix_length() -> None:
    result = compare(HARDCODED_BUILD_ID)
    assert not result.matched and len(result.wrong) == 1
    message = result.wrong[0]
    assert HARDCODED_BUILD_ID in message and SHA in message and "16 hex digits" in message and SHA[:16] in message


@pytest.mark.parametrize("field", ["payload_sha256", "payload_build_id"])
def test_a_full_sha256_must_equal_the_file_sha256(field: str) -> None:
    assert compare(SHA, field).matched and not compare(SHA, field).wrong
    other = "f" * 64
    wrong = compare(other, field).wrong
    assert len(wrong) == 1 and other in wrong[0] and SHA in wrong[0]


def test_our_content_hash_is_compared_with_the_payload_content() -> None:
    assert compare("C0FFEE", "payload_hash").matched
    wrong = compare("beef", "payload_hash").wrong
    assert len(wrong) == 1 and "beef" in wrong[0] and "c0ffee" in wrong[0]


def test_unreadable_and_not_comparable_are_neither_matched_nor_wrong() -> None:
    result = compare("build-7")
    assert result.compared == 0 and "records payload_build_id 'build-7', a form we cannot read" in result.unreadable[0]
    recorded = {"eval set": recorded_identities({"payload_build_id": f"p@sha256:{SHA[:16]}"})}
    result = compare_payload_identity(recorded, PayloadIdentity("c0ffee", {}))
    assert result.compared == 0 and "no source_sha256" in result.not_comparable[0]


def test_the_payload_file_sha256_is_computed_only_when_a_recorded_form_needs_it(tmp_path: Path) -> None:
    keys = np.stack([np.repeat(np.arange(3), 4), np.tile(np.arange(4), 3)], axis=1)
    vectors = np.eye(12, 8, dtype=np.float32)
    path = write_source_vectors(tmp_path / "source_vectors.npz", vectors, keys)
    payload = read_layout_payload(path)
    assert payload_identity(payload, with_sha256=False).sha256 == {}
    assert payload_identity(payload, with_sha256=True).sha256 == {sha256_of(path): "source_vectors.npz"}
    recorded = {"eval set": recorded_identities({"payload_build_id": build_id_of(path)})}
    assert needs_sha256(recorded) and not needs_sha256({"eval set": recorded_identities({"payload_hash": "ab"})})
    assert compare_payload_identity(recorded, payload_identity(payload, with_sha256=True)).matched
