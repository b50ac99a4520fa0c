"""Timing, load and machine facts for the benchmark: every figure carries the load it ran under."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (what `uptime` prints)."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


@dataclass
class Timing:
    """Wall seconds of repeated runs and the load before each; the median is the figure."""

    seconds: list[float] = field(default_factory=list)
    loads: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def median(self) -> float:
        ordered = sorted(self.seconds)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    def add(self, seconds: float, load: tuple[float, float, float]) -> None:
        self.seconds.append(seconds)
        self.loads.append(load)


def time_call(fn: Callable[[], object], timing: Timing) -> object:
    """Run fn once, appending its wall time and the load before it to `timing`; return its value."""
    load = load_average()
    began = time.perf_counter()
    value = fn()
    timing.add(time.perf_counter() - began, load)
    return value


@dataclass
class ChildRun:
    """A subprocess's exit status, wall seconds, peak RSS and the tail of its output."""

    returncode: int
    seconds: float
    peak_rss_bytes: int
    output_tail: str
    load_before: tuple[float, float, float]


def run_child(command: list[str], env: dict[str, str], cwd: Path, timeout: float) -> ChildRun:
    """Run a command under `/usr/bin/time -v`, so its own peak RSS (not ours, not earlier children's) is read."""
    load = load_average()
    rss_file = Path(tempfile.gettempdir()) / f"lvm-bench-time-{os.getpid()}.txt"
    wrapped = ["/usr/bin/time", "-v", "-o", str(rss_file), *command] if Path("/usr/bin/time").exists() else command
    began = time.perf_counter()
    try:
        done = subprocess.run(wrapped, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -9, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}"
    seconds = time.perf_counter() - began
    rss = 0
    if rss_file.is_file():
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", rss_file.read_text())
        rss = int(match.group(1)) * 1024 if match else 0
        rss_file.unlink()
    return ChildRun(code, seconds, rss, output[-3000:] if isinstance(output, str) else str(output)[-3000:], load)


def machine_facts() -> dict[str, str]:
    """CPU model and cores (lscpu), RAM, and the versions that decide the speed of the maths."""
    facts: dict[str, str] = {"python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for name in ("Model name", "CPU(s)", "Thread(s) per core", "L3 cache"):
            match = re.search(rf"^{re.escape(name)}:\s*(.+)$", lscpu, re.M)
            if match:
                facts[name.lower()] = match.group(1).strip()
        facts["avx512"] = "yes" if "avx512f" in lscpu else "no"
    except (OSError, subprocess.SubprocessError):
        pass
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        match = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text())
        if match:
            facts["ram"] = f"{int(match.group(1)) / 2**20:.1f} GiB"
    import faiss
    import numpy
    import torch

    facts |= {"numpy": numpy.__version__, "faiss": faiss.__version__, "torch": torch.__version__, "faiss threads": str(faiss.omp_get_max_threads())}
    try:
        import sentence_transformers

        facts["sentence-transformers"] = sentence_transformers.__version__
    except ImportError:
        facts["sentence-transformers"] = "not installed"
    facts["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "unset")
    return facts
