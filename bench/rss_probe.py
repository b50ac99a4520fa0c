"""A pytest plugin that finds which test phases set a suite's peak memory and take its time (Linux).

    LVM_BENCH_RSS_LOG=rss.jsonl python -m pytest checks -m plumbing -p bench.rss_probe ...

Before each setup, call and teardown it resets the kernel's peak-RSS mark (writing 5 to
/proc/self/clear_refs); after it, it appends one JSON line: the phase's own peak (VmHWM), the
resident set split into anonymous memory (our arrays, the IVF index) and file pages (the payload's
memory map), its wall seconds and the test's node id. `summarize` and `slowest` turn a log into the
lines the benchmark prints.

Resetting the mark also resets what getrusage (and so `/usr/bin/time -v`) reports as the
process's maximum, so the probe keeps the whole run's peak itself: each row also holds the mark
as it stood just before the reset (the peak since the previous phase ended: collection, fixture
finalizers), and a last row is written when the session ends. `run_peak` is the maximum of all.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import pytest

FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def read_status() -> dict[str, int]:
    """The memory fields of /proc/self/status, in bytes."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in FIELDS:
            out[name] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _probe(item: pytest.Item, phase: str) -> Iterator[None]:
    log = os.environ.get("LVM_BENCH_RSS_LOG")
    if not log:
        yield
        return
    before = read_status().get("VmHWM", 0)
    reset = reset_peak()
    began = time.perf_counter()
    yield
    seconds = time.perf_counter() - began
    write_row(log, {"nodeid": item.nodeid, "phase": phase, "seconds": round(seconds, 3), "peak_reset": reset, "hwm_before_phase": before, **read_status()})


def write_row(log: str, row: dict) -> None:
    with open(log, "a") as out:
        out.write(json.dumps(row) + "\n")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    log = os.environ.get("LVM_BENCH_RSS_LOG")
    if log:
        write_row(log, {"nodeid": "session", "phase": "end", "seconds": 0.0, "peak_reset": False, "hwm_before_phase": 0, **read_status()})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    yield from _probe(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    yield from _probe(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield from _probe(item, "teardown")


def read_log(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def run_peak(log: Path) -> int:
    """The whole run's peak RSS in bytes: the highest mark any phase, or any gap between phases, reached."""
    return max((max(r.get("VmHWM", 0), r.get("hwm_before_phase", 0)) for r in read_log(log)), default=0)


def slowest(log: Path, top: int = 5) -> list[str]:
    """The phases that took longest, with their share of all phases' time."""
    rows = sorted((r for r in read_log(log) if r["nodeid"] != "session"), key=lambda r: r.get("seconds", 0.0), reverse=True)
    total = sum(r.get("seconds", 0.0) for r in rows) or 1.0
    return [f"{r['seconds']:.1f} s ({100 * r['seconds'] / total:.0f}%) in {r['phase']} of {r['nodeid'].split('::')[-1]}" for r in rows[:top]]


def summarize(log: Path, payload_bytes: int, top: int = 5) -> list[str]:
    """The phases with the highest peaks, each as a multiple of the payload's bytes."""
    rows = [r for r in read_log(log) if r["nodeid"] != "session"]
    rows.sort(key=lambda r: r.get("VmHWM", 0), reverse=True)
    return [
        f"{r['VmHWM'] / payload_bytes:.2f}x peak in {r['phase']} of {r['nodeid'].split('::')[-1]} "
        f"(after it: anon {r['RssAnon'] / 2**30:.2f} GiB, file pages {r['RssFile'] / 2**30:.2f} GiB)"
        for r in rows[:top]
    ]
