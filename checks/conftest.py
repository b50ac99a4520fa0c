"""Every fixture a check takes, by name, and the measurements several checks share.

A check's fixture is one hop away: either defined below or in the plugin module that owns it
(`fixtures/artifacts.py`, `fixtures/gate.py`, `fixtures/recorder.py`, `fixtures/thresholds.py`). The
plugins (hooks, options, markers, fixtures) are registered by the root `conftest.py`, or by
`lvm_checks/conftest.py` in an installed wheel; this file imports none of them, so it is the same file
in both (ARCHITECTURE.md, "Installed").
"""

from __future__ import annotations

import numpy as np
import pytest

from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.payload import Payload
from lvmcore.artifacts.training_data import TrainingData
from lvmcore.plumbing.alignment import Alignment, align_to_payload
from lvmcore.plumbing.key_recovery import ContextKeys, PayloadDigests, recover_context_keys
from lvmcore.sampling import sample_rows

TRAINING_SAMPLE = 5_000  # windows checked when training data is read from the payload by key (25,000 vectors)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every check here is plumbing or gate: one without either marker is a bug in the suite."""
    for item in items:
        if "checks" in item.path.parts and not ({"plumbing", "gate"} & {m.name for m in item.iter_markers()}):
            raise pytest.UsageError(f"{item.nodeid} has neither the plumbing nor the gate marker")


@pytest.fixture(scope="session")
def eval_target_alignment(eval_set: EvalSet, payload: Payload) -> Alignment:
    return align_to_payload(eval_set.targets, eval_set.truth_keys, payload)


@pytest.fixture(scope="session")
def eval_context_keys(eval_set: EvalSet, payload: Payload, request: pytest.FixtureRequest) -> ContextKeys:
    """The key of every eval context vector: from the file, or (no `context_keys`, the public layouts) recovered
    from the payload by exact byte match, then nearest neighbour (`lvmcore.plumbing.key_recovery`)."""
    if eval_set.context_keys is not None:
        return ContextKeys(eval_set.context_keys)
    digests: PayloadDigests = request.getfixturevalue("payload_digests")
    return recover_context_keys(eval_set.contexts, eval_set.truth_keys, payload, digests=digests)


@pytest.fixture(scope="session")
def eval_context_alignment(eval_set: EvalSet, payload: Payload, eval_context_keys: ContextKeys) -> Alignment:
    """Cosine of every context vector to payload[its key], stored or recovered (an unmatched vector's key names no row)."""
    return align_to_payload(eval_set.contexts, eval_context_keys.keys, payload)


@pytest.fixture(scope="session")
def training_rows(training_data: TrainingData) -> np.ndarray:
    """Window rows to check: all of them for stored arrays, a seeded sample when read from the payload."""
    if training_data.built_from_payload:
        return sample_rows(training_data.count, TRAINING_SAMPLE, seed=0)
    return np.arange(training_data.count)
