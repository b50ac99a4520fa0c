"""`lvm-checks watch RUN_DIR`: gate each checkpoint as it lands, one verdict line each, the run report kept current.

What counts as a new checkpoint. Every plain file directly in RUN_DIR whose suffix belongs to the route
(`.pt` our checkpoints; `.pt .pth .ckpt .bin` with `--model-adapter`; `.pt2 .ts` exported programs;
`.npz` predictions), in name order, files named by a role (`last`, `best`, `final`, `latest`) after
files named by their epoch, so `best.pt` is met after the epoch file it copies.

How a file is known to be complete (never read while it is written):
1. Temporary names are never read: a name starting with `.` (our writers' `.NAME.pidN.X.tmp`, rsync's
   `.NAME.XXXX`), or ending in `.tmp`, `.part`, `.partial`, `.incomplete`, `.crdownload`, `~`.
   A writer that writes a temporary file and renames it (ours, `torch.save` to a temp name, most
   checkpointing libraries) is complete the moment the name appears.
2. Its size and modification time have not changed for `--settle` seconds, seen on two polls.
3. Zip-based files (a torch checkpoint since torch 1.6, `.pt2`, TorchScript, `.npz`) open as a zip:
   the central directory is written last, so a file cut off mid-write fails this even when it
   has stopped growing (a writer that was killed).
4. Files are gated one at a time, RUN_DIR looked at again after each. Right before a gate the file's
   size and time must still be those that made it ready, and after the session they are read again;
   if they changed, the session read a file being rewritten: its report is dropped and the file is
   gated again once it settles.

Copies of one model: our trainer writes `epoch_NNN.pt` before `best.pt` and `last.pt`, so the epoch
file is found first and the copies are skipped; a trainer that writes `last.pt` first gets its report
under `last` (the run report's checkpoint table still shows the epoch each checkpoint records).

The fixed costs stay in this process: payload, eval set, training data, the IVF index, the baselines'
and oracle's results and the gate's input figures are computed by the first session and reused by
every later one while the options and those files' sizes and times are unchanged
(`fixtures/warm.py`). A file holding the same weights (same bytes, for programs and predictions) as a
file already gated is skipped and said so. A file rewritten after its gate (a trainer that
overwrites `last.pt`) is gated again; the earlier report is kept as `NAME@1`, `NAME@2`, ...

Stops on `--timeout S` without a new file (never a zero-checkpoint success: exit 5 when nothing was
gated), on the sentinel file the trainer writes when it ends (`TRAINING_DONE`, `--sentinel`; files
already there are gated first), or on Ctrl-C; then exits with the worst gate's exit code (0 only if
every checkpoint's decision is `continue` and no model file was left ungated: a file still cut off at
the end is named, and makes the exit at least 1).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import io
import json
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import pytest

from lvmcore.artifacts.run_folder import ROLE_NAMES, SUFFIXES, candidate, weights_digest
from lvmcore.errors import ArtifactError
from lvmcore.files import TEMP_NAME, file_sha256, write_json_atomic
from lvmcore.gate.decision import PRIORITY
from lvmcore.gate.routes import ROUTE_OPTION
from lvmcore.gate.run_report import checkpoint_figures, write_run_report

from .suite import Suite

SENTINEL = "TRAINING_DONE"  # the trainer writes it when it ends (train/__main__.py)
TEMP_ENDINGS = (".tmp", ".part", ".partial", ".incomplete", ".crdownload", "~", ".swp", ".lock")
ZIP_SUFFIXES = (".pt", ".pth", ".ckpt", ".pt2", ".ts", ".npz")
NO_CHECKPOINT_EXIT = 5  # pytest's "no tests collected": a watcher that gated nothing has certified nothing


def is_temporary(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name.endswith(TEMP_ENDINGS) or TEMP_NAME.fullmatch(name) is not None


def route_of(path: Path, adapter: str | None) -> str | None:
    """The route a file arrives by, from its suffix and the run-folder rule's `SUFFIXES` (None: not a model file).

    A `.pt` is a checkpoint (ours, or another codebase's with an adapter), never an exported program: a
    folder of exported programs is watched with `.pt2` or `.ts` files."""
    suffix = path.suffix.lower()
    for route in ("adapter" if adapter else "checkpoint", "predictions", "model_file"):
        if suffix in SUFFIXES[route]:
            return route
    return None


def opens_as_zip(path: Path) -> bool:
    """True when the file's zip central directory is readable (written last, so a cut-off file fails)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def starts_as_zip(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def looks_complete(path: Path) -> bool:
    """A zip-based file (by its first bytes, or an .npz) must open as a zip; other files have only their stable size and time."""
    if path.suffix.lower() not in ZIP_SUFFIXES:
        return True
    if path.suffix.lower() != ".npz" and not starts_as_zip(path):
        return True  # a legacy (pickle) torch file: its stable size and time are all there is to go by
    return opens_as_zip(path)


def stat_of(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def release_freed_memory() -> None:
    """Hand the memory a finished gate session freed back to the system.

    Without this the watcher's resident set grew ~6 MiB per checkpoint on the embedded bank (glibc keeps
    freed blocks of the session's arrays in its arenas); with it, it stays flat (bench/RESULTS.md). Python's
    own heap does not grow (tracemalloc: a few KiB per session). A no-op where there is no glibc."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def severity(gated: "Gated") -> tuple[int, int]:
    """Worst first by exit code, then by decision (check_data before check_model ... before train_more; no decision is worst)."""
    rank = len(PRIORITY) - PRIORITY.index(gated.action) if gated.action in PRIORITY else (0 if gated.action == "continue" else len(PRIORITY) + 1)
    return gated.exit_code, rank


def scan_order(path: Path) -> tuple[bool, str]:
    return (path.stem.lower() in ROLE_NAMES, path.name)


@dataclass
class Sighting:
    """A file's size and time, and when they were first seen so."""

    stat: tuple[int, int]
    since: float


@dataclass
class Gated:
    """One finished gate session."""

    path: Path
    subject: str
    exit_code: int
    action: str
    line: str
    stat: tuple[int, int] | None
    identity: str | None
    seconds: float = 0.0  # the gate session's wall time


@dataclass
class WatchOptions:
    run_dir: Path
    report_dir: Path
    run_name: str = "gates"
    adapter: str | None = None
    settle_s: float = 2.0
    poll_s: float = 1.0
    timeout_s: float | None = None
    sentinel: str = SENTINEL
    pytest_args: list[str] = field(default_factory=list)


class Watcher:
    """Polls RUN_DIR, gates each complete new file in this process, keeps the fixed costs warm."""

    def __init__(self, options: WatchOptions, suite: Suite, out: TextIO = sys.stdout, clock: Callable[[], float] = time.monotonic):
        self.options = options
        self.suite = suite
        self.out = out
        self.clock = clock
        self.sightings: dict[Path, Sighting] = {}
        self.gated: dict[Path, Gated] = {}
        self.history: list[Gated] = []
        self.identities: dict[str, Path] = {}  # weights (or bytes) digest -> the file gated with them
        self.ignored: set[Path] = set()
        if not suite.installed and str(suite.root) not in sys.path:
            sys.path.insert(0, str(suite.root))  # the checkout's `fixtures` package, as pytest's rootdir conftest would
        self.store = importlib.import_module(suite.module("fixtures.warm")).WarmStore()

    @property
    def gates_dir(self) -> Path:
        return self.options.report_dir / self.options.run_name

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    # -- which files are ready -------------------------------------------------------------------
    def entries(self) -> list[Path]:
        """RUN_DIR's plain files in scan order (none while it does not exist yet)."""
        try:
            return sorted((p for p in self.options.run_dir.iterdir() if p.is_file()), key=scan_order)
        except OSError:
            return []

    def ready(self, now: float) -> list[Path]:
        """Files complete by the module docstring's rules and not yet gated in their present state."""
        found = []
        entries = self.entries()
        for path in entries:
            if is_temporary(path) or path.name == self.options.sentinel:
                continue
            if route_of(path, self.options.adapter) is None:
                if path.suffix.lower() in SUFFIXES["adapter"] and path not in self.ignored:
                    self.ignored.add(path)
                    self.say(f"  ignoring {path.name}: a {path.suffix} file is gated only with --model-adapter")
                continue
            stat = stat_of(path)
            if stat is None or stat[0] == 0:
                continue
            done = self.gated.get(path)
            if done is not None and done.stat == stat:
                continue
            seen = self.sightings.get(path)
            if seen is None or seen.stat != stat:
                self.sightings[path] = Sighting(stat, now)
                continue
            if now - seen.since >= self.options.settle_s and looks_complete(path):
                found.append(path)
        return found

    def sentinel_seen(self) -> bool:
        return (self.options.run_dir / self.options.sentinel).is_file()

    # -- one gate ----------------------------------------------------------------------------------
    def identity(self, path: Path, route: str) -> str | None:
        """The digest two copies of one model share: weights for checkpoints, bytes otherwise."""
        try:
            if route in ("model_file", "predictions"):
                return file_sha256(path)
            found = candidate(path, route)
            return None if found.weights is None else weights_digest(found.weights)
        except (ArtifactError, OSError, RuntimeError, ValueError, EOFError):
            return None  # unreadable: the gate session says why

    def keep_earlier_report(self, subject: str) -> None:
        """A rewritten file's earlier report moves to SUBJECT@N, so the run report keeps both versions."""
        folder = self.gates_dir / subject
        if not (folder / "report.json").is_file():
            return
        n = 1
        while (self.gates_dir / f"{subject}@{n}").exists():
            n += 1
        folder.rename(self.gates_dir / f"{subject}@{n}")
        report = self.gates_dir / f"{subject}@{n}" / "report.json"
        with contextlib.suppress(OSError, json.JSONDecodeError):
            content = json.loads(report.read_text(encoding="utf-8"))
            content["subject"] = f"{subject}@{n}"
            write_json_atomic(report, content)

    def session_args(self, path: Path, route: str) -> list[str]:
        extra = [ROUTE_OPTION[route], str(path.resolve()), "--report-dir", str(self.options.report_dir.resolve()),
                 "--run-name", self.options.run_name, *self.options.pytest_args]
        if route == "adapter":
            extra += ["--model-adapter", str(self.options.adapter)]
        return self.suite.pytest_args("gate", extra)

    def gate(self, path: Path) -> Gated | None:
        """Gate one file in this process; None when it changed while it was read (it is gated again later)."""
        route = route_of(path, self.options.adapter) or "checkpoint"
        before = stat_of(path)
        seen = self.sightings.get(path)
        if seen is not None and seen.stat != before:  # changed since it was found ready: wait for it to settle again
            self.sightings.pop(path, None)
            return None
        identity = self.identity(path, route)
        same = self.identities.get(identity) if identity else None
        if same is not None and same != path:
            self.gated[path] = Gated(path, path.stem, 0, "skipped", "", before, identity)
            self.say(f"  skipped {path.name}: the same {'bytes' if route in ('model_file', 'predictions') else 'weights'} as {same.name}, which is gated")
            return self.gated[path]
        subject = path.stem
        if path in self.gated:
            self.keep_earlier_report(subject)
        self.gates_dir.mkdir(parents=True, exist_ok=True)
        log = self.gates_dir / f"{subject}.log"
        started = time.perf_counter()
        self.say(f"  gating {path.name} ({route.replace('_', ' ')} route) ...")
        with log.open("w", encoding="utf-8") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            exit_code = int(pytest.main(self.session_args(path, route), plugins=[self.store]))
        release_freed_memory()
        if exit_code == pytest.ExitCode.INTERRUPTED:  # pytest catches Ctrl-C itself: the watch stops, this gate counts for nothing
            shutil.rmtree(self.gates_dir / subject, ignore_errors=True)
            raise KeyboardInterrupt
        after = stat_of(path)
        if after != before:
            self.say(f"  {path.name} changed while it was gated: its report is dropped and it is gated again once complete")
            shutil.rmtree(self.gates_dir / subject, ignore_errors=True)
            self.sightings.pop(path, None)
            return None
        seconds = time.perf_counter() - started
        action, line = self.verdict(subject, exit_code, seconds, log)
        result = Gated(path, subject, exit_code, action, line, after, identity, seconds)
        self.gated[path] = result
        self.history.append(result)
        if identity:
            self.identities[identity] = path
        self.say(line)
        self.refresh_run_report()
        return result

    def verdict(self, subject: str, exit_code: int, seconds: float, log: Path) -> tuple[str, str]:
        """The one-line verdict: decision, R@5 with its interval against the best baseline's, where the report is."""
        report_path = self.gates_dir / subject / "report.json"
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return "unknown", f"{subject}: no report (pytest exit {exit_code}); see {log}"
        decision = report.get("decision") or {}
        action = str(decision.get("action", "unknown"))
        figures = checkpoint_figures(report, report_path)
        shown = ""
        if figures is not None:
            view = figures.excluded or figures.raw
            base = figures.baseline_excluded if figures.excluded else figures.baseline_raw
            what = "context-excluded " if figures.excluded else ""
            shown = (f" {what}R@5 {100 * view[0]:.1f}% [{100 * view[1]:.1f}, {100 * view[2]:.1f}]"
                     f" vs {figures.baseline} {100 * base[0]:.1f}% [{100 * base[1]:.1f}, {100 * base[2]:.1f}];")
        reason = str(decision.get("reason", ""))
        if len(reason) > 160:
            reason = reason[:157] + "..."
        return action, f"{subject}: {action} (exit {exit_code});{shown} {seconds:.1f} s; {reason} [{report_path.parent / 'report.md'}]"

    def refresh_run_report(self) -> None:
        try:
            write_run_report(self.gates_dir)
        except ArtifactError as exc:
            self.say(f"  run report not written: {exc}")

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> int:
        options = self.options
        if options.run_dir.exists() and not options.run_dir.is_dir():
            self.say(f"error: {options.run_dir}: is a file, not the folder a trainer writes checkpoints into")
            return 4
        if not options.run_dir.exists():
            self.say(f"waiting for {options.run_dir} to appear (the trainer creates it)")
        refused = self.preflight()
        if refused:
            self.say(refused)
            return 4
        self.say(f"lvm-checks watch {options.run_dir}: gating each new checkpoint; stops on {options.sentinel}"
                 f"{f', {options.timeout_s:g} s without a new file' if options.timeout_s else ''} or Ctrl-C; reports in {self.gates_dir}")
        last_new = self.clock()
        try:
            while True:
                done = self.sentinel_seen()
                now = self.clock()
                ready = self.ready(now)
                if ready:  # one at a time, then look again: a gate takes seconds, and a file may change meanwhile
                    if self.gate(ready[0]) is not None:
                        last_new = self.clock()
                    continue
                if done and not self.pending():
                    self.say(f"{options.sentinel} found: the run has ended")
                    break
                if options.timeout_s is not None and self.clock() - last_new >= options.timeout_s:
                    self.say(f"no new checkpoint for {options.timeout_s:g} s: stopping")
                    break
                time.sleep(options.poll_s)
        except KeyboardInterrupt:
            self.say("interrupted: stopping")
        return self.finish()

    def preflight(self) -> str | None:
        """The gate options refused before anything is watched (a mistyped option would fail every checkpoint): the error, or None."""
        text = io.StringIO()
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            code = int(pytest.main(self.suite.pytest_args("gate", [*self.options.pytest_args, "--collect-only", "-q"])))
        if code != pytest.ExitCode.USAGE_ERROR:
            return None
        lines = [line.strip() for line in text.getvalue().splitlines() if "error" in line.lower() and "usage:" not in line.lower()]
        return "error: the gate options are refused: " + (" ".join(lines[-2:]).replace("pytest.main(): ", "") or f"pytest exit {code}")

    def ungated(self) -> list[Path]:
        """Model files in RUN_DIR not gated in their present state (new, still settling, or cut off)."""
        left = []
        for path in self.entries():
            if is_temporary(path) or route_of(path, self.options.adapter) is None:
                continue
            done = self.gated.get(path)
            if done is None or done.stat != stat_of(path):
                left.append(path)
        return left

    def pending(self) -> bool:
        """A complete, non-empty model file not yet gated (still settling): the sentinel waits for it."""
        return any((stat_of(p) or (0, 0))[0] > 0 and looks_complete(p) for p in self.ungated())

    def finish(self) -> int:
        gated = self.history
        left = self.ungated()
        for path in left:
            why = "it does not open as a whole zip (cut off mid-write?)" if not looks_complete(path) else "it was still changing"
            self.say(f"  NOT gated: {path.name}: {why}")
        if not gated:
            self.say(f"no checkpoint was gated in {self.options.run_dir}: nothing is certified (exit {NO_CHECKPOINT_EXIT})")
            return NO_CHECKPOINT_EXIT
        worst = max(gated, key=severity)
        if left and worst.exit_code == 0:
            self.say(f"every gated checkpoint continues, but {len(left)} file(s) were never gated: exit 1")
            return 1
        run_md = self.gates_dir / "run.md"
        keep = ""
        with contextlib.suppress(OSError, json.JSONDecodeError, KeyError):
            keep = json.loads((self.gates_dir / "run.json").read_text(encoding="utf-8"))["sentence"]
        self.say(f"gated {len(gated)} checkpoint(s); worst: {worst.subject} {worst.action} (exit {worst.exit_code}). {keep}")
        self.say(f"run report: {run_md}")
        return worst.exit_code


def watch_options(args: Any, pytest_args: list[str]) -> WatchOptions:
    run_dir = Path(args.run_dir)
    return WatchOptions(
        run_dir=run_dir, report_dir=Path(args.report_dir) if args.report_dir else run_dir / "reports", run_name=args.run_name,
        adapter=args.model_adapter, settle_s=args.settle, poll_s=args.poll, timeout_s=args.timeout, sentinel=args.sentinel,
        pytest_args=pytest_args,
    )

