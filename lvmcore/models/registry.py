"""Named presets, and building a model from a config or its dict (as saved in a checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from lvmcore.errors import ArtifactError
from lvmcore.models.base import LatentVectorModel, ModelConfig
from lvmcore.models.mamba import MambaConfig, MambaLVM
from lvmcore.models.recurrent import GRUConfig, LSTMConfig, RecurrentLVM
from lvmcore.models.transformer import TransformerConfig, TransformerLVM
from lvmcore.models.two_tower import TwoTowerConfig, TwoTowerLVM

CONFIG_FOR_KIND: dict[str, type] = {
    cls.kind: cls for cls in (MambaConfig, LSTMConfig, GRUConfig, TransformerConfig, TwoTowerConfig)
}
MODEL_FOR_KIND: dict[str, type[LatentVectorModel]] = {
    "mamba": MambaLVM,
    "lstm": RecurrentLVM,
    "gru": RecurrentLVM,
    "transformer": TransformerLVM,
    "two-tower": TwoTowerLVM,
}


def _mamba_s(dim: int = 768, **overrides: Any) -> MambaConfig:
    """The public reference's Mamba-S: 8 blocks at d_model 768, d_state 128; 53.2M params at D=768."""
    preset = dict(d_model=768, n_layers=8, d_state=128, d_conv=4, expand=2, dt_rank=768, dropout=0.1)
    return MambaConfig(dim=dim, **{**preset, **overrides})


def _mamba_xs(dim: int = 768, **overrides: Any) -> MambaConfig:
    """A tiny Mamba of the same family, for tests and the default demo (a CPU epoch in seconds)."""
    preset = dict(d_model=128, n_layers=2, d_state=16, d_conv=4, expand=2, dt_rank="auto", dropout=0.1)
    return MambaConfig(dim=dim, **{**preset, **overrides})


def _lstm(dim: int = 768, **overrides: Any) -> LSTMConfig:
    return LSTMConfig(dim=dim, **{"hidden": 512, "n_layers": 2, "dropout": 0.1, **overrides})


def _gru(dim: int = 768, **overrides: Any) -> GRUConfig:
    return GRUConfig(dim=dim, **{"hidden": 512, "n_layers": 2, "dropout": 0.1, **overrides})


def _transformer(dim: int = 768, **overrides: Any) -> TransformerConfig:
    preset = dict(d_model=256, n_layers=4, n_heads=4, max_context=16, dropout=0.1)
    return TransformerConfig(dim=dim, **{**preset, **overrides})


def _two_tower(dim: int = 768, **overrides: Any) -> TwoTowerConfig:
    preset = dict(query_hidden=512, query_layers=2, payload_hidden=2 * dim, dropout=0.1)
    return TwoTowerConfig(dim=dim, **{**preset, **overrides})


PRESETS: dict[str, Callable[..., ModelConfig]] = {
    "mamba-s": _mamba_s,
    "mamba-xs": _mamba_xs,
    "lstm": _lstm,
    "gru": _gru,
    "transformer": _transformer,
    "two-tower": _two_tower,
}


def model_config_from_dict(config: dict[str, Any]) -> ModelConfig:
    """The config dataclass for `config["kind"]`, from a dict written by `to_dict`."""
    kind = config.get("kind")
    if kind not in CONFIG_FOR_KIND:
        raise ArtifactError(None, f"unknown model kind {kind!r}; known kinds: {sorted(CONFIG_FOR_KIND)}")
    cls = CONFIG_FOR_KIND[kind]
    init_names = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(config) - init_names - {"kind"})
    if unknown:
        raise ArtifactError(None, f"model config of kind {kind!r} has unknown keys {unknown}")
    return cls(**{k: v for k, v in config.items() if k != "kind"})


def build_model(config: ModelConfig | dict[str, Any]) -> LatentVectorModel:
    """The model for a config dataclass, or for its dict (dispatching on "kind")."""
    if isinstance(config, dict):
        config = model_config_from_dict(config)
    kind = getattr(config, "kind", None)
    if kind not in MODEL_FOR_KIND or not isinstance(config, CONFIG_FOR_KIND[kind]):
        raise ArtifactError(None, f"unknown model kind {kind!r}; known kinds: {sorted(MODEL_FOR_KIND)}")
    return MODEL_FOR_KIND[kind](config)
