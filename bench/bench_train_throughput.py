"""Training throughput of Mamba-S (ours) against mambapy's Mamba at the same configuration.

One step = forward + InfoNCE loss over in-batch targets + backward + AdamW step, at batch B,
context C = 5, D = 768. Both models are d_model 768, 8 layers, d_state 128, expand 2, d_conv 4,
dt_rank 768 (our Mamba-S preset; see lvmcore/models/mamba.py), with the same input projection,
final RMSNorm and output projection; only the residual Mamba stack differs. Timed steps alternate
between the two models so a change in machine load hits both. Prints samples/s (median of the
timed steps after warmup) and the ratio ours / mambapy, in fp32 and under bf16 autocast.

mambapy's parallel scan materialises several (B, 8, 1536, 128) fp32 tensors per layer for
backward (L = 5 is padded to 8), about 48 GiB in all at B = 256; it is skipped with a message
when its estimate exceeds the memory available. Our scan saves no (B, L, D, N) tensor.

On a CPU without AVX512-BF16 or AMX (this repo's 2-core AVX2 machine), bf16 autocast is several
times slower than fp32 for both models: oneDNN emulates the bf16 matmuls. Train in fp32 there.

    python bench/bench_train_throughput.py --steps 3                 # B = 256, ours (+ mambapy if it fits)
    python bench/bench_train_throughput.py --batch 32 --steps 3      # both models
    python bench/bench_train_throughput.py --scan-only --batch 32    # the selective scan alone
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvmcore.models import PRESETS, build_model  # noqa: E402
from lvmcore.models.mamba import RMSNorm  # noqa: E402
from lvmcore.models.scan import scan_reference, selective_scan  # noqa: E402

TEMPERATURE = 0.05


class MambapyLVM(nn.Module):
    """mambapy's Mamba stack between the same projections and final norm as our MambaLVM."""

    def __init__(self, dim: int, d_model: int, n_layers: int, d_state: int, expand: int, d_conv: int, dt_rank: int):
        super().__init__()
        from mambapy.mamba import Mamba, MambaConfig

        self.input_proj = nn.Linear(dim, d_model)
        self.mamba = Mamba(
            MambaConfig(
                d_model=d_model, n_layers=n_layers, d_state=d_state, expand_factor=expand,
                d_conv=d_conv, dt_rank=dt_rank, pscan=True,
            )
        )
        self.norm_f = RMSNorm(d_model)
        self.output_proj = nn.Linear(d_model, dim, bias=False)

    def forward(self, contexts: Tensor) -> Tensor:
        h = self.mamba(self.input_proj(contexts))  # (B, C, d_model)
        return F.normalize(self.output_proj(self.norm_f(h[:, -1])).float(), dim=-1)  # (B, D)


def mambapy_bytes_estimate(batch: int, n_layers: int, d_inner: int, d_state: int) -> int:
    """~4 (B, 8, E, N) fp32 tensors per layer live in mambapy's pscan path: fwd+bwd at B = 16
    raised peak RSS by 2.95 GiB (this estimate: 3.0 GiB); ours by 0.29 GiB (0.44 GiB at B = 64)."""
    return 4 * batch * 8 * d_inner * d_state * 4 * n_layers


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 62


def info_nce(pred: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of each prediction against the B in-batch targets (B - 1 negatives each)."""
    logits = pred @ targets.T / TEMPERATURE  # (B, B)
    return F.cross_entropy(logits, torch.arange(pred.shape[0]))


def train_step(model: nn.Module, optimiser: torch.optim.Optimizer, contexts: Tensor, targets: Tensor, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
        loss = info_nce(model(contexts), targets)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return time.perf_counter() - start


def bench_training(args: argparse.Namespace) -> None:
    config = PRESETS["mamba-s"](dim=args.dim)
    g = torch.Generator().manual_seed(0)
    contexts = F.normalize(torch.randn(args.batch, args.context, args.dim, generator=g), dim=-1)  # (B, C, D)
    targets = F.normalize(torch.randn(args.batch, args.dim, generator=g), dim=-1)  # (B, D)
    models: dict[str, nn.Module] = {}
    if "ours" in args.models:
        torch.manual_seed(0)
        models["ours"] = build_model(config).train()
    if "mambapy" in args.models:
        need = mambapy_bytes_estimate(args.batch, config.n_layers, config.d_inner, config.d_state)
        if need > 0.8 * available_bytes():
            print(f"mambapy skipped: needs ~{need / 2**30:.0f} GiB at batch {args.batch}, "
                  f"{available_bytes() / 2**30:.0f} GiB available; try --batch 32")
        else:
            torch.manual_seed(0)
            models["mambapy"] = MambapyLVM(
                args.dim, config.d_model, config.n_layers, config.d_state, config.expand, config.d_conv,
                int(config.dt_rank),
            ).train()
    for name, model in models.items():
        print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"batch {args.batch}, context {args.context}, dim {args.dim}, threads {torch.get_num_threads()}, "
          f"warmup {args.warmup}, timed steps {args.steps}")
    for precision in args.precisions:
        bf16 = precision == "bf16"
        optimisers = {n: torch.optim.AdamW(m.parameters(), lr=1e-4) for n, m in models.items()}
        times: dict[str, list[float]] = {n: [] for n in models}
        for step in range(args.warmup + args.steps):
            for name, model in models.items():  # alternate: a load change hits both models
                seconds = train_step(model, optimisers[name], contexts, targets, bf16)
                if step >= args.warmup:
                    times[name].append(seconds)
        rates = {n: args.batch / statistics.median(t) for n, t in times.items()}
        for name, rate in rates.items():
            steps = ", ".join(f"{t:.2f}" for t in times[name])
            print(f"{precision:>4} {name:>8}: {rate:8.1f} samples/s  (step seconds: {steps})")
        if len(rates) == 2:
            print(f"{precision:>4}    ratio ours/mambapy: {rates['ours'] / rates['mambapy']:.2f}x")


def bench_scan(args: argparse.Namespace) -> None:
    """Forward + backward of the selective scan alone at Mamba-S's sizes (E = 1536, N = 128)."""
    from mambapy.pscan import pscan

    E, N, L, batch = 2 * 768, 128, args.context, args.batch
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).requires_grad_()  # noqa: E731
    u, delta, z, B, C = r(batch, E, L), r(batch, E, L), r(batch, E, L), r(batch, N, L), r(batch, N, L)
    A = (-torch.exp(torch.randn(E, N, generator=g) * 0.5)).requires_grad_()
    D, bias = r(E), r(E)

    def mambapy_form(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        x = u.transpose(1, 2)  # (B, L, E)
        dt = F.softplus(delta.transpose(1, 2) + delta_bias)  # (B, L, E)
        deltaA = torch.exp(dt.unsqueeze(-1) * A)  # (B, L, E, N)
        BX = dt.unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2) * x.unsqueeze(-1)  # (B, L, E, N)
        hs = pscan(deltaA, BX)  # (B, L, E, N)
        y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(3) + D * x  # (B, L, E)
        return (y * F.silu(z.transpose(1, 2))).transpose(1, 2)  # (B, E, L)

    forms = {"ours (blocked Function)": selective_scan, "autograd loop": scan_reference, "mambapy pscan": mambapy_form}
    print(f"scan fwd+bwd, batch {batch}, L {L}, E {E}, N {N}, threads {torch.get_num_threads()}")
    times: dict[str, list[float]] = {n: [] for n in forms}
    for step in range(args.warmup + args.steps):
        for name, fn in forms.items():
            start = time.perf_counter()
            fn(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True).sum().backward()
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["ours (blocked Function)"])
    for name, t in times.items():
        print(f"{name:>24}: {statistics.median(t) * 1e3:9.1f} ms  ({statistics.median(t) / base:.2f}x ours)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--context", type=int, default=5)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model and precision")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--models", default="ours,mambapy")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--scan-only", action="store_true", help="time the selective scan alone")
    args = parser.parse_args()
    args.models = args.models.split(",")
    args.precisions = args.precisions.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_scan(args) if args.scan_only else bench_training(args)


if __name__ == "__main__":
    main()
