"""What a checkpoint records about its training, against the payload and eval set it is gated on.

A checkpoint trained on another payload or embedder is gated on this payload without complaint
unless something compares the two: its R@5 here then reads as "does not beat the baseline", the
wrong cause. Likewise a checkpoint whose training articles include eval articles makes every
held-out figure a training figure (FAILURE_MODES row 5). Pure functions; the checks in
`checks/test_gate_record.py` assert on them and the decision reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lvmcore.artifacts.checkpoint import CheckpointRecord
from lvmcore.artifacts.evalset import EvalSet
from lvmcore.artifacts.history import TrainingHistory
from lvmcore.artifacts.payload import Payload
from lvmcore.plumbing.provenance import disagreements, provenance_table


def provenance_mismatches(checkpoint: dict[str, Any], payload_manifest: dict[str, Any], payload_hash: str, eval_provenance: dict[str, Any]) -> tuple[list[str], int]:
    """(one sentence per disagreeing field, fields compared) between the checkpoint's provenance and the artifacts.

    Fields: embedder, dim, norm, metric (as recorded by each), and the payload identity (the
    checkpoint's `payload_hash` against this payload's content hash).
    """
    table = provenance_table({"checkpoint": checkpoint, "payload": payload_manifest, "eval set": eval_provenance})
    compared = [field for field, values in table.items() if "checkpoint" in values and len(values) >= 2]
    problems = [p for p in disagreements({f: table[f] for f in compared})]
    recorded_hash = checkpoint.get("payload_hash")
    if recorded_hash:
        compared.append("payload_hash")
        if str(recorded_hash) != str(payload_hash):
            problems.append(f"payload_hash: checkpoint={recorded_hash}, payload={payload_hash}")
    return problems, len(compared)


@dataclass(frozen=True)
class RecordedLeakage:
    """Eval articles (and keys) among what the checkpoint says it trained on."""

    eval_articles: int
    leaked_articles: np.ndarray  # sorted article ids in both

    @property
    def count(self) -> int:
        return int(len(self.leaked_articles))


def recorded_leakage(training_articles: list[int] | np.ndarray, eval_articles: np.ndarray) -> RecordedLeakage:
    """The eval set's articles that the checkpoint records among its training articles."""
    eval_articles = np.unique(np.asarray(eval_articles, dtype=np.int64))
    leaked = np.intersect1d(np.asarray(training_articles, dtype=np.int64), eval_articles)
    return RecordedLeakage(eval_articles=int(len(eval_articles)), leaked_articles=leaked)


@dataclass(frozen=True)
class RecordFindings:
    """What comparing a checkpoint's record with the artifacts found: read by the record gates and the decision."""

    provenance_problems: list[str]
    provenance_fields_compared: int
    leakage: RecordedLeakage | None  # None when the checkpoint records no training articles

    @property
    def provenance_mismatch(self) -> str | None:
        return "; ".join(self.provenance_problems) or None

    @property
    def leaked_eval_articles(self) -> int | None:
        return None if self.leakage is None else self.leakage.count


def record_findings(record: CheckpointRecord, payload: Payload, eval_set: EvalSet) -> RecordFindings:
    """Provenance and leakage of one checkpoint record against the payload and eval set it is gated on."""
    problems, compared = provenance_mismatches(record.provenance, payload.manifest, payload.content_hash, eval_set.provenance)
    leakage = recorded_leakage(record.training_articles, eval_set.articles) if record.training_articles else None
    return RecordFindings(problems, compared, leakage)


def training_loss_span(history: TrainingHistory | None, epoch: int | None) -> tuple[float, float] | None:
    """(first, latest) recorded training loss up to the model's epoch; None when no record holds two epochs' loss.

    The decision's evidence that the model was trained at all: a checkpoint of random weights that says
    `epoch: 1`, or a run whose learning rate was zero, retrieves nothing exactly as an architecture that
    cannot learn does, and only the loss record tells them apart."""
    if history is None:
        return None
    rows = sorted((r.epoch, float(r.train_loss)) for r in history.epochs
                  if r.train_loss is not None and np.isfinite(r.train_loss) and (epoch is None or r.epoch <= epoch))
    if len(rows) < 2:
        return None
    return rows[0][1], rows[-1][1]
