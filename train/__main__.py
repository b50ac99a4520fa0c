"""`python -m train ...`: train a latent vector model; see `python -m train --help`.

Under torchrun (`torchrun --nproc-per-node N -m train ...`) every process joins the group and the
targets of all processes become negatives. User-caused problems and divergence print one line.

When a run that started ends (finished, diverged, or stopped by an artifact error) the main process
writes `OUT/TRAINING_DONE` (JSON: status, epochs, time; `train/loop.py::Trainer.mark_ended`), the
sentinel `lvm-checks watch OUT` stops on; a resumed or restarted run removes it as it starts.
"""

from __future__ import annotations

import sys
import time

from lvmcore.errors import ArtifactError
from .config import config_from_args
from .ddp import shutdown_distributed
from .loop import TrainingDiverged, train
from .validation import BEST_BY


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_args(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        history = train(config)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutdown_distributed()
    rows = history["epochs"]
    if rows:
        best = max(rows, key=lambda r: r.get(BEST_BY, -1.0))
        print(
            f"done in {time.perf_counter() - started:.1f} s: {len(rows)} epoch(s), best epoch {best['epoch']} by validation R@5 over copy-last, context excluded: "
            f"paired lower bound {100 * best.get(BEST_BY, float('nan')):+.2f} points (R@5 excluded {best.get('val_excluded_r_at_5', float('nan')):.4f}, "
            f"raw {best['val_r_at_5']:.4f}, R@1 {best['val_r_at_1']:.4f}, cosine {best['val_cosine']:.4f}); {config.out}/history.json"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
