"""Plumbing: embedder, dim, norm and metric agree across payload, eval set and training data (row 1)."""

from __future__ import annotations

import pytest

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.payload import Payload
from lvmcore.plumbing.provenance import IDENTITY_FIELDS, compare_payload_identity, disagreements, payload_identities, provenance_table

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
    """The payload identity each artifact records (our content hash, or a sha256 of the payload file such as the
    public pipeline's `payload_build_id`) must be this payload's."""
    recorded = {name: src for name, src in provenance_sources.items() if name != "payload" and any(src.get(k) for k in IDENTITY_FIELDS)}
    if not recorded:
        pytest.skip(f"no payload identity ({', '.join(IDENTITY_FIELDS)}) recorded in the eval/training provenance")
    kinds = {kind for src in recorded.values() for kind in IDENTITY_FIELDS if src.get(kind)}
    comparison = compare_payload_identity(recorded, payload_identities(payload, kinds))
    if comparison.compared == 0:
        pytest.skip("; ".join(comparison.not_comparable) + f" ({payload.path}): pass the payload file they name, or a directory "
                    "converted from it (`python -m lvmcore.artifacts.importers payload`, which records its source_sha256)")
    threshold.check(
        int(not comparison.wrong),
        cause=f"built from another payload than {payload.path}: " + "; ".join(comparison.wrong)
        + (". If a recorded sha256 is of another file of the same bank (the pickled payload built from these source vectors), pass "
           "that file (with --allow-pickle) or a directory converted from it" if any("payload_sha256" in w for w in comparison.wrong) else ""),
        context=f"compared: {', '.join(comparison.matched + [w.split(' records ')[0] for w in comparison.wrong])}."
        + (f" Not comparable: {'; '.join(comparison.not_comparable)}." if comparison.not_comparable else ""),
    )
