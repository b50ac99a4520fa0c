"""What a cheaper IVF build costs in agreement: build time against the plumbing check's own measure.

    python bench/ivf_tradeoff.py --bank /work/seed/584545x768 --nlist 3058 \\
        --settings 256x10,128x10,64x10,256x5

Each setting is POINTS_PER_LIST x ITERATIONS of the k-means that places the lists (the suite's
--ivf-train-points and --ivf-train-iterations). For each it builds the index with
`lvmcore.search.ivf.build_ivf`, times training plus adding every row, and measures what
`test_ivf_agrees_with_exact_search` measures: the share of exact top-10 rows that IVF at
--nprobe also returns, on the same 1,000 mean-of-context eval queries. It prints one Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/ivf_tradeoff.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import load_average  # noqa: E402
from lvmcore.artifacts.evalset import load_eval_set  # noqa: E402
from lvmcore.search.agreement import AGREEMENT_K, agreement_queries, top_k_row_agreement  # noqa: E402
from lvmcore.search.ivf import IVFBuild, build_ivf, list_imbalance  # noqa: E402
from lvmcore.artifacts.payload import load_payload  # noqa: E402


def parse_setting(text: str) -> tuple[int, int]:
    points, _, iterations = text.partition("x")
    return int(points), int(iterations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bank", type=Path, required=True, help="a seed bank folder (payload/, eval.npz)")
    parser.add_argument("--nlist", type=int, default=None, help="lists (default: the suite's, about 4*sqrt(N))")
    parser.add_argument("--nprobe", type=int, default=64)
    parser.add_argument("--settings", default="256x10,128x10,64x10,256x5", help="comma list of POINTS_PER_LIST x ITERATIONS")
    args = parser.parse_args(argv)
    payload = load_payload(args.bank / "payload", check_finite=False)
    eval_set = load_eval_set(args.bank / "eval.npz", expected_dim=payload.dim)
    queries = agreement_queries(eval_set.contexts)  # the plumbing check's queries
    lines = [
        f"IVF builds over {payload.count:,} x {payload.dim}, nprobe {args.nprobe}, top-{AGREEMENT_K} agreement on {len(queries):,} mean-of-context queries",
        "",
        "| nlist | points per list | iterations | build (train + add) | agreement | list imbalance | load before |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for points, iterations in map(parse_setting, args.settings.split(",")):
        config = IVFBuild(nlist=args.nlist, train_points_per_list=points, train_iterations=iterations)
        load = load_average()
        began = time.perf_counter()
        index = build_ivf(payload.vectors, config)
        seconds = time.perf_counter() - began
        agreement = top_k_row_agreement(index, payload.vectors, queries, AGREEMENT_K, args.nprobe)
        lines.append(f"| {config.lists_for(payload.count):,} | {points} | {iterations} | {seconds:.1f} s | {100 * agreement:.2f}% | {list_imbalance(index):.2f} | {' / '.join(map(str, load))} |")
        print(lines[-1], flush=True)
        del index
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
