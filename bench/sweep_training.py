"""Training sweep on the embedded bank: train one configuration (or a grid), judge it on the held-out eval set.

    python bench/sweep_training.py --preset mamba-xs --loss bank --temperature 0.05 --epochs 4
    python bench/sweep_training.py --grid --results bench/sweep_results.jsonl     # the grid in GRID, ~25 min on 2 cores
    python bench/sweep_training.py --table bench/sweep_results.jsonl               # the markdown table of bench/SWEEP.md

Each configuration trains with `python -m train`'s own loop (`train.loop.train`) on the default
bank's training articles, then the checkpoint of its LAST epoch is judged on the 421 held-out eval
rows (`fixtures/data/default/eval.npz`) by exact inner-product search over the whole payload,
hits by key, in two views:

* raw: R@5 of the top 5 as searched;
* context-excluded: the top 50 + C searched, every row whose key is one of the query's own C
  context keys dropped, then R@5 of what is left. A residual model starts at copy-last, whose
  top 1 is the query's own last chunk; this view asks whether the next chunk is the best
  chunk the model did not just read.

Both views are given for the model and for copy-last (the last context vector), with a paired
bootstrap 95% interval of (model - copy-last) over the same eval rows (2,000 resamples, seeded).
One JSON line per configuration is appended to --results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from fixtures import DEFAULT_DATA  # noqa: E402
from lvmcore.artifacts.checkpoint import load_checkpoint  # noqa: E402
from lvmcore.artifacts.evalset import load_eval_set  # noqa: E402
from lvmcore.artifacts.payload import load_payload  # noqa: E402
from lvmcore.gate.predict import encode_bank, predict  # noqa: E402
from lvmcore.keys import pack_keys  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.loop import train  # noqa: E402

try:  # the exact search is moving from lvmcore.search.ivf to lvmcore.search.exact
    from lvmcore.search.exact import exact_search  # noqa: E402
except ImportError:  # pragma: no cover - older layout
    from lvmcore.search.ivf import exact_search  # noqa: E402

K = 5
RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Run:
    """One configuration of the sweep: what `python -m train` is told."""

    preset: str = "mamba-xs"
    loss: str = "bank"
    residual: bool = True
    temperature: float = 0.05
    epochs: int = 2
    lr: float = 1e-3
    bank_negatives: int | None = None
    seed: int = 0

    @property
    def name(self) -> str:
        bank = "" if self.loss != "bank" or self.bank_negatives is None else f"-s{self.bank_negatives}"
        return f"{self.preset}-{self.loss}{bank}-{'res' if self.residual else 'plain'}-t{self.temperature:g}-e{self.epochs}-lr{self.lr:g}-seed{self.seed}"

    def train_arguments(self) -> list[str]:
        """The `python -m train` arguments of this configuration (besides --out)."""
        args = ["--preset", self.preset, "--epochs", str(self.epochs), "--loss", self.loss, "--temperature", f"{self.temperature:g}", "--lr", f"{self.lr:g}"]
        if not self.residual:
            args.append("--no-residual")
        if self.loss == "bank" and self.bank_negatives is not None:
            args += ["--bank-negatives", str(self.bank_negatives)]
        if self.seed:
            args += ["--seed", str(self.seed)]
        return args

    def command(self) -> str:
        return "python bench/sweep_training.py " + " ".join(a for a in self.train_arguments())


# The grid actually run for bench/SWEEP.md (pruned to ~25 minutes on 2 cores): stage "main", then
# stage "seeds", which repeats the closest candidates of "main" with two more seeds.
def grid(stage: str = "all") -> list[Run]:
    main_stage = main_grid()
    seeds = [
        Run(preset=preset, loss="bank", residual=True, temperature=temperature, epochs=epochs, seed=seed)
        for preset, temperature, epochs in (("lstm", 0.05, 4), ("lstm", 0.05, 2), ("gru", 0.05, 2), ("gru", 0.05, 4), ("mamba-xs", 0.03, 2), ("mamba-xs", 0.05, 2))
        for seed in (1, 2)
    ]
    return {"main": main_stage, "seeds": seeds, "all": main_stage + seeds}[stage]


def main_grid() -> list[Run]:
    runs: list[Run] = []
    # mamba-xs, the demo's model: the old default, each change alone, then temperature and epochs
    runs += [Run(loss="in_batch", residual=False, temperature=0.07, epochs=2)]  # the demo before this change
    runs += [Run(loss="in_batch", residual=True, temperature=0.07, epochs=2)]
    runs += [Run(loss="bank", residual=False, temperature=0.05, epochs=2)]
    runs += [Run(loss="bank", residual=True, temperature=t, epochs=e) for e in (2, 4) for t in (0.03, 0.05, 0.07)]
    runs += [Run(loss="in_batch", residual=True, temperature=0.05, epochs=4)]
    runs += [Run(loss="bank", residual=True, temperature=0.05, epochs=4, lr=3e-3)]
    runs += [Run(loss="bank", residual=True, temperature=0.05, epochs=8)]
    runs += [Run(loss="bank", residual=True, temperature=0.05, epochs=4, bank_negatives=2048)]  # the sampled bank
    # seed spread of the likely default
    runs += [Run(loss="bank", residual=True, temperature=0.05, epochs=4, seed=s) for s in (1, 2)]
    # the rivals: old recipe (in-batch, plain head) vs the new one (bank, residual)
    for preset in ("gru", "lstm", "transformer", "two-tower"):
        runs += [Run(preset=preset, loss="in_batch", residual=False, temperature=0.07, epochs=2)]
        runs += [Run(preset=preset, loss="bank", residual=True, temperature=0.05, epochs=e) for e in (2, 4)]
        if preset in ("gru", "transformer"):
            runs += [Run(preset=preset, loss="bank", residual=True, temperature=0.03, epochs=4)]
    return runs


# ------------------------------------------------------------------ evaluation


def paired_bootstrap(model_hits: np.ndarray, baseline_hits: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(mean difference, low, high): percentile 95% interval of mean(model - baseline) over resampled eval rows.

    Paired: each resample draws row indices once and takes both systems' hits on those rows.
    """
    difference = np.asarray(model_hits, dtype=np.float64) - np.asarray(baseline_hits, dtype=np.float64)  # (M,)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(difference), size=(resamples, len(difference)))  # (R, M)
    means = difference[draws].mean(axis=1)  # (R,)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(difference.mean()), float(low), float(high)


def hits_at_k(rows: np.ndarray, payload_codes: np.ndarray, truth_codes: np.ndarray, context_codes: np.ndarray, exclude_context: bool, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Per eval row: hit in the top k (M,) bool, and whether the top 1 is one of the row's context chunks (M,) bool.

    rows (M, L) searched payload rows, best first (-1 = none); with exclude_context the rows whose key is one
    of the query's context keys are dropped before taking the top k.
    """
    valid = rows >= 0  # (M, L)
    codes = np.where(valid, payload_codes[np.maximum(rows, 0)], -1)  # (M, L)
    is_context = (codes[:, :, None] == context_codes[:, None, :]).any(axis=2) & valid  # (M, L)
    keep = valid & ~is_context if exclude_context else valid  # (M, L)
    hits = np.zeros(len(rows), dtype=bool)
    for i in range(len(rows)):
        kept = codes[i][keep[i]][:k]  # the first k kept rows' keys, best first
        hits[i] = bool((kept == truth_codes[i]).any())
    return hits, is_context[:, 0]


def judge(predictions: np.ndarray, bank: np.ndarray, payload_codes: np.ndarray, truth_codes: np.ndarray, context_codes: np.ndarray) -> dict[str, np.ndarray]:
    """Exact search of the top 50 + C, then hits in both views."""
    _, rows = exact_search(bank, predictions, 50 + context_codes.shape[1])  # (M, 50 + C)
    raw, echo = hits_at_k(rows, payload_codes, truth_codes, context_codes, exclude_context=False)
    excluded, _ = hits_at_k(rows, payload_codes, truth_codes, context_codes, exclude_context=True)
    return {"raw": raw, "excluded": excluded, "echo": echo}


def evaluate(checkpoint: Path, eval_path: Path, payload_dir: Path) -> dict[str, Any]:
    payload = load_payload(payload_dir)
    eval_set = load_eval_set(eval_path, expected_dim=payload.dim)
    assert eval_set.context_keys is not None, f"{eval_path}: needs context_keys for the context-excluded view"
    payload_codes = pack_keys(payload.keys)
    truth_codes, context_codes = pack_keys(eval_set.truth_keys), pack_keys(eval_set.context_keys)
    model = load_checkpoint(checkpoint, expected_dim=payload.dim).model
    predictions = predict(model, eval_set.contexts)  # (M, D)
    bank = encode_bank(model, payload.vectors) if int(getattr(model, "tower_count", 1)) == 2 else payload.vectors
    ours = judge(predictions, bank, payload_codes, truth_codes, context_codes)
    last = np.asarray(eval_set.contexts[:, -1], dtype=np.float32)
    copy_last = judge(last / np.linalg.norm(last, axis=1, keepdims=True), payload.vectors, payload_codes, truth_codes, context_codes)
    out: dict[str, Any] = {"eval_rows": eval_set.count}
    for view in ("raw", "excluded"):
        difference, low, high = paired_bootstrap(ours[view], copy_last[view])
        out[view] = {
            "model_r_at_5": float(ours[view].mean()),
            "copy_last_r_at_5": float(copy_last[view].mean()),
            "difference": difference,
            "difference_low": low,
            "difference_high": high,
        }
    out["model_echo_rate"] = float(ours["echo"].mean())
    out["copy_last_echo_rate"] = float(copy_last["echo"].mean())
    return out


def run_one(run: Run, results: Path | None, threads: int, keep: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sweep-") as scratch:
        out = (keep / run.name) if keep else Path(scratch) / run.name
        config = TrainConfig(
            out=str(out),
            preset=run.preset,
            epochs=run.epochs,
            loss=run.loss,
            residual=run.residual,
            temperature=run.temperature,
            lr=run.lr,
            bank_negatives=run.bank_negatives,
            seed=run.seed,
            eval_set=None,
            threads=threads,
            progress=False,
        )
        started = time.perf_counter()
        history = train(config)
        train_seconds = time.perf_counter() - started
        last = history["epochs"][-1]
        figures = evaluate(out / last["checkpoint"], DEFAULT_DATA / "eval.npz", DEFAULT_DATA / "payload")
    record = {
        "run": asdict(run),
        "name": run.name,
        "command": run.command(),
        "train_seconds": round(train_seconds, 1),
        "epoch_seconds": [round(r["seconds"], 1) for r in history["epochs"]],
        "val_r_at_5": last["val_r_at_5"],
        "negatives_per_positive": last["negatives_per_positive"],
        "bank_size": last.get("bank_size"),
        **figures,
    }
    print(summary_line(record), flush=True)
    if results is not None:
        with results.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    return record


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def interval(view: dict[str, Any]) -> str:
    return f"{100 * view['difference']:+.1f} [{100 * view['difference_low']:+.1f}, {100 * view['difference_high']:+.1f}]"


def summary_line(record: dict[str, Any]) -> str:
    raw, excluded = record["raw"], record["excluded"]
    return (
        f"{record['name']}: R@5 raw {pct(raw['model_r_at_5'])}% (copy-last {pct(raw['copy_last_r_at_5'])}%, diff {interval(raw)}), "
        f"context-excluded {pct(excluded['model_r_at_5'])}% (copy-last {pct(excluded['copy_last_r_at_5'])}%, diff {interval(excluded)}), "
        f"echo {pct(record['model_echo_rate'])}%, train {record['train_seconds']:.0f} s"
    )


def label(run: dict[str, Any]) -> str:
    text = f"{run['preset']}, {run['loss'].replace('_', '-')}"
    if run["loss"] == "bank" and run.get("bank_negatives"):
        text += f" (sampled {run['bank_negatives']})"
    text += f", {'residual' if run['residual'] else 'plain'}, τ {run['temperature']:g}, {run['epochs']} ep"
    if run["lr"] != 1e-3:
        text += f", lr {run['lr']:g}"
    if run["seed"]:
        text += f", seed {run['seed']}"
    return text


def table(results: Path) -> str:
    """The markdown table of bench/SWEEP.md: one numbered row per configuration, then the command of each row."""
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    lines = [
        "| # | configuration | train s | R@5 raw | raw − copy-last [95%] | R@5 ctx-excl | ctx-excl − copy-last [95%] | top-1 echo |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for number, r in enumerate(records, 1):
        lines.append(
            f"| {number} | {label(r['run'])} | {r['train_seconds']:.0f} | {pct(r['raw']['model_r_at_5'])} | {interval(r['raw'])} | "
            f"{pct(r['excluded']['model_r_at_5'])} | {interval(r['excluded'])} | {pct(r['model_echo_rate'])} |"
        )
    first = records[0]
    lines.append(
        f"| — | copy-last (no training) | 0 | {pct(first['raw']['copy_last_r_at_5'])} | — | {pct(first['excluded']['copy_last_r_at_5'])} | — | {pct(first['copy_last_echo_rate'])} |"
    )
    lines += ["", "Commands, by row:", ""]
    lines += [f"{number}. `{r['command']}`" for number, r in enumerate(records, 1)]
    return "\n".join(lines)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", action="store_true", help="run every configuration of grid()")
    parser.add_argument("--stage", choices=("main", "seeds", "all"), default="all", help="which stage of the grid (default: both)")
    parser.add_argument("--table", type=Path, help="print the markdown table of a results file and exit")
    parser.add_argument("--results", type=Path, default=None, help="append one JSON line per configuration here")
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="--grid starts no configuration after this much wall time")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    parser.add_argument("--preset", default=Run.preset)
    parser.add_argument("--loss", choices=("in_batch", "bank"), default=Run.loss)
    parser.add_argument("--residual", action=argparse.BooleanOptionalAction, default=Run.residual)
    parser.add_argument("--temperature", type=float, default=Run.temperature)
    parser.add_argument("--epochs", type=int, default=Run.epochs)
    parser.add_argument("--lr", type=float, default=Run.lr)
    parser.add_argument("--bank-negatives", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}", flush=True)
    if not args.grid:
        run_one(Run(args.preset, args.loss, args.residual, args.temperature, args.epochs, args.lr, args.bank_negatives, args.seed), args.results, args.threads, args.keep)
        return 0
    started = time.perf_counter()
    runs = grid(args.stage)
    for number, run in enumerate(runs, 1):
        minutes = (time.perf_counter() - started) / 60
        if minutes > args.budget_minutes:
            print(f"budget of {args.budget_minutes:g} min spent after {number - 1} of {len(runs)} configurations; stopping", flush=True)
            break
        print(f"[{number}/{len(runs)}, {minutes:.1f} min] {run.command()}", flush=True)
        run_one(run, args.results, args.threads, args.keep)
    print(f"grid done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
