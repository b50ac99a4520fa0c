"""What the prediction-health figures (lvmcore.gate.health) add to one checkpoint's gate at seed scale.

Synthetic arrays of the public run's shape (5,244 eval rows, C = 5, D = 768, 584,545 payload keys of
8,447 articles); the figures do not depend on the values, only on the shapes. Prints the median of
`--repeat` runs: `python bench/health_cost.py`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lvmcore.gate.health import prediction_health
from lvmcore.vectors import l2_normalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_244)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--payload", type=int, default=584_545)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    per_article = 70
    keys = np.stack([np.arange(args.payload) // per_article, np.arange(args.payload) % per_article], axis=1)
    truth = keys[np.sort(rng.choice(args.payload, args.rows, replace=False))]
    contexts = l2_normalize(rng.normal(size=(args.rows, 5, args.dim)).astype(np.float32))
    targets = l2_normalize(rng.normal(size=(args.rows, args.dim)).astype(np.float32))
    preds = l2_normalize(targets + rng.normal(size=targets.shape).astype(np.float32))
    top = rng.integers(0, args.payload, (args.rows, 50))
    ranks = rng.integers(0, 51, args.rows)
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        prediction_health(preds, contexts, targets, truth, targets, np.ones(args.rows, bool), 0.5, top, ranks, keys)
        seconds.append(time.perf_counter() - start)
    print(f"prediction health, {args.rows:,} rows x {args.dim} dims, {args.payload:,} payload keys: median {statistics.median(seconds):.2f} s over {args.repeat} runs")


if __name__ == "__main__":
    main()
