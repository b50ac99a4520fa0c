"""A model class lvm-checks does not know, saved the way another pipeline saves it, and its adapter.

The checkpoint is the public pipeline's dict (epoch, model_state_dict, optimizer_state_dict,
val_cosine, val_loss, args with a PosixPath inside). `load_predictor` is what a team writes for
`--model-adapter helpers.foreign_model:load_predictor`: its own loader, trusted because it is its own.
"""

from __future__ import annotations

from pathlib import Path, PosixPath

import torch
from torch import nn


class DriftExtrapolator(nn.Module):
    """Next chunk = normalize(W (2 * last - previous)): on a smooth walk the step repeats."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mix = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(dim))

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:  # (B, C, D) -> (B, D), not normalised
        return self.mix(2 * contexts[:, -1, :] - contexts[:, -2, :])  # (B, D)


def save_foreign_checkpoint(path: Path, model: DriftExtrapolator) -> Path:
    torch.save({
        "epoch": 3,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": {},
        "val_cosine": 0.36,
        "val_loss": 1.7,
        "args": {"out_dir": PosixPath("/runs/mamba_s"), "lr": 1e-3, "dim": model.mix.in_features},
    }, path)
    return path


def load_predictor(path: str) -> nn.Module:
    """The team's adapter: it knows its own class and trusts its own file."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = DriftExtrapolator(int(state["args"]["dim"]))
    model.load_state_dict(state["model_state_dict"])
    return model.eval()
