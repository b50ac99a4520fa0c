"""`python -m train ...`: train a latent vector model; see `python -m train --help`.

Under torchrun (`torchrun --nproc-per-node N -m train ...`) every process joins the group and the
targets of all processes become negatives. User-caused problems and divergence print one line.

When the run ends (finished, diverged, or stopped by an artifact error) the main process writes
`OUT/TRAINING_DONE` (JSON: status, epochs, time), the sentinel `lvm-checks watch OUT` stops on once
every checkpoint is gated; `--resume` and `--overwrite` remove it first (the run goes on, or starts over).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lvmcore.errors import ArtifactError
from lvmcore.files import write_json_atomic
from .config import config_from_args
from .ddp import shutdown_distributed
from .loop import TrainingDiverged, train
from .validation import BEST_BY


SENTINEL = "TRAINING_DONE"  # lvm_checks/watch.py stops on it


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def write_sentinel(out: Path, status: str, epochs: int | None) -> None:
    """Tell a watcher the run has ended (only when the run folder exists: a run refused at the start has none)."""
    if is_main_process() and Path(out).is_dir():
        write_json_atomic(Path(out) / SENTINEL, {"status": status, "epochs": epochs, "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_args(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if (config.resume or config.overwrite) and is_main_process():  # the run goes on, or starts over: a watcher must not stop
        (Path(config.out) / SENTINEL).unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        history = train(config)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        write_sentinel(config.out, "error", None)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        write_sentinel(config.out, "diverged", None)
        return 1
    finally:
        shutdown_distributed()
    write_sentinel(config.out, "finished", len(history["epochs"]))
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
