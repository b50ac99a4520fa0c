"""Plumbing: embedder, dim, norm and metric agree across payload, eval set and training data (row 1)."""

from __future__ import annotations

import pytest

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.payload import Payload
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
    recorded = {name: src.get("payload_hash") for name, src in provenance_sources.items() if name != "payload" and src.get("payload_hash")}
    if not recorded or "content_hash" not in payload.manifest:
        pytest.skip("no payload_hash recorded in the eval/training provenance, or no content hash in the payload manifest")
    wrong = [f"{name} records {value}" for name, value in recorded.items() if value != payload.content_hash]
    threshold.check(
        int(not wrong),
        cause=f"built from another payload than {payload.path} (content {payload.content_hash}): " + "; ".join(wrong),
    )
