"""Plumbing: embedder, dim, norm and metric agree across payload, eval set and training data (row 1)."""

from __future__ import annotations

import pytest

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.payload import Payload
from lvmcore.plumbing.identity import IDENTITY_FIELDS, compare_payload_identity, needs_sha256, payload_identity, recorded_identities
from lvmcore.plumbing.provenance import disagreements, provenance_table

pytestmark = pytest.mark.plumbing


@pytest.fixture(scope="session")
def provenance_sources(payload: Payload, eval_set: EvalSet, pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> dict:
    sources = {"payload": {**payload.manifest, "payload_hash": payload.manifest.get("content_hash")}, "eval set": eval_set.provenance}
    if str(pytestconfig.getoption("--train-data")).lower() != "none":
        sources["training data"] = request.getfixturevalue("training_data").provenance
    return sources


@pytest.mark.threshold("provenance_disagreements", minimum=0, above=False)
def test_provenance_agrees_across_artifacts(provenance_sources: dict, record, threshold) -> None:
    table = provenance_table(provenance_sources)
    known = sum(1 for values in table.values() if len(values) >= 2)
    if known == 0:
        pytest.skip("fewer than two artifacts record embedder/dim/norm/metric: provenance cannot be compared")
    problems = disagreements(table)
    record("provenance_fields_compared", known, details={"table": table})
    threshold.check(
        len(problems),
        cause="artifacts made by different encoders or settings (row 1): " + "; ".join(problems),
    )


@pytest.mark.threshold("provenance_payload_hash_matches", minimum=1)
def test_eval_and_training_data_name_this_payload(provenance_sources: dict, payload: Payload, threshold) -> None:
    """The payload identity each artifact records (our content hash, a sha256 of the payload file, or a build id
    `NAME@sha256:PREFIX` such as the public pipeline's `payload_build_id`) must be this payload's."""
    recorded = {name: recorded_identities(src) for name, src in provenance_sources.items() if name != "payload"}
    recorded = {name: identities for name, identities in recorded.items() if identities}
    if not recorded:
        pytest.skip(f"no payload identity ({', '.join(IDENTITY_FIELDS)}) recorded in the eval/training provenance")
    comparison = compare_payload_identity(recorded, payload_identity(payload, with_sha256=needs_sha256(recorded)))
    if comparison.compared == 0:
        hint = (f" ({payload.path}): pass the payload file they name, or a directory converted from it "
                "(`python -m lvmcore.artifacts.importers payload`, which records its source_sha256)") if comparison.not_comparable else ""
        pytest.skip("; ".join(comparison.unreadable + comparison.not_comparable) + hint)
    threshold.check(
        int(not comparison.wrong),
        cause=f"built from another payload than {payload.path}: " + "; ".join(comparison.wrong)
        + (". If the recorded sha256 is of another file of the same bank (the pickled payload built from these source vectors), pass "
           "that file (with --allow-pickle) or a directory converted from it; a build id written by hand, not computed from the "
           "payload file, is wrong in the artifact itself" if any("sha256" in w for w in comparison.wrong) else ""),
        context=f"compared: {'; '.join(comparison.matched + [w.split(' records ')[0] + ': differs' for w in comparison.wrong])}."
        + (f" Unreadable: {'; '.join(comparison.unreadable)}." if comparison.unreadable else "")
        + (f" Not comparable: {'; '.join(comparison.not_comparable)}." if comparison.not_comparable else ""),
    )
