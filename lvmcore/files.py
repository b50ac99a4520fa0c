"""Atomic writes: a temp file in the target's directory, fsync, rename, then fsync of the directory.

A reader (or a crash, or a power cut) sees the previous file or the whole new one, never half of
one: the data is on disk before the rename, and the rename is on disk before we return. Every
artifact the project writes (checkpoints, history.json, cached indexes) goes through here.
`set_aside` and `CacheWarning` are how a cache heals a file it cannot use; `file_sha256` is the other side: the identity of a file as other pipelines record it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable


TEMP_SUFFIX = ".tmp"
CACHE_TEMP_MIN_AGE_S = 600.0  # in a cache that hosts may share, a temp file is an orphan only once this old (a writer elsewhere is not visible by pid)
TEMP_NAME = re.compile(r"\.(?P<name>.+?)\.pid(?P<pid>\d+)\.[^.]+\.tmp")  # .last.pt.pid123.k2x9.tmp


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (a no-op where directories cannot be opened)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write `path` through `write(binary_file)` atomically (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp makes 0600; give it a normal file's mode
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def write_json_atomic(path: str | Path, content: Any) -> Path:
    """`content` as indented JSON with a final newline, written atomically."""
    data = (json.dumps(content, indent=1) + "\n").encode("utf-8")
    return write_atomic(path, lambda out: out.write(data))


def file_sha256(path: str | Path, block_bytes: int = 16 << 20) -> str:
    """sha256 of a file's bytes, read in blocks (the identity other pipelines record for a payload file)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(block_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a process we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_orphan_temps(directory: str | Path, min_age_s: float = 0.0) -> list[Path]:
    """Delete the temp files `write_atomic` left in `directory` when its writer died; returns what was removed.

    A temp file names its writer's pid: it is an orphan when no process of that id runs here and
    the file is at least `min_age_s` old (a cache shared between machines: give a writer on another
    host time to finish). Temp files of the older naming (no pid) go by age alone. A live writer's
    file, this process's included, is never touched.
    """
    directory = Path(directory)
    removed: list[Path] = []
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return removed
    now = time.time()
    for candidate in candidates:
        match = TEMP_NAME.fullmatch(candidate.name)
        if match and process_alive(int(match["pid"])):
            continue
        try:
            if now - candidate.lstat().st_mtime < min_age_s:
                continue
            candidate.unlink()
        except OSError:
            continue  # gone already (another cleaner), or not ours to delete
        removed.append(candidate)
    return removed


class CacheWarning(UserWarning):
    """A cached file could not be used: it was moved aside and rebuilt (the run goes on)."""


def set_aside(path: str | Path, problem: str) -> Path | None:
    """A cache file that cannot be used: renamed to `<name>.corrupt-<unix time>` (kept for a post-mortem)
    and said so with a `CacheWarning` naming `problem`; the caller rebuilds it. Returns where it went,
    None when another session moved it first."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        aside = None
    where = f"moved aside to {aside.name}" if aside else "already moved aside by another session"
    warnings.warn(f"{path}: {problem}; {where}, rebuilding it", CacheWarning, stacklevel=3)
    return aside
