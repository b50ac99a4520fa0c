"""Latent vector models: contexts (B, C, D) -> next-vector prediction (B, D), unit norm.

    config = PRESETS["mamba-s"](dim=768)   # or "mamba-xs", "lstm", "gru", "transformer", "two-tower"
    config = PRESETS["gru"](dim=768, residual=True)  # normalize(last context vector + f(context)), copy-last at init
    model = build_model(config)            # or build_model(config.to_dict())
    pred = model(contexts)                 # (B, C, D) -> (B, D)
    bank = model.encode_bank(vectors)      # (N, D) -> (N, D); identity for one-tower models

Every model, its config dataclass and the preset table (`registry`). May import only the root modules.
"""

from lvmcore.models.base import LatentVectorModel, ModelConfig
from lvmcore.models.mamba import MambaConfig, MambaLVM, MambaMixer
from lvmcore.models.recurrent import GRUConfig, LSTMConfig, RecurrentLVM
from lvmcore.models.registry import PRESETS, build_model, model_config_from_dict
from lvmcore.models.scan import cuda_scan_available, scan_reference, selective_scan
from lvmcore.models.transformer import TransformerConfig, TransformerLVM
from lvmcore.models.two_tower import TwoTowerConfig, TwoTowerLVM

__all__ = [
    "PRESETS",
    "GRUConfig",
    "LSTMConfig",
    "LatentVectorModel",
    "MambaConfig",
    "MambaLVM",
    "MambaMixer",
    "ModelConfig",
    "RecurrentLVM",
    "TransformerConfig",
    "TransformerLVM",
    "TwoTowerConfig",
    "TwoTowerLVM",
    "build_model",
    "cuda_scan_available",
    "model_config_from_dict",
    "scan_reference",
    "selective_scan",
]
