"""Atomic writes: a temp file in the target's directory, fsync, rename, then fsync of the directory.

A reader (or a crash, or a power cut) sees the previous file or the whole new one, never half of
one: the data is on disk before the rename, and the rename is on disk before we return. Every
artifact the project writes (checkpoints, history.json, cached indexes) goes through here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


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
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
