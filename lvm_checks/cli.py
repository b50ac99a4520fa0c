"""The `lvm-checks` command: the suite, the watcher, the run report and the trainer, from any directory.

    lvm-checks plumbing [pytest options]        = pytest checks/ -m plumbing [options], in the suite root
    lvm-checks gate [pytest options]            = pytest checks/ -m gate [options]
    lvm-checks watch RUN_DIR [watch options] [pytest options]
    lvm-checks report RUN_DIR|REPORT_DIR        run.md, run.json, run.png from the per-checkpoint reports
    lvm-checks train [trainer options]          = python -m train (a checkout) / python -m lvm_checks.train

`plumbing` and `gate` take every option and marker `pytest checks/` takes (`lvm-checks gate --help`
lists them); the working directory is the caller's, so `--report-dir reports` is theirs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import pytest

from lvmcore.gate.run_report import main as run_report_main

from .suite import Suite, locate
from .watch import SENTINEL, Watcher, watch_options

COMMANDS = ("plumbing", "gate", "watch", "report", "train")
USAGE = __doc__.split("\n\n")[1]


def run_suite(suite: Suite, marker: str, argv: list[str]) -> int:
    return int(pytest.main(suite.pytest_args(marker, argv)))


def watch_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvm-checks watch", description="Gate each checkpoint written into RUN_DIR as soon as it is complete; "
                                     "other options (--payload, --eval-set, --train-data, --field, --level, ...) go to the gate sessions.")
    parser.add_argument("run_dir", help="the folder a trainer writes its checkpoints (or exported programs, or predictions files) into")
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds without a new file (default: wait for the sentinel or Ctrl-C)")
    parser.add_argument("--sentinel", default=SENTINEL, help=f"file name whose appearance in RUN_DIR ends the watch (default {SENTINEL}, which `python -m train` writes)")
    parser.add_argument("--settle", type=float, default=2.0, metavar="S", help="seconds a file's size and time must stay unchanged before it is read (default 2)")
    parser.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between looks at RUN_DIR (default 1)")
    parser.add_argument("--model-adapter", default=None, metavar="MODULE:FUNCTION", help="load .pt/.pth/.ckpt/.bin files of another codebase through your loader")
    parser.add_argument("--report-dir", default=None, help="root of the reports (default RUN_DIR/reports); each checkpoint's report is REPORT_DIR/RUN_NAME/<file stem>/")
    parser.add_argument("--run-name", default="gates", help="the run's report folder name (default gates, as `python -m train --gate-every-epoch`)")
    return parser


def run_watch(suite: Suite, argv: list[str]) -> int:
    args, rest = watch_parser().parse_known_args(argv)
    for value in (args.timeout, args.settle, args.poll):
        if value is not None and value < 0:
            print("error: --timeout, --settle and --poll take seconds >= 0", file=sys.stderr)
            return 4
    return Watcher(watch_options(args, rest), suite).run()


def run_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lvm-checks report", description="Write run.md, run.json and run.png from a run's per-checkpoint gate reports.")
    parser.add_argument("path", help="a run folder (its reports/gates is read) or a report folder holding one folder per checkpoint")
    args = parser.parse_args(argv)
    path = Path(args.path)
    directory = path / "reports" / "gates" if (path / "reports" / "gates").is_dir() else path
    return run_report_main([str(directory)])


def run_train(suite: Suite, argv: list[str]) -> int:
    if not suite.installed and str(suite.root) not in sys.path:
        sys.path.insert(0, str(suite.root))
    return int(importlib.import_module(suite.module("train.__main__")).main(argv))


def importable_here() -> None:
    """Modules in the working directory (a `--model-adapter` such as `lvm_adapter:load_predictor`) import as they
    would under `python -m lvm_checks`; appended, so a file here never shadows an installed package."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


def main(argv: list[str] | None = None) -> int:
    importable_here()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage:\n{USAGE}")
        return 0 if argv else 4
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; one of {', '.join(COMMANDS)}\n{USAGE}", file=sys.stderr)
        return 4
    if command == "report":
        return run_report(rest)
    try:
        suite = locate()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    if command == "watch":
        return run_watch(suite, rest)
    if command == "train":
        return run_train(suite, rest)
    return run_suite(suite, command, rest)


if __name__ == "__main__":
    raise SystemExit(main())
