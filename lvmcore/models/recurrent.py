"""LSTM and GRU stacks over the context: the recurrent baselines a Mamba must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from lvmcore.models.base import LatentVectorModel, ModelConfig, l2_normalise, run_recurrent


def recurrent_stack(cell: type[nn.RNNBase], dim: int, hidden: int, n_layers: int, dropout: float) -> tuple[nn.RNNBase, nn.Linear]:
    """A batch-first recurrent stack over D-dim vectors and its hidden->D output projection."""
    rnn = cell(dim, hidden, num_layers=n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
    return rnn, nn.Linear(hidden, dim)


def predict_from_last_state(rnn: nn.RNNBase, output_proj: nn.Linear, contexts: Tensor) -> Tensor:
    """Contexts (B, C, D) -> last position's hidden state -> projection -> unit (B, D)."""
    outputs = run_recurrent(rnn, contexts)  # (B, C, hidden)
    return l2_normalise(output_proj(outputs[:, -1]))  # (B, D)


@dataclass
class RecurrentConfig(ModelConfig):
    dim: int = 768  # D
    hidden: int = 512
    n_layers: int = 2
    dropout: float = 0.1  # between stacked layers


@dataclass
class LSTMConfig(RecurrentConfig):
    kind: ClassVar[str] = "lstm"


@dataclass
class GRUConfig(RecurrentConfig):
    kind: ClassVar[str] = "gru"


class RecurrentLVM(LatentVectorModel):
    """Contexts (B, C, D) -> recurrent stack -> last hidden state -> linear -> unit (B, D)."""

    def __init__(self, config: RecurrentConfig) -> None:
        super().__init__(config)
        cell = nn.GRU if config.kind == "gru" else nn.LSTM
        self.rnn, self.output_proj = recurrent_stack(cell, config.dim, config.hidden, config.n_layers, config.dropout)

    def forward(self, contexts: Tensor) -> Tensor:
        return predict_from_last_state(self.rnn, self.output_proj, contexts)  # (B, D)
