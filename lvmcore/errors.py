"""The one error type a user can cause, with the file and the problem on one line."""

from __future__ import annotations

from os import PathLike


class ArtifactError(Exception):
    """A user-caused problem with an artifact: missing file, wrong shape, NaN rows, wrong model.

    The message is always one line, `<path>: <problem>`, so a CLI can print it without a traceback.
    """

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(problem.split())
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)


def exception_reason(exc: BaseException, limit: int | None = 200, fallback: str | None = None) -> str:
    """The first line of what an exception says, cut to `limit` characters, for an `ArtifactError` built
    from it; an exception that says nothing gives its type's name (or `fallback`, when given)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__ if fallback is None else fallback
    first = text.splitlines()[0]
    return first if limit is None else first[:limit]
