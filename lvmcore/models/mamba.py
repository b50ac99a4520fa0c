"""Mamba for latent vectors: input projection, residual Mamba blocks, final RMSNorm, output projection.

The mixer (`MambaMixer`) follows `mamba_ssm.modules.mamba_simple.Mamba` (Gu & Dao 2023): same
parameter names and shapes (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj) and the same
initialisation, so weights move between the two; the residual stack uses `layers.{i}.mixer` and
`layers.{i}.norm` like `mamba_ssm`'s MixerModel and mambapy's `Mamba`. The selective scan is
`lvmcore.models.scan.selective_scan`: the CUDA kernel when present, our CPU path otherwise.

Parameter count of the `mamba-s` preset at D = 768 (d_model 768, 8 layers, d_state N = 128,
expand 2 so d_inner E = 1536, d_conv 4, dt_rank R):

    in_proj   768 * 2E                 = 2,359,296
    conv1d    E * 4 + E                =     7,680
    x_proj    E * (R + 2N)             = 1536 R + 393,216
    dt_proj   R * E + E                = 1536 R +   1,536
    A_log     E * N                    =   196,608
    D         E                        =     1,536
    out_proj  E * 768                  = 1,179,648
    norm      768                      =       768
    block                              = 4,140,288 + 3072 R

The public reference's block has a full-rank dt projection (E x E, with bias) and an x_proj that
gives only 2N; its block is 6,499,584 parameters. With `mamba_ssm`'s layout the same count comes
from R = 768 = d_model (4,140,288 + 3072 * 768 = 6,499,584), so `mamba-s` uses dt_rank = d_model;
`mamba_ssm`'s default R = ceil(768 / 16) = 48 would give 4,287,744 per block, 35.5M in all.
Total: 8 * 6,499,584 + input_proj (768 * 768 + 768 = 590,592) + norm_f (768)
+ output_proj (768 * 768, no bias = 589,824) = 53,177,856, about 53.2M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lvmcore.models.base import LatentVectorModel, ModelConfig, output_head, zero_output_layer
from lvmcore.models.scan import selective_scan


@dataclass
class MambaConfig(ModelConfig):
    kind: ClassVar[str] = "mamba"

    dim: int = 768  # D, the embedding dimension read and predicted
    d_model: int = 768
    n_layers: int = 8
    d_state: int = 128  # N
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"  # "auto" = ceil(d_model / 16), as in mamba_ssm
    dropout: float = 0.1
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    norm_eps: float = 1e-5
    use_cuda_kernel: bool = True  # use mamba_ssm's selective_scan_fn on CUDA tensors when it imports
    residual: bool = False  # predict normalize(x_C + f(context)), output_proj starting at zero (base.py)
    d_inner: int = field(init=False)  # E = expand * d_model

    def __post_init__(self) -> None:
        self.d_inner = self.expand * self.d_model
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)


class RMSNorm(nn.Module):
    """x / rms(x) * weight (Zhang & Sennrich 2019), as in mamba_ssm and mambapy."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:  # (..., d_model)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MambaMixer(nn.Module):
    """The selective SSM mixer of mamba_simple.Mamba: (B, L, d_model) -> (B, L, d_model)."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        E, N, R = config.d_inner, config.d_state, int(config.dt_rank)
        self.d_state, self.dt_rank, self.use_cuda_kernel = N, R, config.use_cuda_kernel
        self.in_proj = nn.Linear(config.d_model, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, kernel_size=config.d_conv, groups=E, padding=config.d_conv - 1)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, config.d_model, bias=False)
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self._init_dt(config)

    def _init_dt(self, config: MambaConfig) -> None:
        """dt_proj as in mamba_ssm: weights keep variance; softplus(bias) log-uniform in [dt_min, dt_max]."""
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_lo, log_hi = math.log(config.dt_min), math.log(config.dt_max)
        dt = torch.exp(torch.rand(config.d_inner) * (log_hi - log_lo) + log_lo).clamp(min=config.dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, hidden: Tensor) -> Tensor:
        length = hidden.shape[1]
        xz = self.in_proj(hidden)  # (B, L, 2E)
        x, z = xz.chunk(2, dim=-1)  # (B, L, E), (B, L, E)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length])  # (B, E, L): causal depthwise conv
        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # (B, L, E); the bias is added inside the scan
        A = -torch.exp(self.A_log.float())  # (E, N)
        y = selective_scan(
            x,  # (B, E, L)
            dt.transpose(1, 2),  # (B, E, L)
            A,
            B.transpose(1, 2),  # (B, N, L)
            C.transpose(1, 2),  # (B, N, L)
            self.D.float(),
            z=z.transpose(1, 2),  # (B, E, L)
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            use_cuda_kernel=self.use_cuda_kernel,
        )  # (B, E, L)
        return self.out_proj(y.transpose(1, 2))  # (B, L, d_model)


class ResidualBlock(nn.Module):
    """x + dropout(mixer(norm(x))): pre-norm residual, as mamba_ssm's Block and mambapy's ResidualBlock."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        self.mixer = MambaMixer(config)
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, L, d_model)
        return x + self.dropout(self.mixer(self.norm(x)))


class MambaLVM(LatentVectorModel):
    """Contexts (B, C, D) -> next-vector prediction (B, D), read at the last position, unit norm.

    With `config.residual` the prediction is normalize(x_C + output_proj(...)), output_proj zero at init.
    """

    def __init__(self, config: MambaConfig) -> None:
        super().__init__(config)
        self.input_proj = nn.Linear(config.dim, config.d_model)
        self.layers = nn.ModuleList([ResidualBlock(config) for _ in range(config.n_layers)])
        self.norm_f = RMSNorm(config.d_model, config.norm_eps)
        self.output_proj = nn.Linear(config.d_model, config.dim, bias=False)
        for layer in self.layers:  # GPT-2 / mamba_ssm rescaling of the residual branch outputs
            with torch.no_grad():
                layer.mixer.out_proj.weight.div_(math.sqrt(config.n_layers))
        if config.residual:
            zero_output_layer(self.output_proj)

    def forward(self, contexts: Tensor) -> Tensor:
        h = self.input_proj(contexts)  # (B, C, d_model)
        for layer in self.layers:
            h = layer(h)  # (B, C, d_model)
        last = self.norm_f(h[:, -1])  # (B, d_model): the prediction is the last position
        return output_head(contexts, self.output_proj(last), self.config.residual)  # (B, D)
