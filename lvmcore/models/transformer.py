"""A small causal Transformer decoder over the context, with learned positions (nanoGPT's layout and init).

Initialisation follows nanoGPT's `GPT._init_weights`: every Linear and Embedding weight N(0, 0.02),
biases zero, and the two projections that write into the residual stream (attention `proj`,
MLP `proj`) N(0, 0.02 / sqrt(2 * n_layers)).

Why it matters here: with PyTorch's defaults the position table is N(0, 1) (norm about
sqrt(d_model) = 16 per position at d_model 256) while the projected unit context vector has norm
about 0.66, so the content was ~0.1% of the last position's variance across windows. Every window
then looked the same to the blocks, the model predicted one direction for all of them (pairwise
cosine of predictions 0.999 at init) and after 52 AdamW steps at 1e-3 the table had barely moved:
validation R@5 0.0%, cosine to every offset flat at ~0.10. With N(0, 0.02) both terms have norm
~0.32 and the content reaches the output from the first step (tests/test_models.py shows the loss
falling on a rotation task where the default init stays flat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lvmcore.errors import ArtifactError
from lvmcore.models.base import LatentVectorModel, ModelConfig, output_head, zero_output_layer

INIT_STD = 0.02  # nanoGPT's N(0, 0.02) for every Linear and Embedding weight


@dataclass
class TransformerConfig(ModelConfig):
    kind: ClassVar[str] = "transformer"

    dim: int = 768  # D
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    max_context: int = 16  # the most context positions the learned position table holds
    dropout: float = 0.1
    residual: bool = False  # predict normalize(x_C + f(context)), output_proj starting at zero (base.py)


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
    """Contexts (B, C, D) -> projection + positions -> causal blocks -> last position -> linear [+ x_C] -> unit (B, D)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.input_proj = nn.Linear(config.dim, config.d_model)
        self.position = nn.Embedding(config.max_context, config.d_model)
        self.blocks = nn.ModuleList([DecoderBlock(config) for _ in range(config.n_layers)])
        self.ln_f = nn.LayerNorm(config.d_model)
        self.output_proj = nn.Linear(config.d_model, config.dim)
        self.apply(self._init_weights)
        for block in self.blocks:  # GPT-2 / nanoGPT: residual-stream writers scaled by 1/sqrt(2 n_layers)
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=INIT_STD / math.sqrt(2 * config.n_layers))
        if config.residual:
            zero_output_layer(self.output_proj)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """nanoGPT's init: N(0, 0.02) weights for Linear and Embedding, zero biases (LayerNorm keeps 1, 0)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

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
        return output_head(contexts, self.output_proj(self.ln_f(h[:, -1])), self.config.residual)  # (B, D)
