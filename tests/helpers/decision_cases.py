"""Gate metrics of a healthy model, and the one-figure changes that make each row of the decision table (tests' helper)."""

from __future__ import annotations

from dataclasses import replace

from lvmcore.gate.decision import GateMetrics

HEALTHY = GateMetrics(
    r_at_5=0.12, r_at_1=0.04, r_at_5_low=0.09, r_at_5_high=0.15, oracle_r_at_1=1.0, delta=0.2, ivf_r_at_5=0.12, ivf_agreement=0.98,
    best_baseline="copy_last", best_baseline_r_at_5=0.03, copy_last_r_at_5=0.03, beats_low=0.05, beats_high=0.13,
    excluded_r_at_5=0.14, excluded_best_baseline="copy_last", excluded_beats_low=0.06, excluded_beats_high=0.15,
    echo_rate=0.05, offset_peak=1, offset_peak_margin=0.02, train_minus_eval_r_at_5=0.01,
    nonfinite_predictions=0, nonfinite_weights=0, zero_rows=0, constant_rows=0, repeated_fraction=0.0, answer_copy_fraction=0.0,
    oracle_closure=0.1, model_cosine=0.55, baseline_cosine=0.5, information_z=80.0,
    shift_p=1.0, shift=-1, shift_rows=9, shift_closer=0, elsewhere_share=0.03, elsewhere_chance=0.18, elsewhere_excess_low=-0.6,
    eval_context_aligned=1.0, eval_context_cause="", eval_target_aligned=1.0, eval_target_cause="",
    training_target_aligned=1.0, training_context_aligned=1.0, training_cause="", article_overlap=0.0, chunk_overlap=0.0, near_duplicate=0.0,
    eval_rows=421, rows_needed=153, route="checkpoint", provenance_mismatch=None, leaked_eval_articles=None, trained_epochs=4,
    training_loss=(4.2, 3.1),
)
NOTHING_RETRIEVED = {"r_at_5": 0.0, "r_at_1": 0.0, "r_at_5_low": 0.0, "r_at_5_high": 0.009, "ivf_r_at_5": 0.0, "ivf_agreement": None,
                     "beats_low": -0.45, "beats_high": -0.35, "excluded_beats_low": -0.5, "excluded_beats_high": -0.4}


def healthy(**changes) -> GateMetrics:
    return replace(HEALTHY, **changes)
