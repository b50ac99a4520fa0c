"""LSTM and GRU stacks over the context: the recurrent baselines a Mamba must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from lvmcore.models.base import LatentVectorModel, ModelConfig, l2_normalise, run_recurrent


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
        self.rnn = cell(
            config.dim,
            config.hidden,
            num_layers=config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.output_proj = nn.Linear(config.hidden, config.dim)

    def forward(self, contexts: Tensor) -> Tensor:
        outputs = run_recurrent(self.rnn, contexts)  # (B, C, hidden)
        return l2_normalise(self.output_proj(outputs[:, -1]))  # (B, D)
