"""A small causal Transformer decoder over the context, with learned positions (nanoGPT's layout)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lvmcore.errors import ArtifactError
from lvmcore.models.base import LatentVectorModel, ModelConfig, l2_normalise


@dataclass
class TransformerConfig(ModelConfig):
    kind: ClassVar[str] = "transformer"

    dim: int = 768  # D
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    max_context: int = 16  # the most context positions the learned position table holds
    dropout: float = 0.1


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape  # (B, C, d_model)
        q, k, v = self.qkv(x).split(width, dim=-1)  # 3 x (B, C, d_model)
        q, k, v = (t.view(batch, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, C, d)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, C, d)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))  # (B, C, d_model)


class MLP(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.proj = nn.Linear(4 * config.d_model, config.d_model)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, d_model)
        return self.proj(F.gelu(self.fc(x)))


class DecoderBlock(nn.Module):
    """Pre-LayerNorm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, d_model)
        x = x + self.dropout(self.attn(self.ln_1(x)))
        return x + self.dropout(self.mlp(self.ln_2(x)))


class TransformerLVM(LatentVectorModel):
    """Contexts (B, C, D) -> projection + positions -> causal blocks -> last position -> unit (B, D)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.input_proj = nn.Linear(config.dim, config.d_model)
        self.position = nn.Embedding(config.max_context, config.d_model)
        self.blocks = nn.ModuleList([DecoderBlock(config) for _ in range(config.n_layers)])
        self.ln_f = nn.LayerNorm(config.d_model)
        self.output_proj = nn.Linear(config.d_model, config.dim)

    def forward(self, contexts: Tensor) -> Tensor:
        length = contexts.shape[1]
        if length > self.config.max_context:
            raise ArtifactError(
                None,
                f"context length {length} exceeds the transformer's max_context "
                f"{self.config.max_context}; build the model with a larger max_context",
            )
        positions = torch.arange(length, device=contexts.device)  # (C,)
        h = self.input_proj(contexts) + self.position(positions)  # (B, C, d_model)
        for block in self.blocks:
            h = block(h)  # (B, C, d_model)
        return l2_normalise(self.output_proj(self.ln_f(h[:, -1])))  # (B, D)
