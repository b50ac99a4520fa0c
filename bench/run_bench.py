"""One command for the scale benchmark: a table of figures, medians, ratios and targets.

    python bench/run_bench.py --rows 50000,150000,584545 --dims 768,384 --seed-root /work/seed \\
        --figures floor,peer,plumbing,gate --runs 3 --write bench/RESULTS.md

Figures per seed bank (`<seed-root>/<rows>x<dim>`, made with bench/make_seed_bank.py, or with
--make-missing):
  floor          queries (Q, D) @ payload.T in blocks: plain numpy, the same FLOPs as exact search
  exact_search   lvmcore.search.ivf.exact_search on the same queries, in the same runs; ratio = / floor
  peer           sentence-transformers InformationRetrievalEvaluator on the same embeddings;
                 ratio = our (search + R@K + MRR) / its time; the metrics must agree
  plumbing_cold  `pytest checks -m plumbing ...` with a fresh LVM_CHECKS_CACHE (IVF build included)
  plumbing_warm  the same, cache reused; both with the subprocess's peak RSS / payload bytes
  gate_warm      `pytest checks -m gate --checkpoint CKPT ...` warm; ratio = / the numpy floor for the
                 query count of the gate's one exact pass (read from its report.json), timed after each run
  ivf_build      lvmcore.search.ivf.build_ivf at the pipeline's nlist (2048 at 584,545 rows)
Every figure records the load average before each run: the machine may be shared.
Results append to --results (JSON lines); --write renders every recorded figure to Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python bench/run_bench.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import growth, rss_probe  # noqa: E402
from bench.measure import Timing, load_average, machine_facts, run_child, time_call  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("floor", "peer", "plumbing", "gate", "ivf")
def seed_scale(r: dict) -> bool:
    """A bank of at least 1 GiB: where memory targets are judged (below it the libraries alone, ~0.3 GiB, exceed 2.2x)."""
    return r["rows"] * r["dim"] * 4 >= 2**30


def rss_ok(r: dict) -> bool:
    """The 2.2x memory target, judged on seed-scale banks only."""
    return not seed_scale(r) or (r.get("rss_ratio") or 0) <= 2.2


RSS_TARGET = "RSS <= 2.2x (banks >= 1 GiB)"
TARGETS = {  # figure: (target text, test on the record)
    "exact_search": ("<= 1.5x floor", lambda r: r.get("ratio") is not None and r["ratio"] <= 1.5),
    "peer": ("<= 1x peer", lambda r: r.get("ratio") is not None and r["ratio"] <= 1.0),
    "plumbing_cold": (f"<= 180 s, {RSS_TARGET}", lambda r: r["median_s"] <= 180 and rss_ok(r)),
    "plumbing_warm": (f"<= 60 s, {RSS_TARGET}", lambda r: r["median_s"] <= 60 and rss_ok(r)),
    "gate_warm": (f"<= 1.5x floor, {RSS_TARGET}", lambda r: r.get("ratio") is not None and r["ratio"] <= 1.5 and rss_ok(r)),
    "seed_bank": ("RSS < 2x payload (banks >= 1 GiB)", lambda r: (r.get("rss_ratio") or 0) < 2.0 if seed_scale(r) else None),
}
SEARCH_FIGURES = ("floor", "exact_search", "peer")
ORDER = ("seed_bank", "floor", "exact_search", "peer", "ivf_build", "plumbing_cold", "plumbing_warm", "gate_cold", "gate_warm")  # gate_cold: only when no plumbing run built the index first


# ---------------------------------------------------------------- the measurements


def floor_matmul(vectors: np.ndarray, queries: np.ndarray, block_rows: int = 16_384) -> float:
    """Queries (Q, D) @ payload.T block by block, keeping nothing: the FLOPs of exact search and no more."""
    out = np.empty((len(queries), block_rows), dtype=np.float32)  # (Q, B)
    checksum = 0.0
    for start in range(0, len(vectors), block_rows):
        block = np.asarray(vectors[start : start + block_rows])  # (B, D)
        if len(block) == block_rows:
            np.matmul(queries, block.T, out=out)
            checksum += float(out[0, 0])
        else:
            checksum += float((queries @ block.T)[0, 0])
    return checksum


def bank_paths(seed_root: Path, rows: int, dim: int) -> dict[str, Path]:
    base = seed_root / f"{rows}x{dim}"
    return {"base": base, "payload": base / "payload", "eval": base / "eval.npz", "train": base / "train.json"}


def ensure_bank(paths: dict[str, Path], rows: int, dim: int, make_missing: bool) -> bool:
    if (paths["payload"] / "manifest.json").is_file() and paths["eval"].is_file():
        return True
    if not make_missing:
        print(f"  no seed bank at {paths['base']} (run bench/make_seed_bank.py --out {paths['base']} --rows {rows} --dim {dim}, or pass --make-missing)")
        return False
    from bench import make_seed_bank

    make_seed_bank.main(["--out", str(paths["base"]), "--rows", str(rows), "--dim", str(dim)])
    return True


def record(figure: str, rows: int, dim: int, timing: Timing | None = None, **extra: object) -> dict:
    rec: dict = {"figure": figure, "rows": rows, "dim": dim, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if timing is not None:
        rec |= {"median_s": timing.median, "runs_s": [round(s, 3) for s in timing.seconds], "load": timing.loads[0], "loads": timing.loads}
    rec["load_after"] = load_average()
    return rec | extra


def measure_floor_and_peer(paths: dict[str, Path], rows: int, dim: int, runs: int, k: int, query_limit: int, with_peer: bool) -> list[dict]:
    """floor, exact_search and (optionally) peer, interleaved run by run so load drift hits all alike."""
    from lvmcore.artifacts.evalset import load_eval_set
    from lvmcore.search.exact import exact_search
    from lvmcore.artifacts.payload import load_payload
    from lvmcore.search.hits import first_hit_rank, key_hits, mean_reciprocal_rank, recall_at

    payload = load_payload(paths["payload"], check_finite=False)
    eval_set = load_eval_set(paths["eval"], expected_dim=payload.dim)
    queries = np.ascontiguousarray(eval_set.contexts[:, -1])  # (Q, D) copy-last: a real query set
    truth = eval_set.truth_keys
    if query_limit:
        queries, truth = queries[:query_limit], truth[:query_limit]
    ks = tuple(x for x in (1, 5, 10) if x <= k)
    flops = 2.0 * len(queries) * payload.count * payload.dim
    np.asarray(payload.vectors[:: max(1, payload.count // 64)])  # touch: first run should not pay the disk alone
    floor, ours, peer_t = Timing(), Timing(), Timing()
    peer = None
    if with_peer:
        import warnings

        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        from bench.peer import build_peer, run_peer

        began = time.perf_counter()
        peer = build_peer(payload.vectors, payload.keys, queries, truth, ks)
        peer_setup_s = time.perf_counter() - began
    ours_metrics: dict[str, float] = {}
    peer_metrics: dict[str, float] = {}

    def our_pipeline() -> dict[str, float]:
        _, found = exact_search(payload.vectors, queries, k)
        ranks = first_hit_rank(key_hits(found, payload.keys, truth))
        return {f"R@{x}": recall_at(ranks, x) for x in ks} | {f"MRR@{k}": mean_reciprocal_rank(ranks)}

    for run in range(runs):
        time_call(lambda: floor_matmul(payload.vectors, queries), floor)
        ours_metrics = time_call(our_pipeline, ours)
        if peer is not None:
            peer_metrics = time_call(lambda: run_peer(peer), peer_t)
        print(f"  run {run + 1}/{runs}: floor {floor.seconds[-1]:.2f} s, ours {ours.seconds[-1]:.2f} s" + (f", peer {peer_t.seconds[-1]:.2f} s" if peer else "") + f"  load {load_average()}", flush=True)
    shape = {"queries": len(queries), "k": k, "payload_bytes": int(payload.vectors.nbytes)}
    out = [
        record("floor", rows, dim, floor, gflops=round(flops / floor.median / 1e9, 1), **shape),
        record("exact_search", rows, dim, ours, ratio=round(ours.median / floor.median, 3), ratio_of="exact_search / floor (same runs)", metrics=ours_metrics, **shape),
    ]
    if peer is not None:
        agree = all(abs(ours_metrics[name] - peer_metrics.get(name, math.nan)) < 1e-9 for name in ours_metrics)
        out.append(record("peer", rows, dim, peer_t, ratio=round(ours.median / peer_t.median, 3), ratio_of="ours (search + R@K + MRR) / InformationRetrievalEvaluator", metrics=peer_metrics, metrics_agree=agree, peer_setup_s=round(peer_setup_s, 2), **shape))
    return out


def suite_command(marker: str, paths: dict[str, Path], checkpoint: Path | None, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "pytest", "checks", "-m", marker, "--payload", str(paths["payload"]), "--eval-set", str(paths["eval"]), "--train-data", str(paths["train"]), "-q", "-p", "no:cacheprovider", *extra]
    if checkpoint is not None:
        command += ["--checkpoint", str(checkpoint)]
    return command


def not_measurable(run) -> str | None:
    """Why a suite run says nothing about speed (pytest exit 4: usage error, 5: no tests), else None."""
    if run.returncode == 5:
        return "no tests collected for this marker (suite not written yet?)"
    if run.returncode in (2, 3, 4):
        last = [line for line in run.output_tail.splitlines() if line.strip()][-1:] or ["?"]
        return f"pytest exit {run.returncode}: {last[0][:160]}"
    if run.returncode == -9:
        return "timed out"
    return None


def suite_outcome(run) -> str:
    tail = [line for line in run.output_tail.splitlines() if line.strip()]
    return tail[-1][:160] if tail else f"exit {run.returncode}"


def gate_record(report_root: Path) -> dict | None:
    """The gate_figures record (timings and query counts of the gate's one pass) from a run's report.json."""
    for path in sorted(report_root.glob("*/report.json")):
        for rec in json.loads(path.read_text()).get("records", []):
            if rec.get("check") == "gate_figures":
                return rec["details"]
    return None


def gate_floor(paths: dict[str, Path], queries: int) -> float:
    """Seconds of the plain numpy matmul the gate's exact pass needs: (queries, D) @ payload.T in blocks."""
    from lvmcore.artifacts.payload import load_payload

    payload = load_payload(paths["payload"], check_finite=False)
    rng = np.random.default_rng(0)
    query_block = rng.standard_normal((queries, payload.dim), dtype=np.float32)  # values do not change matmul time
    began = time.perf_counter()
    floor_matmul(payload.vectors, query_block)
    return time.perf_counter() - began


def measure_suite(marker: str, paths: dict[str, Path], rows: int, dim: int, runs: int, timeout: float, checkpoint: Path | None, payload_bytes: int, extra: list[str], cache: Path) -> list[dict]:
    """Runs of a check suite as a subprocess, sharing `cache` (LVM_CHECKS_CACHE) with the bank's other suites.

    If the cache holds no index yet, the first run builds it: that is plumbing_cold (for the gate,
    gate_cold, not a target). Then `runs` warm runs. Each warm gate run is followed by its floor:
    a numpy matmul of as many queries as that run's exact pass searched (read from its
    report.json), so the ratio compares like with like. Every run logs memory and time per test
    phase (bench/rss_probe.py).
    """
    out: list[dict] = []
    reports = cache / "reports"
    env = {**os.environ, "LVM_CHECKS_CACHE": str(cache), "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def probe_log(run_name: str) -> Path:
        return cache / f"rss-{marker}-{run_name}.jsonl"

    def command_for(run_name: str) -> list[str]:
        env["LVM_BENCH_RSS_LOG"] = str(probe_log(run_name))
        return suite_command(marker, paths, checkpoint, ["--report-dir", str(reports / marker), "--run-name", run_name, "-p", "bench.rss_probe", *extra])

    def phases(run_name: str) -> dict[str, list[str]]:
        log = probe_log(run_name)
        return {"memory_phases": rss_probe.summarize(log, payload_bytes), "slow_phases": rss_probe.slowest(log)} if log.is_file() else {}

    def peak_of(run, run_name: str) -> int:
        """The larger of getrusage's maximum and the probe's: the probe's resets lower the former."""
        log = probe_log(run_name)
        return max(run.peak_rss_bytes, rss_probe.run_peak(log) if log.is_file() else 0)

    def suite_fields(run, run_name: str) -> dict:
        peak = peak_of(run, run_name)
        return {"rss_ratio": round(peak / payload_bytes, 3), "peak_rss_bytes": peak, "exit": run.returncode, "outcome": suite_outcome(run), "payload_bytes": payload_bytes, **phases(run_name)}

    if not any((cache / "index").glob("*.faiss")):
        command = command_for("cold")
        first = run_child(command, env, REPO, timeout)
        print(f"  {marker} cold: exit {first.returncode} in {first.seconds:.1f} s, peak RSS {peak_of(first, 'cold') / 2**30:.2f} GiB: {suite_outcome(first)}", flush=True)
        reason = not_measurable(first)
        if reason:
            return [record(f"{marker}_cold", rows, dim, not_measurable=reason, command=" ".join(command))]
        out.append(record(f"{marker}_cold", rows, dim, Timing([first.seconds], [first.load_before]), command=" ".join(command), **suite_fields(first, "cold")))
    warm, floors, peak = Timing(), Timing(), 0
    gate_details: dict = {}
    for run in range(runs):
        command = command_for(f"warm-{run}")
        again = run_child(command, env, REPO, timeout)
        warm.add(again.seconds, again.load_before)
        run_peak = peak_of(again, f"warm-{run}")
        peak = max(peak, run_peak)
        line = f"  {marker} warm: exit {again.returncode} in {again.seconds:.1f} s, peak RSS {run_peak / 2**30:.2f} GiB: {suite_outcome(again)}"
        reason = not_measurable(again)
        if reason:
            print(line, flush=True)
            return out + [record(f"{marker}_warm", rows, dim, not_measurable=reason, command=" ".join(command))]
        if marker == "gate":
            gate_details = gate_record(reports / marker / f"warm-{run}") or {}
            queries = int(gate_details.get("searched", {}).get("exact_queries", 0))
            if queries:
                load = load_average()
                floors.add(gate_floor(paths, queries), load)
                line += f"; floor for its {queries:,} queries {floors.seconds[-1]:.1f} s"
        print(line, flush=True)
    extra_fields: dict = {}
    if marker == "gate" and floors.seconds:
        searched = gate_details.get("searched", {})
        extra_fields = {
            "ratio": round(warm.median / floors.median, 3),
            "ratio_of": f"warm gate suite wall time / numpy floor for the {searched.get('exact_queries', 0):,} queries of its exact pass (same runs)",
            "floor_s": round(floors.median, 2),
            "floor_runs_s": [round(x, 2) for x in floors.seconds],
            "searched": searched,
            "phase_seconds": {name: round(value, 2) for name, value in gate_details.get("seconds", {}).items()},
        }
    fields = suite_fields(again, f"warm-{runs - 1}") | {"peak_rss_bytes": peak, "rss_ratio": round(peak / payload_bytes, 3)}  # the highest of the warm runs
    out.append(record(f"{marker}_warm", rows, dim, warm, command=" ".join(command), **fields, **extra_fields))
    return out


def measure_ivf_build(paths: dict[str, Path], rows: int, dim: int, nlist: int | None) -> dict:
    from lvmcore.search.ivf import IVFBuild, build_ivf
    from lvmcore.artifacts.payload import load_payload

    payload = load_payload(paths["payload"], check_finite=False)
    config = IVFBuild(nlist=nlist)
    timing = Timing()
    time_call(lambda: build_ivf(payload.vectors, config), timing)
    return record("ivf_build", rows, dim, timing, nlist=config.lists_for(rows))


def seed_bank_record(paths: dict[str, Path], rows: int, dim: int) -> dict | None:
    report_path = paths["base"] / "seed_bank.json"
    if not report_path.is_file():
        return None
    report = json.loads(report_path.read_text())
    timing = Timing()
    timing.add(float(report["total_seconds"]), (math.nan, math.nan, math.nan))
    rec = record("seed_bank", rows, dim, timing, rss_ratio=report["peak_rss_over_payload"], peak_rss_bytes=report["peak_rss_bytes"], documents=report["documents"], length_median=report["length_median"], train_windows=report["train_windows"])
    rec["load"] = report.get("load", "not recorded")
    return rec


# ---------------------------------------------------------------- the report


def latest(records: list[dict]) -> list[dict]:
    """The newest record of each (figure, rows, dim)."""
    newest: dict[tuple, dict] = {}
    for rec in records:
        newest[(rec["figure"], rec["rows"], rec["dim"])] = rec
    return sorted(newest.values(), key=lambda r: (r["dim"] != 768, r["dim"], r["rows"], ORDER.index(r["figure"]) if r["figure"] in ORDER else 99))


def fmt_load(load: object) -> str:
    if isinstance(load, (list, tuple)) and len(load) == 3 and not any(isinstance(x, float) and math.isnan(x) for x in load):
        return " / ".join(f"{x:.2f}" for x in load)
    return "n/a"


def table(records: list[dict]) -> str:
    lines = ["| figure | rows x dim | median | runs | ratio | target | met | load 1/5/15 min before | notes |", "|---|---|---:|---:|---:|---|---|---|---|"]
    for rec in records:
        size = f"{rec['rows']:,} x {rec['dim']}"
        target, test = TARGETS.get(rec["figure"], ("", None))
        if rec.get("not_measurable"):
            lines.append(f"| {rec['figure']} | {size} | not yet measurable | | | {target} | | {fmt_load(rec.get('load_after'))} | {rec['not_measurable']} |")
            continue
        parts = [f"{rec['ratio']:.2f}x"] if rec.get("ratio") is not None else []
        if rec.get("rss_ratio") is not None:
            parts.append(f"RSS {rec['rss_ratio']:.2f}x payload")
        ratio = "; ".join(parts)
        verdict = test(rec) if test else None
        met = "" if verdict is None else ("yes" if verdict else "NO")
        notes = []
        if rec["figure"] == "floor":
            notes.append(f"{rec['gflops']} GFLOP/s, Q={rec['queries']}")
        if rec["figure"] == "exact_search":
            notes.append(", ".join(f"{name} {value:.3f}" for name, value in rec.get("metrics", {}).items()))
        if rec["figure"] == "peer":
            notes.append(f"metrics agree: {'yes' if rec.get('metrics_agree') else 'NO'}; evaluator setup incl. import {rec.get('peer_setup_s')} s (untimed)")
        if rec["figure"] == "gate_warm" and rec.get("floor_s") is not None:
            searched = rec.get("searched", {})
            phases = ", ".join(f"{name} {value:.1f}" for name, value in rec.get("phase_seconds", {}).items())
            notes.append(f"floor {rec['floor_s']:.2f} s for the {searched.get('exact_queries', 0):,} queries of its one exact pass; phases (s): {phases}")
        if rec["figure"].startswith(("plumbing", "gate")):
            notes.append(f"exit {rec.get('exit')}: {rec.get('outcome', '')}".replace("|", "/"))
        if rec["figure"] == "ivf_build":
            notes.append(f"nlist {rec['nlist']}")
        if rec["figure"] == "seed_bank":
            notes.append(f"{rec['documents']} docs, median length {rec['length_median']:.0f}, {rec['train_windows']:,} train windows")
        runs = len(rec.get("runs_s", []))
        lines.append(f"| {rec['figure']} | {size} | {rec['median_s']:.2f} s | {runs} | {ratio} | {target} | {met} | {fmt_load(rec.get('load'))} | {'; '.join(n for n in notes if n)} |")
    return "\n".join(lines)


def per_full_query_set(rec: dict, queries: int = 5244) -> float:
    """A search figure scaled to the public 5,244 queries (small banks hold fewer eval windows; search time is linear in Q)."""
    return rec["median_s"] * queries / rec["queries"] if rec.get("queries") else rec["median_s"]


def growth_section(records: list[dict], target_rows: int = 100_000_000) -> str:
    """Lines fitted per figure and dim, and a shard plan for `target_rows` vectors."""
    lines = ["| figure | dim | sizes | seconds = a + b*N | predicted at 100M rows |", "|---|---|---|---|---|"]
    lines_by: dict[tuple[str, int], growth.Line] = {}
    for figure in ("floor", "exact_search", "peer", "ivf_build", "plumbing_cold", "plumbing_warm", "gate_warm"):
        for dim in sorted({r["dim"] for r in records}, reverse=True):
            points = [(r["rows"], per_full_query_set(r) if figure in SEARCH_FIGURES else r["median_s"]) for r in records if r["figure"] == figure and r["dim"] == dim and "median_s" in r]
            line = growth.fit_line([p[0] for p in points], [p[1] for p in points])
            if line is None:
                continue
            lines_by[(figure, dim)] = line
            lines.append(f"| {figure} | {dim} | {len(points)} ({', '.join(f'{p[0]:,}' for p in sorted(points))}) | {line.intercept:.2f} + {line.slope * 1e6:.1f} s per M rows | {line.at(target_rows) / 3600:.1f} h on this machine |")
    out = ["## Growth", "", "Least-squares lines over the sizes measured above (medians). floor, exact_search and peer are", "scaled to the full 5,244 queries first (banks under ~80k rows hold fewer held-out windows, and", "search time is linear in the query count). Each figure carries the load average before it (about", "2 is the benchmark's own two busy cores); ivf_build uses the suite's default nlist (about 4*sqrt(N)), which grows", "faster than linearly.", "", "\n".join(lines), ""]
    out += ["### Memory", ""]
    rss_lines: dict[int, growth.Line] = {}
    for dim in (768, 384):
        points = [(r["rows"], r["peak_rss_bytes"]) for r in records if r["figure"] in ("plumbing_warm", "plumbing_cold") and r["dim"] == dim and r.get("peak_rss_bytes")]
        newest = {}
        for rows, rss in points:
            newest[rows] = max(rss, newest.get(rows, 0))
        line = growth.fit_line(list(newest), list(newest.values()))
        if line is not None:
            rss_lines[dim] = line
            out.append(f"- plumbing peak RSS, D={dim}: {line.intercept / growth.GIB:.2f} GiB + {line.slope * 1e6 / growth.GIB:.2f} GiB per M rows ({line.slope / (dim * 4):.2f}x the payload's bytes per row), from {len(newest)} sizes")
    out += ["", "### A 100M-vector payload", ""]
    for dim in (768, 384):
        time_line = lines_by.get(("exact_search", dim))
        plan = growth.plan_shards(target_rows, dim, rss_lines.get(dim), 2.2, time_line)
        memory_basis = "the fitted plumbing RSS line" if dim in rss_lines else "payload x 2.2, the RSS target (plumbing RSS not measured at two sizes)"
        search = f"{plan.seconds_one_machine / 3600:.1f} h on one machine like this one, {plan.seconds_per_rank / 60:.0f} min per rank with {plan.ranks} ranks" if plan.seconds_one_machine is not None else "not yet fitted"
        out.append(f"- D={dim}: payload {plan.payload_bytes / growth.GIB:,.0f} GiB; peak RSS {plan.rss_bytes / growth.GIB:,.0f} GiB ({memory_basis}); at 100 GiB per rank: **{plan.ranks} ranks**, {plan.rss_per_rank / growth.GIB:,.0f} GiB each; exact search of 5,244 queries: {search}.")
    return "\n".join(out)


def memory_section(records: list[dict]) -> str:
    """Where each suite's peak RSS is set (bench/rss_probe.py), for every suite run that logged it."""
    out = ["### Where the peak memory is", "", "For banks of 1 GiB or more: the test phases with the highest peak RSS (each phase's own peak, the kernel's mark reset before it), as a multiple of the payload's bytes.", ""]
    probed = [r for r in records if r.get("memory_phases") and seed_scale(r)]
    for rec in probed:
        out.append(f"- {rec['figure']} at {rec['rows']:,} x {rec['dim']} (whole run {rec['rss_ratio']:.2f}x):")
        out += [f"  - {line}" for line in rec["memory_phases"]]
    out += ["", "### Where the time is", "", "The slowest test phases of the same runs (setup includes session fixtures: payload load, IVF build or cache read, the gate's one evaluation).", ""]
    for rec in probed:
        out.append(f"- {rec['figure']} at {rec['rows']:,} x {rec['dim']} ({rec['median_s']:.1f} s wall):")
        out += [f"  - {line}" for line in rec.get("slow_phases", [])]
    return "\n".join(out + [""]) if probed else ""


def render(records: list[dict], facts: dict[str, str], still_to_measure: list[str]) -> str:
    newest = latest(records)
    out = [
        "# Scale benchmark results",
        "",
        "Generated by `python bench/run_bench.py ... --write bench/RESULTS.md` from the runs recorded in",
        "its results file; every figure is the median of its runs, with the load average before the first.",
        "",
        "## Machine",
        "",
        "\n".join(f"- {name}: {value}" for name, value in facts.items()),
        "",
        "## Figures",
        "",
        table(newest),
        "",
        growth_section(newest),
        "",
        memory_section(newest),
    ]
    if still_to_measure:
        out += ["## Notes on these runs", "", "\n".join(f"- {item}" for item in still_to_measure), ""]
    return "\n".join(out)


# ---------------------------------------------------------------- the command


def checkpoint_for(specs: list[str], dim: int) -> Path | None:
    """The gate checkpoint for this dimension: a DIM=PATH entry, else a plain PATH, else None."""
    plain = None
    for spec in specs:
        head, sep, tail = spec.partition("=")
        if sep and head.isdigit():
            if int(head) == dim:
                return Path(tail)
        else:
            plain = Path(spec)
    return plain


def parse_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=parse_ints, default=[50_000, 150_000, 584_545])
    parser.add_argument("--dims", type=parse_ints, default=[768, 384])
    parser.add_argument("--seed-root", type=Path, default=Path("/work/seed"))
    parser.add_argument("--figures", default="floor,peer,plumbing,gate", help=f"comma list of {','.join(FIGURES)} (floor includes exact_search)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    parser.add_argument("--runs-large", type=int, default=None, help="runs for banks of >= 300,000 rows (default: --runs)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--query-limit", type=int, default=0, help="time only the first N eval queries (0: all)")
    parser.add_argument("--checkpoint", action="append", default=[], help="checkpoint for the gate suite: PATH, or DIM=PATH per dimension (repeatable)")
    parser.add_argument("--suite-timeout", type=float, default=1800.0)
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists for ivf_build and the suites (default: the suite's own; 2048 is the public pipeline's)")
    parser.add_argument("--make-missing", action="store_true", help="generate missing seed banks")
    parser.add_argument("--results", type=Path, default=REPO / "reports" / "bench-results.jsonl")
    parser.add_argument("--write", type=Path, default=None, help="render every recorded figure to this Markdown file")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--todo", action="append", default=[], help="a line for the 'Notes on these runs' section")
    parser.add_argument("--append", type=Path, action="append", default=[], help="a Markdown file appended to --write verbatim (figures from other bench scripts)")
    args = parser.parse_args(argv)
    figures = {f.strip() for f in args.figures.split(",") if f.strip()}
    unknown = figures - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {sorted(unknown)}; choose from {FIGURES}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    new: list[dict] = []
    if not args.render_only:
        for dim in args.dims:
            for rows in args.rows:
                paths = bank_paths(args.seed_root, rows, dim)
                print(f"== {rows:,} x {dim}  load {load_average()}", flush=True)
                if not ensure_bank(paths, rows, dim, args.make_missing):
                    continue
                runs = args.runs_large if (args.runs_large and rows >= 300_000) else args.runs
                payload_bytes = rows * dim * 4
                batch: list[dict] = []
                bank = seed_bank_record(paths, rows, dim)
                if bank:
                    batch.append(bank)
                if "floor" in figures or "peer" in figures:
                    batch += measure_floor_and_peer(paths, rows, dim, runs, args.k, args.query_limit, "peer" in figures)
                if "ivf" in figures:
                    batch.append(measure_ivf_build(paths, rows, dim, args.nlist))
                suite_extra = ["--nlist", str(args.nlist)] if args.nlist else []
                checkpoint = checkpoint_for(args.checkpoint, dim)
                with tempfile.TemporaryDirectory(prefix="lvm-bench-cache-") as cache:  # one index build per bank
                    if "plumbing" in figures:
                        batch += measure_suite("plumbing", paths, rows, dim, runs, args.suite_timeout, None, payload_bytes, suite_extra, Path(cache))
                    if "gate" in figures:
                        if checkpoint is None:
                            batch.append(record("gate_warm", rows, dim, not_measurable=f"no {dim}-D checkpoint: train one with `python -m train --preset mamba-xs --epochs 1 --payload ...` and pass --checkpoint {dim}=PATH"))
                        else:
                            batch += measure_suite("gate", paths, rows, dim, runs, args.suite_timeout, checkpoint, payload_bytes, suite_extra, Path(cache))
                with args.results.open("a") as out:
                    for rec in batch:
                        out.write(json.dumps(rec) + "\n")
                new += batch
        print(table(latest(new)) if new else "(nothing measured)")
    if args.write:
        records = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()] if args.results.is_file() else []
        extra = "".join("\n" + path.read_text() for path in args.append)
        args.write.write_text(render(records, machine_facts(), args.todo) + extra)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
