"""Gate: does the model predict the NEXT chunk, not echo its context? (row 13)

Echo rate: how often the top-1 retrieved chunk is one of the query's own context chunks (by key).
Offset sweep: mean cos(pred, chunk at offset k from the last context position), k = -C..+3, read
from the payload by key; a next-chunk predictor peaks at k = +1, a copier at k = 0.
"""

from __future__ import annotations

import pytest

from lvmcore.gate.levels import GATE_LEVELS

from lvmcore.gate.evaluation import GateEvaluation

pytestmark = pytest.mark.gate


def _need_context_keys(gate_evaluation: GateEvaluation) -> None:
    if gate_evaluation.model.echo is None:
        pytest.skip("the eval set has no 'context_keys' (public format): echo and offsets need the key of every context vector")


@pytest.mark.threshold("echo_rate", **GATE_LEVELS["echo_rate"].marker())
def test_top1_is_rarely_a_context_chunk(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    _need_context_keys(gate_evaluation)
    threshold.check(
        gate_evaluation.model.echo,
        cause="the model's top-1 is usually a chunk it was given: it reproduces its context instead of predicting the next chunk (row 13)",
        context=f"copy-last echo rate {100 * gate_evaluation.baselines['copy_last'].echo:.1f}%.",
    )


@pytest.mark.threshold("offset_peak_margin", **GATE_LEVELS["offset_peak_margin"].marker())
def test_offset_sweep_peaks_at_next_chunk(checkpoint_path, gate_evaluation: GateEvaluation, threshold) -> None:
    """cos at k=+1 minus the highest cos at any other offset: above zero when the peak is at +1."""
    _need_context_keys(gate_evaluation)
    sweep = gate_evaluation.offset_sweep
    margin = gate_evaluation.offset_margin
    peak = gate_evaluation.offset_peak
    if peak is None:
        pytest.fail("no offset chunk of any eval row was found in the payload by key: context keys do not match the payload (run the plumbing checks)", pytrace=False)
    finite = [v for v in sweep.values() if v == v]
    if max(finite) - min(finite) < 1e-6:
        meaning = "the prediction has the same cosine to every offset (a zero or constant output): it predicts no position at all"
    else:
        meaning = f"the prediction is closest to the chunk at offset {peak:+d}, not the next one (+1): " + {
            0: "it copies the last context chunk", -1: "it reproduces the context, not what follows"}.get(peak, "it has not learned which chunk comes next")
    threshold.check(
        margin,
        cause=meaning,
        context="sweep " + ", ".join(f"{k:+d}: {v:.3f}" for k, v in sweep.items()) + ".",
        details={"sweep": {str(k): v for k, v in sweep.items()}, "copy_last_sweep": {str(k): v for k, v in gate_evaluation.offset_sweep_copy_last.items()}, "peak": peak},
    )
