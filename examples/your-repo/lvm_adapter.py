"""Your loader, for `--model-adapter lvm_adapter:load_predictor`: a checkpoint path in, a model (B, C, D) -> (B, D) out.

lvm-checks never unpickles your checkpoints itself (your code, your trust): it calls this function.
"""

from __future__ import annotations

import torch
from torch import nn


class DriftExtrapolator(nn.Module):
    """Next chunk = W (2 * last - previous): on a smooth walk through a document the step repeats."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mix = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(dim))

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:  # (B, C, D) -> (B, D)
        return self.mix(2 * contexts[:, -1, :] - contexts[:, -2, :])


def load_predictor(path: str) -> nn.Module:
    content = torch.load(path, map_location="cpu", weights_only=True)
    model = DriftExtrapolator(int(content["args"]["dim"]))
    model.load_state_dict(content["model_state_dict"])
    return model.eval()
