"""Training's validation (`train/validation.py`): each window's own context chunks are excluded from its retrieval."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lvmcore.artifacts.payload import load_payload
from helpers.training_runs import bank  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_validation_excludes_each_windows_own_context(bank: Path) -> None:
    """A copier is copy-last: the same excluded R@5, and a paired lower bound over it of exactly 0 (not shown better)."""
    from lvmcore.artifacts.training_data import load_training_data
    from train.validation import validate

    class CopyLast(torch.nn.Module):
        tower_count = 1

        def forward(self, contexts: torch.Tensor) -> torch.Tensor:
            return contexts[:, -1, :]  # (B, D)

    payload = load_payload(bank / "payload")
    data = load_training_data(bank / "validation.json", payload)
    figures = validate(CopyLast(), data, payload, batch_size=32, temperature=0.05)
    assert figures["val_excluded_r_at_5"] == figures["val_copy_last_excluded_r_at_5"] and figures["val_excluded_over_copy_last_low"] == 0.0  # it is copy-last
