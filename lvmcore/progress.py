"""Progress of long phases (index build, exact search, ridge fit, the gate's evaluation), as events.

The library only announces: `with phase("exact search", total=blocks) as step: ... step()`. Who
listens decides how it looks: nobody (the default: silent), the pytest plugin `fixtures/progress.py`
(a live line on a terminal, one line per phase with its time in CI logs, nothing under `-q`), or a
script (`LineProgress`: a line when a phase starts and one when it ends, e.g. the ingest command's). Phases nest; a listener sees (name, done, total, seconds) on each step and at the end.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol, TextIO


class Listener(Protocol):
    def update(self, name: str, done: int, total: int | None, seconds: float) -> None: ...
    def finish(self, name: str, done: int, total: int | None, seconds: float) -> None: ...


_listeners: list[Listener] = []


def listen(listener: Listener) -> Callable[[], None]:
    """Register a listener; returns the function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


@contextmanager
def phase(name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A named phase of `total` steps (None: unknown); the yielded function advances it by n steps."""
    started = time.perf_counter()
    done = 0

    def step(n: int = 1) -> None:
        nonlocal done
        done += n
        for listener in list(_listeners):
            listener.update(name, done, total, time.perf_counter() - started)

    try:
        yield step
    finally:
        for listener in list(_listeners):
            listener.finish(name, done, total, time.perf_counter() - started)


class LineProgress:
    """A script's listener: one line when a phase first steps (`step(0)` announces a start) and one when it ends.

    Plain lines, not a redrawn bar, so they read the same in a terminal, a pipe and a CI log.
    """

    def __init__(self, stream: TextIO, prefix: str) -> None:
        self.stream = stream
        self.prefix = prefix
        self.running: set[str] = set()

    def _write(self, text: str) -> None:
        print(f"{self.prefix}: {text}", file=self.stream, flush=True)

    def update(self, name: str, done: int, total: int | None, seconds: float) -> None:
        if name not in self.running:
            self.running.add(name)
            self._write(f"{name} ...")

    def finish(self, name: str, done: int, total: int | None, seconds: float) -> None:
        self.running.discard(name)
        self._write(f"{name}: done in {seconds:.1f} s")
