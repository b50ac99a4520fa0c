"""`python -m lvmcore.ingest`: turn documents into a payload bank, training specs and an eval set.

    python -m lvmcore.ingest --source default --out fixtures/data/default
    python -m lvmcore.ingest --source folder --input my_texts/ --out runs/my_bank
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

from lvmcore.artifacts.training_data import MAX_CONTEXT_LENGTH
from lvmcore.errors import ArtifactError
from lvmcore.ingest.build import DEFAULT_BUDGET_BYTES, build_bank, package_versions, prepare_documents, refuse_without_windows, with_benchmark
from lvmcore.ingest.chunking import DEFAULT_CHUNK_CHARS
from lvmcore.ingest.encoder import BACKENDS, TextEncoder
from lvmcore.progress import LineProgress, listen


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lvmcore.ingest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=("folder", "jsonl", "wiki", "sotu", "default"), help="where the documents come from; default = wiki + sotu")
    parser.add_argument("--input", help="folder of .txt/.md files, a .jsonl file, or (wiki) another enwiki .xml.bz2 dump")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--context", type=int, default=5, help="context length C of every window (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the article split and eval subset (default 0)")
    parser.add_argument("--chunk-chars", type=int, default=DEFAULT_CHUNK_CHARS, help="chunk size in characters (default 600)")
    parser.add_argument("--encoder", choices=BACKENDS, default="onnx", help="onnx (fast, exported once into the cache) or torch (reference)")
    parser.add_argument("--benchmark", type=int, default=0, metavar="N", help="first time both encoders on N chunks and record chunks/s")
    parser.add_argument("--budget-mib", type=float, default=DEFAULT_BUDGET_BYTES / 2**20, help="size cap of the default bank; speeches are dropped to fit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    problem = option_problem(args)
    if problem:
        parser.exit(2, f"error: {problem}\n")
    return args


def option_problem(args: argparse.Namespace) -> str | None:
    """The first option that cannot work, in words (None when all can): checked before any document is read."""
    if not 1 <= args.context <= MAX_CONTEXT_LENGTH:
        return f"--context {args.context}: expected a context length from 1 to {MAX_CONTEXT_LENGTH}"
    if args.chunk_chars < 1:
        return f"--chunk-chars {args.chunk_chars}: expected a positive number of characters"
    if not (math.isfinite(args.budget_mib) and args.budget_mib > 0):
        return f"--budget-mib {args.budget_mib}: expected a positive size in MiB"
    if args.seed < 0:
        return f"--seed {args.seed}: expected an integer >= 0"
    if args.benchmark < 0:
        return f"--benchmark {args.benchmark}: expected a number of chunks >= 0"
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return f"--out {out}: is a file, expected the output directory"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        ordered, sources = prepare_documents(
            args.source, args.input, chunk_chars=args.chunk_chars, context_length=args.context, seed=args.seed, budget_bytes=int(args.budget_mib * 2**20)
        )
        refuse_without_windows(ordered, args.context, args.seed)  # every refusal comes before a model loads (or is exported)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop_listening = None if args.no_progress else listen(LineProgress(sys.stderr, prefix="ingest"))
    try:
        recipe = {"command": "python -m lvmcore.ingest " + shlex.join(argv), "chunk_chars": args.chunk_chars, "split": "by article: train 0.8, validation 0.1, eval 0.1", "packages": package_versions()}
        if args.benchmark:
            recipe = with_benchmark(recipe, ordered, args.benchmark)
        summary = build_bank(
            ordered, args.out, source=args.source, encoder=TextEncoder(args.encoder), context_length=args.context, seed=args.seed, recipe=recipe, sources=sources, progress=not args.no_progress
        )
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if stop_listening is not None:
            stop_listening()
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    summary["throughput_chunks_per_s"] = recipe.get("throughput_chunks_per_s")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
