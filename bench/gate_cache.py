"""What the gate costs once the baselines are cached, and what a cold plumbing run costs, at seed scale.

    python bench/gate_cache.py --bank /work/seed/584545x768 --runs 2 > bench/gate_cache.md

Measures, each as a subprocess `pytest checks ...` timed with its peak RSS and the load before it:
  plumbing_cold   `-m plumbing` with an empty cache: no IVF is built (no --index given)
  ivf_build       the suite's IVF index, built once into the cache (timed in-process; informational)
  gate_run_dir    `-m gate` on a run directory of 5 checkpoints with no cached baselines: the session
                  computes the baselines and oracle once and each checkpoint only its own queries;
                  ratio = wall / floor of (fixed queries + 5 x model queries)
  gate_new_ckpt   `-m gate` on one checkpoint never gated before, baselines cached by an earlier
                  session; ratio = wall / floor of the model's own queries (its report's count)
  gate_serial / gate_xdist   two checkpoints, serial and `-n 2 --dist loadgroup`, caches warm
The floor is the plain numpy matmul of that many (Q, D) queries against the payload in blocks
(`bench.run_bench.floor_matmul`), timed right after the run it belongs to. Checkpoints are
random-weight mamba-xs models: the timing of a gate does not depend on what the model learned.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import load_average, machine_facts, run_child  # noqa: E402
from bench.run_bench import floor_matmul  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.3
TARGET_COLD_PLUMBING_S = 180.0


def write_checkpoints(directory: Path, count: int, dim: int, first_seed: int) -> list[Path]:
    import torch

    from lvmcore.artifacts.checkpoint import save_checkpoint
    from lvmcore.models import PRESETS, build_model

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        torch.manual_seed(first_seed + i)
        config = PRESETS["mamba-xs"](dim=dim)
        model = build_model(config)
        paths.append(save_checkpoint(directory / f"epoch_{i + 1:03d}.pt", {
            "model_config": config.to_dict(), "model_state": model.state_dict(), "epoch": i + 1, "step": 10 * (i + 1),
            "metrics": {}, "provenance": {"dim": dim}, "negatives_per_positive": 255,
        }))
    return paths


def floor_seconds(payload_dir: Path, queries: int) -> float:
    from lvmcore.artifacts.payload import load_payload

    payload = load_payload(payload_dir, check_finite=False)
    block = np.random.default_rng(0).standard_normal((queries, payload.dim), dtype=np.float32)
    began = time.perf_counter()
    floor_matmul(payload.vectors, block)
    return time.perf_counter() - began


def searched(report_root: Path) -> list[dict]:
    out = []
    for path in sorted(report_root.glob("*/report.json")):
        for rec in json.loads(path.read_text()).get("records", []):
            if rec.get("check") == "gate_figures":
                out.append(rec["details"].get("searched", {}))
    return out


def suite(args: argparse.Namespace, marker: str, cache: Path, reports: Path, run: str, *extra: str) -> dict:
    bank = args.bank
    command = [sys.executable, "-m", "pytest", "checks", "-m", marker, "-q", "-p", "no:cacheprovider",
               "--payload", str(bank / "payload"), "--eval-set", str(bank / "eval.npz"), "--train-data", str(bank / "train.json"),
               "--report-dir", str(reports), "--run-name", run, *extra]
    env = {**os.environ, "LVM_CHECKS_CACHE": str(cache)}
    env.pop("OMP_NUM_THREADS", None)
    child = run_child(command, env, REPO, args.timeout)
    print(f"  {run}: {child.seconds:.1f} s, rc {child.returncode}, peak RSS {child.peak_rss_bytes / 2**30:.2f} GiB, load before {child.load_before[0]:.2f}", file=sys.stderr, flush=True)
    return {"run": run, "seconds": child.seconds, "rc": child.returncode, "rss_gib": child.peak_rss_bytes / 2**30, "load": child.load_before[0], "tail": child.output_tail[-400:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lvm-gate-cache-bench"))
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    cache, reports = args.work / "cache", args.work / "reports"
    dim = int(json.loads((args.bank / "payload" / "manifest.json").read_text())["dim"])
    run_dir = args.work / "run"
    write_checkpoints(run_dir, 5, dim, first_seed=0)
    fresh = write_checkpoints(args.work / "fresh", args.runs + 2, dim, first_seed=100)
    rows = []

    rows.append(("plumbing_cold", suite(args, "plumbing", cache, reports, "plumbing-cold"), None))

    from lvmcore.artifacts.payload import load_payload
    from lvmcore.search.ivf import IVFBuild, cached_ivf

    began, load = time.perf_counter(), load_average()
    cached_ivf(load_payload(args.bank / "payload", check_finite=False), IVFBuild(), cache)
    rows.append(("ivf_build", {"seconds": time.perf_counter() - began, "rc": 0, "rss_gib": float("nan"), "load": load[0]}, None))

    result = suite(args, "gate", cache, reports, "run-dir", "--checkpoint", str(run_dir))
    counts = searched(reports / "run-dir")
    queries = counts[0].get("fixed_exact_queries", 0) + sum(c.get("exact_queries", 0) for c in counts)
    rows.append(("gate_run_dir (5 checkpoints)", result, (queries, floor_seconds(args.bank / "payload", queries))))

    for i in range(args.runs):
        result = suite(args, "gate", cache, reports, f"new-{i}", "--checkpoint", str(fresh[i]))
        queries = searched(reports / f"new-{i}")[0].get("exact_queries", 0)
        rows.append((f"gate_new_ckpt run {i + 1}", result, (queries, floor_seconds(args.bank / "payload", queries))))

    pair = args.work / "pair"
    pair.mkdir()
    for path in fresh[args.runs : args.runs + 2]:
        shutil.copy(path, pair / path.name)
    rows.append(("gate_serial (2 checkpoints)", suite(args, "gate", cache, reports, "serial", "--checkpoint", str(pair)), None))
    rows.append(("gate_xdist -n 2 --dist loadgroup (2 checkpoints)", suite(args, "gate", cache, reports, "xdist", "--checkpoint", str(pair), "-n", "2", "--dist", "loadgroup"), None))

    facts = machine_facts()
    print(f"Machine: {facts.get('model name', '?')}, {os.cpu_count()} cores. Bank: {args.bank} ({dim}-D). Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")
    print("| figure | wall (s) | exit | peak RSS (GiB) | load before | floor queries | floor (s) | ratio | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r, floor in rows:
        target, ratio = "", ""
        if floor is not None:
            ratio = f"{r['seconds'] / floor[1]:.2f}"
            target = f"<= {TARGET_RATIO}x floor: {'met' if r['seconds'] / floor[1] <= TARGET_RATIO else 'NOT met'}"
        if name == "plumbing_cold":
            target = f"<= {TARGET_COLD_PLUMBING_S:.0f} s: {'met' if r['seconds'] <= TARGET_COLD_PLUMBING_S else 'NOT met'}"
        fq = "" if floor is None else f"{floor[0]:,}"
        fs = "" if floor is None else f"{floor[1]:.1f}"
        print(f"| {name} | {r['seconds']:.1f} | {r['rc']} | {r['rss_gib']:.2f} | {r['load']:.2f} | {fq} | {fs} | {ratio} | {target} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
