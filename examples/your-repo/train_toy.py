"""Stands in for YOUR training job: it knows nothing of lvm-checks and saves checkpoints its own way.

Each "epoch" saves `OUT/epoch_NNN.pt` in place with a plain `torch.save` (no temp file, no rename),
in this codebase's own layout (`model_state_dict`, `epoch`, `args`), as many training scripts do. The
model is a drift extrapolator, next = W (2 * last - previous), whose W moves towards the identity
epoch by epoch: a model that improves, so the gate has something to compare. Replace this file by
your trainer; `lvm_adapter.py` is the loader lvm-checks uses for its checkpoints.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lvm_adapter import DriftExtrapolator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dim", type=int, default=384)  # lvm-checks' embedded bank; your embedder's dimension
    parser.add_argument("--seconds-per-epoch", type=float, default=1.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    noise = torch.randn(args.dim, args.dim) / args.dim**0.5
    for epoch in range(1, args.epochs + 1):
        time.sleep(args.seconds_per_epoch)  # the training
        model = DriftExtrapolator(args.dim)
        with torch.no_grad():
            model.mix.weight.add_(noise * (0.5 / epoch))
        torch.save({"epoch": epoch, "model_state_dict": model.state_dict(), "args": {"dim": args.dim, "lr": 1e-3}}, args.out / f"epoch_{epoch:03d}.pt")
        print(f"epoch {epoch}: saved {args.out / f'epoch_{epoch:03d}.pt'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
