"""Two towers: a query tower reads the context, a payload tower re-encodes every bank vector.

Retrieval is inner product between query(context) and payload(chunk vector), both unit norm, so
the bank is searched through `encode_bank`, not as stored. The payload tower is a residual MLP,
v + W2 gelu(W1 LayerNorm(v)), which starts near the identity, so an untrained two-tower model
searches roughly the stored bank. The query tower is a GRU stack, like `RecurrentLVM`; with
`config.residual` it predicts normalize(x_C + f(context)) with f's output layer at zero, so an
untrained residual two-tower model is exactly copy-last searched in the stored bank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from lvmcore.models.base import LatentVectorModel, ModelConfig, l2_normalize, run_in_passes
from lvmcore.models.recurrent import predict_from_last_state, recurrent_stack


@dataclass
class TwoTowerConfig(ModelConfig):
    kind: ClassVar[str] = "two-tower"

    dim: int = 768  # D
    query_hidden: int = 512
    query_layers: int = 2
    payload_hidden: int = 1536
    dropout: float = 0.1
    residual: bool = False  # query tower predicts normalize(x_C + f(context)), output_proj starting at zero


class QueryTower(nn.Module):
    """Contexts (B, C, D) -> GRU stack -> last hidden -> linear [+ x_C] -> unit (B, D)."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.residual = config.residual
        self.rnn, self.output_proj = recurrent_stack(
            nn.GRU, config.dim, config.query_hidden, config.query_layers, config.dropout, config.residual
        )

    def forward(self, contexts: Tensor) -> Tensor:
        return predict_from_last_state(self.rnn, self.output_proj, contexts, self.residual)  # (B, D)


class PayloadTower(nn.Module):
    """Vectors (N, D) -> v + W2 gelu(W1 LayerNorm(v)) -> unit (N, D). W2 starts at zero."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dim)
        self.fc = nn.Linear(config.dim, config.payload_hidden)
        self.proj = nn.Linear(config.payload_hidden, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, vectors: Tensor) -> Tensor:
        residual = self.proj(self.dropout(F.gelu(self.fc(self.norm(vectors)))))  # (N, D)
        return l2_normalize(vectors + residual)  # (N, D)


class TwoTowerLVM(LatentVectorModel):
    """forward = query tower over the context; encode_bank = payload tower over each chunk vector."""

    tower_count = 2

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__(config)
        self.query_tower = QueryTower(config)
        self.payload_tower = PayloadTower(config)

    def forward(self, contexts: Tensor) -> Tensor:  # (B, C, D) -> (B, D)
        return self.query_tower(contexts)

    def encode_bank(self, vectors: Tensor) -> Tensor:
        """The payload tower's unit encoding of each bank vector, (N, D) -> (N, D).

        Without grad (indexing the whole bank) it runs in passes of 65,536 rows; with grad (the
        training loss on in-batch targets) it runs in one pass so gradients reach the tower.
        """
        return run_in_passes(self.payload_tower, vectors)
