"""LSTM and GRU stacks over the context: the recurrent baselines a Mamba must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from lvmcore.models.base import LatentVectorModel, ModelConfig, output_head, run_recurrent, zero_output_layer


def recurrent_stack(
    cell: type[nn.RNNBase], dim: int, hidden: int, n_layers: int, dropout: float, residual: bool = False
) -> tuple[nn.RNNBase, nn.Linear]:
    """A batch-first recurrent stack over D-dim vectors and its hidden->D output projection (zero for a residual head)."""
    rnn = cell(dim, hidden, num_layers=n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
    output_proj = nn.Linear(hidden, dim)
    if residual:
        zero_output_layer(output_proj)
    return rnn, output_proj


def predict_from_last_state(rnn: nn.RNNBase, output_proj: nn.Linear, contexts: Tensor, residual: bool = False) -> Tensor:
    """Contexts (B, C, D) -> last position's hidden state -> projection [+ x_C] -> unit (B, D)."""
    outputs = run_recurrent(rnn, contexts)  # (B, C, hidden)
    return output_head(contexts, output_proj(outputs[:, -1]), residual)  # (B, D)


@dataclass
class RecurrentConfig(ModelConfig):
    dim: int = 768  # D
    hidden: int = 512
    n_layers: int = 2
    dropout: float = 0.1  # between stacked layers
    residual: bool = False  # predict normalize(x_C + f(context)), output_proj starting at zero (base.py)


@dataclass
class LSTMConfig(RecurrentConfig):
    kind: ClassVar[str] = "lstm"


@dataclass
class GRUConfig(RecurrentConfig):
    kind: ClassVar[str] = "gru"


class RecurrentLVM(LatentVectorModel):
    """Contexts (B, C, D) -> recurrent stack -> last hidden state -> linear [+ x_C] -> unit (B, D)."""

    def __init__(self, config: RecurrentConfig) -> None:
        super().__init__(config)
        cell = nn.GRU if config.kind == "gru" else nn.LSTM
        self.rnn, self.output_proj = recurrent_stack(cell, config.dim, config.hidden, config.n_layers, config.dropout, config.residual)

    def forward(self, contexts: Tensor) -> Tensor:
        return predict_from_last_state(self.rnn, self.output_proj, contexts, self.config.residual)  # (B, D)
