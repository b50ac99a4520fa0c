"""What every latent vector model shares: its config, its tower count, and the bank encoder.

A model reads C context vectors (B, C, D) and predicts the next chunk's vector (B, D), L2-normalised,
for an inner-product search over the payload bank. A one-tower model searches the bank as it is;
a two-tower model first encodes the bank with its payload tower (`encode_bank`).

Residual head (`config.residual`): every model can predict

    prediction = normalize(x_C + f(x_1..x_C))

where x_C is the last context vector (the last one not blanked, when article dropout blanked the
tail of the context) and f is the network, whose output layer starts at zero, so
an untrained residual model is exactly copy-last and training learns the step from the last chunk
to the next one (on the embedded bank copy-last alone retrieves 39.9% at R@5; a non-residual
mamba-xs after 2 epochs retrieved 6.9%). Without it, prediction = normalize(f(x_1..x_C)). The field
defaults to False, so a stored config written before the field existed loads as the model it was;
`python -m train` builds residual models unless told `--no-residual`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BANK_ROWS_PER_PASS = 65_536  # rows per pass of `encode_bank` when no gradient is needed


class ModelConfig:
    """Mixin for model config dataclasses: a `kind` and a plain JSON-able dict of init fields.

    Derived sizes (`field(init=False)`, set in `__post_init__`) are left out of the dict and
    recomputed on load, so a checkpoint's config cannot disagree with itself.
    """

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """{"kind": ..., field: value, ...} for every init field; saved in checkpoints."""
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self) if f.init}}  # type: ignore[arg-type]


def l2_normalize(vectors: Tensor) -> Tensor:
    """Unit rows in float32, whatever the autocast dtype: (..., D) -> (..., D). The torch twin of `lvmcore.vectors.l2_normalize`."""
    return F.normalize(vectors.float(), p=2.0, dim=-1)


def last_present(contexts: Tensor) -> Tensor:
    """(B, C, D) -> (B, D): each context's last vector that is not all zero (article dropout blanks a suffix).

    Equal to contexts[:, -1] for every context without a blank tail; a zero row for an all-zero
    context. Without this, a blanked last position would make a residual model at init predict the
    zero vector, whose normalisation has a gradient of 1/eps (the loop saw an infinite gradient norm).
    """
    present = contexts.ne(0).any(dim=-1)  # (B, C)
    last = contexts.shape[1] - 1 - present.flip(1).to(torch.uint8).argmax(dim=1)  # (B,) C-1 when nothing is present
    return contexts[torch.arange(contexts.shape[0], device=contexts.device), last]  # (B, D)


def output_head(contexts: Tensor, output: Tensor, residual: bool) -> Tensor:
    """The unit prediction from the network's output (B, D): normalize(x_C + output) or normalize(output)."""
    if residual:
        output = last_present(contexts).float() + output.float()  # (B, D): the step from the last context vector
    return l2_normalize(output)  # (B, D)


def zero_output_layer(layer: nn.Linear) -> None:
    """Start a residual head's output layer at zero, so the untrained model is exactly copy-last."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class LatentVectorModel(nn.Module):
    """Base class: `forward(contexts (B, C, D)) -> (B, D)` unit vectors; `encode_bank` for the bank."""

    tower_count: int = 1

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, contexts: Tensor) -> Tensor:  # (B, C, D) -> (B, D)
        raise NotImplementedError

    def encode_bank(self, vectors: Tensor) -> Tensor:
        """One tower: the bank is searched as it is, so the vectors come back unchanged. (N, D)."""
        return vectors

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def run_recurrent(rnn: nn.RNNBase, sequence: Tensor) -> Tensor:
    """Outputs (B, C, H) of an nn.LSTM / nn.GRU. On CPU it runs in fp32 even under bf16 autocast:
    oneDNN has no bf16 LSTM on CPUs without AVX-512 bf16 and fails with "could not create a
    primitive descriptor"."""
    if sequence.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return rnn(sequence.float())[0]
    return rnn(sequence)[0]


def run_in_passes(tower: nn.Module, vectors: Tensor) -> Tensor:
    """tower(vectors) for (N, D); without grad, in passes of BANK_ROWS_PER_PASS rows to bound memory."""
    if torch.is_grad_enabled() or vectors.shape[0] <= BANK_ROWS_PER_PASS:
        return tower(vectors)
    return torch.cat([tower(part) for part in vectors.split(BANK_ROWS_PER_PASS)])  # (N, D)
