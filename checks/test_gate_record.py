"""Gate: is this checkpoint fit to be judged on this payload and eval set? (rows 1, 5, and NaN runs)

Before any retrieval figure is read: what the checkpoint records about its training data
(provenance, training articles) must agree with the payload and eval set it is gated on, and its
weights and predictions must be finite. The comparisons are `lvmcore.gate.record_checks`.
"""

from __future__ import annotations

import pytest

from lvmcore.gate.levels import GATE_LEVELS

from lvmcore.gate.evaluation import GateEvaluation
from lvmcore.gate.record_checks import RecordFindings

pytestmark = pytest.mark.gate


@pytest.mark.threshold("checkpoint_provenance_disagreements", **GATE_LEVELS["checkpoint_provenance_disagreements"].marker())
def test_checkpoint_provenance_matches_payload_and_eval_set(checkpoint_path, checkpoint_findings: RecordFindings, record, threshold) -> None:
    """embedder, dim, norm, metric and payload hash recorded by the checkpoint vs the payload manifest and eval provenance."""
    problems, compared = checkpoint_findings.provenance_problems, checkpoint_findings.provenance_fields_compared
    if compared == 0:
        record("checkpoint_provenance_not_recorded", 1, shown="not recorded", note=f"{checkpoint_path} records no embedder/dim/norm/metric/payload_hash: provenance could not be compared")
        pytest.skip(f"{checkpoint_path} records no provenance (embedder, dim, norm, metric, payload_hash): cannot tell which payload it was trained for")
    threshold.check(
        len(problems),
        cause="the checkpoint was trained on another payload or through another encoder than the one it is gated on (row 1): " + "; ".join(problems),
        context=f"{compared} field(s) compared.",
        details={"problems": problems, "compared": compared},
    )


@pytest.mark.threshold("checkpoint_eval_article_overlap", **GATE_LEVELS["checkpoint_eval_article_overlap"].marker())
def test_checkpoint_training_articles_exclude_eval_articles(checkpoint_path, checkpoint_findings: RecordFindings, record, threshold) -> None:
    """Eval articles among the training articles the checkpoint records: any is leakage (row 5)."""
    leakage = checkpoint_findings.leakage
    if leakage is None:
        record("checkpoint_training_articles_not_recorded", 1, shown="not recorded", note=f"{checkpoint_path} records no training_articles: leakage into this eval set could not be checked at gate time")
        pytest.skip(f"{checkpoint_path} records no training_articles: leakage cannot be checked at gate time (run the plumbing leakage checks on its training data)")
    threshold.check(
        leakage.count,
        cause="the model trained on documents of the eval set: split by document, not by window (row 5)",
        context=f"{leakage.count} of {leakage.eval_articles} eval articles are training articles (first: {leakage.leaked_articles[:5].tolist()}).",
        details={"leaked_articles": leakage.leaked_articles[:50].tolist(), "eval_articles": leakage.eval_articles},
    )


@pytest.mark.threshold("nonfinite_weights", **GATE_LEVELS["nonfinite_weights"].marker())
def test_checkpoint_weights_are_finite(checkpoint_path, checkpoint_nonfinite_weights: int | None, threshold) -> None:
    if checkpoint_nonfinite_weights is None:
        pytest.skip("the model is not a torch module whose weights can be read (predictions file or exported program)")
    threshold.check(
        checkpoint_nonfinite_weights,
        cause="the checkpoint holds NaN or inf weights: training diverged before it was saved; every figure below is meaningless",
    )


@pytest.mark.threshold("nonfinite_predictions", **GATE_LEVELS["nonfinite_predictions"].marker())
def test_predictions_are_finite(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    threshold.check(
        gate_evaluation.nonfinite_predictions,
        cause="the model predicts NaN or inf for some eval rows (NaN weights, a diverged run, or an overflow): those rows were searched as misses",
        context=f"of {gate_evaluation.model.exact.count} eval rows.",
    )
