"""`lvmcore/gate/predict.py`: a model's predictions in any batch size, and finite on an all-zero context, for every preset."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from lvmcore.models import PRESETS, build_model
from lvmcore.gate.predict import predict
from helpers.training_runs import DIM, CONTEXT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_all_zero_context_gives_a_finite_prediction() -> None:
    for preset in ("mamba-xs", "gru", "lstm", "transformer", "two-tower"):
        model = build_model(PRESETS[preset](dim=DIM))
        out = predict(model, np.zeros((3, CONTEXT, DIM), dtype=np.float32))
        assert out.dtype == np.float32 and out.shape == (3, DIM)
        assert np.isfinite(out).all(), f"{preset} gives NaN on an all-zero context"


def test_predict_matches_the_model_in_any_batch_size() -> None:
    torch.manual_seed(0)
    model = build_model(PRESETS["mamba-xs"](dim=DIM))
    contexts = np.random.default_rng(0).normal(size=(37, CONTEXT, DIM)).astype(np.float32)
    whole = predict(model, contexts, batch_size=1024)
    pieces = predict(model, contexts, batch_size=5)
    np.testing.assert_allclose(whole, pieces, atol=1e-5)
    assert not model.training
