"""What `lvm-checks watch` costs per checkpoint, and whether its memory stays flat, measured in one process.

    python bench/watch_cost.py memory --checkpoints 50            # the embedded bank: RSS after each of 50 gates
    python bench/watch_cost.py speed --bank /tmp/seed/584545x768   # seed scale: 5 checkpoints copied in one by one

memory  50 checkpoints of distinct random weights (the gru preset) are copied into an empty folder one
        at a time, each after the previous is gated; the process's resident set (VmRSS) is read after
        every gate. Flat means the last 40 gates' least-squares slope is ~0 MiB per checkpoint.
speed   the seed bank's IVF index is built into the cache first (as the first plumbing or gate run
        does), the baselines cache is empty; 5 random-weight mamba-xs checkpoints are copied in one
        at a time. Targets (issue 19): each later checkpoint's gate <= 1.3x the floor of its own exact
        queries; the whole run of 5 (first copy to fifth verdict) <= 1.2x the floor of (baselines and
        oracle once + 5 x model). The floor is the plain numpy matmul of that many (Q, D) queries
        against the payload (`bench.run_bench.floor_matmul`), timed after the watch. The per-phase
        seconds come from each checkpoint's report (`gate_figures.seconds`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import load_average, machine_facts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET_NEW = 1.3
TARGET_RUN = 1.2


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_gru_checkpoints(directory: Path, count: int, dim: int) -> list[Path]:
    import torch

    from lvmcore.artifacts.checkpoint import save_checkpoint
    from lvmcore.models import PRESETS, build_model

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        torch.manual_seed(i)
        config = PRESETS["gru"](dim=dim)
        model = build_model(config)
        paths.append(save_checkpoint(directory / f"epoch_{i + 1:03d}.pt", {
            "model_config": config.to_dict(), "model_state": model.state_dict(), "epoch": i + 1, "step": i + 1,
            "metrics": {}, "provenance": {"dim": dim}, "negatives_per_positive": 255,
        }))
    return paths


def watch_fed(staged: list[Path], run_dir: Path, pytest_args: list[str], after_gate=None):
    """Run a watcher in this thread while a feeder copies `staged` in one by one, each after the previous verdict."""
    from lvm_checks.suite import locate
    from lvm_checks.watch import Watcher, WatchOptions

    run_dir.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    watcher = Watcher(WatchOptions(run_dir=run_dir, report_dir=run_dir / "reports", settle_s=0.0, poll_s=0.1, pytest_args=pytest_args), locate(), out=log)
    marks: list[float] = []

    def feed() -> None:
        for i, path in enumerate(staged):
            while len(watcher.history) < i:
                time.sleep(0.05)
            marks.append(time.perf_counter())
            shutil.copy(path, run_dir / path.name)
        while len(watcher.history) < len(staged):
            time.sleep(0.05)
        (run_dir / "TRAINING_DONE").write_text("{}")

    original = watcher.gate

    def gate(path: Path):
        result = original(path)
        if result is not None and after_gate is not None:
            after_gate(result)
        return result

    watcher.gate = gate  # type: ignore[method-assign]
    feeder = threading.Thread(target=feed, daemon=True)
    began = time.perf_counter()
    feeder.start()
    code = watcher.run()
    ended = time.perf_counter()
    feeder.join()
    return watcher, code, marks, began, ended, log.getvalue()


def memory(args: argparse.Namespace) -> int:
    from lvmcore.default_data import DEFAULT_DATA

    work = args.work / "memory"
    shutil.rmtree(work, ignore_errors=True)
    dim = int(json.loads((DEFAULT_DATA / "payload" / "manifest.json").read_text())["dim"])
    staged = write_gru_checkpoints(work / "staged", args.checkpoints, dim)
    samples: list[float] = []
    watcher, code, _, began, ended, log = watch_fed(staged, work / "run", ["--index-cache", str(work / "cache")],
                                                    after_gate=lambda g: samples.append(rss_mib()))
    rss = np.asarray(samples)
    tail = rss[10:] if len(rss) > 20 else rss
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) > 1 else float("nan")
    seconds = [g.seconds for g in watcher.history]
    print(f"Machine: {machine_facts().get('model name', '?')}, {os.cpu_count()} cores; load before {load_average()[0]:.2f}. "
          f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Embedded bank, {len(seconds)} checkpoints gated, exit {code}.\n")
    print("| after gate | 1 | 2 | 10 | 25 | 50 (last) | slope over gates 11-50 | gate wall: first / median of the rest |")
    print("|---|---|---|---|---|---|---|---|")
    pick = lambda i: f"{rss[min(i, len(rss)) - 1]:.0f} MiB"  # noqa: E731
    print(f"| VmRSS | {pick(1)} | {pick(2)} | {pick(10)} | {pick(25)} | {pick(len(rss))} | {slope:+.2f} MiB per checkpoint | "
          f"{seconds[0]:.2f} s / {float(np.median(seconds[1:])):.2f} s |")
    print(f"\nhits on the warm store: {watcher.store.hits}")
    return 0


def floor_seconds(vectors: np.ndarray, queries: int) -> float:
    from bench.run_bench import floor_matmul

    block = np.random.default_rng(0).standard_normal((queries, vectors.shape[1]), dtype=np.float32)
    began = time.perf_counter()
    floor_matmul(vectors, block)
    return time.perf_counter() - began


def speed(args: argparse.Namespace) -> int:
    from bench.gate_cache import write_checkpoints
    from lvmcore.artifacts.payload import load_payload
    from lvmcore.search.ivf import IVFBuild, cached_ivf

    bank = args.bank
    work = args.work / "speed"
    shutil.rmtree(work, ignore_errors=True)
    cache = work / "cache"
    dim = int(json.loads((bank / "payload" / "manifest.json").read_text())["dim"])
    staged = write_checkpoints(work / "staged", args.checkpoints, dim, first_seed=0)
    if args.ivf_cache is not None:  # an IVF index an earlier run built (cache/index/); the baselines cache stays empty
        shutil.copytree(args.ivf_cache / "index", cache / "index")
    began = time.perf_counter()
    cached_ivf(load_payload(bank / "payload", check_finite=False), IVFBuild(), cache)
    ivf_build = time.perf_counter() - began
    load_before = load_average()[0]
    options = ["--payload", str(bank / "payload"), "--eval-set", str(bank / "eval.npz"), "--train-data", str(bank / "train.json"),
               "--index-cache", str(cache)]
    watcher, code, marks, began, ended, log = watch_fed(staged, work / "run", options)
    gates = work / "run" / "reports" / "gates"
    rows = []
    fixed_queries = 0
    for g in watcher.history:
        figures = next(r for r in json.loads((gates / g.subject / "report.json").read_text())["records"] if r.get("check") == "gate_figures")["details"]
        searched = figures.get("searched", {})
        fixed_queries = max(fixed_queries, int(searched.get("fixed_exact_queries", 0)))
        rows.append((g, int(searched.get("exact_queries", 0)), figures.get("seconds", {})))
    payload = load_payload(bank / "payload", check_finite=False)
    floors = {q: floor_seconds(payload.vectors, q) for q in sorted({q for _, q, _ in rows} | {fixed_queries})}
    run_floor = floors[fixed_queries] + sum(floors[q] for _, q, _ in rows)
    run_wall = ended - marks[0] if marks else float("nan")
    print(f"Machine: {machine_facts().get('model name', '?')}, {os.cpu_count()} cores; load before the watch {load_before:.2f}, after {load_average()[0]:.2f}. "
          f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Bank {bank} ({dim}-D); IVF built (or read from --ivf-cache) into the cache first in {ivf_build:.1f} s; exit {code}.\n")
    print("| checkpoint | gate wall (s) | exact queries | floor (s) | ratio | target | phases (s) |")
    print("|---|---|---|---|---|---|---|")
    for i, (g, queries, phases) in enumerate(rows):
        ratio = g.seconds / floors[queries]
        target = "first: pays the fixed costs" if i == 0 else f"<= {TARGET_NEW}x: {'met' if ratio <= TARGET_NEW else 'NOT met'}"
        shown = ", ".join(f"{k} {v:.1f}" for k, v in phases.items() if isinstance(v, (int, float)))
        print(f"| {g.subject} | {g.seconds:.1f} | {queries:,} | {floors[queries]:.1f} | {ratio:.2f} | {target} | {shown} |")
    ratio = run_wall / run_floor
    print(f"\nRun of {len(rows)}: {run_wall:.1f} s from the first copy to the last verdict; floor of ({fixed_queries:,} fixed + "
          f"{' + '.join(f'{q:,}' for _, q, _ in rows)}) queries {run_floor:.1f} s; ratio {ratio:.2f}, target <= {TARGET_RUN}x: "
          f"{'met' if ratio <= TARGET_RUN else 'NOT met'}.")
    print(f"hits on the warm store: {watcher.store.hits}")
    from lvmcore.search import screened

    print(f"exact search's bfloat16 screen ({screened.SWITCH}={os.environ.get(screened.SWITCH, 'auto')}): probe says it pays: {screened.bf16_pays()}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("memory", "speed"))
    parser.add_argument("--bank", type=Path, help="a seed bank folder (bench/make_seed_bank.py), for speed")
    parser.add_argument("--checkpoints", type=int, default=None, help="memory: 50, speed: 5")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lvm-watch-bench"))
    parser.add_argument("--ivf-cache", type=Path, default=None, help="speed: a cache folder whose index/ holds this bank's IVF (skips the build)")
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    if args.what == "memory":
        args.checkpoints = args.checkpoints or 50
        return memory(args)
    if args.bank is None:
        parser.error("speed needs --bank")
    args.checkpoints = args.checkpoints or 5
    return speed(args)


if __name__ == "__main__":
    raise SystemExit(main())
