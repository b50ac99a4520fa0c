"""What a report needs to say how it was made: each artifact's content hash, and the model a file describes.

A report that names `--eval-set run/eval.npz` does not say which eval set: the file may be rewritten
the next day. So each artifact is named with the sha256 of its bytes (the identity the public
pipeline's writers record, `lvmcore.plumbing.identity`); a directory (our payload) with the sha256
of its files' names and sha256s, in name order. A checkpoint's model is described from its own
dict (mapped, never its weights read): our `model_config` with its parameter count, or what another
codebase's dict says (`args`, `config`, `hparams`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lvmcore.artifacts.checkpoint import estimate_parameters, peek
from lvmcore.files import file_sha256

_CACHE: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256: one hash per file per process
FOREIGN_CONFIG_KEYS = ("model_config", "config", "hparams", "hyper_parameters", "args")  # how training scripts record their settings


def cached_file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = file_sha256(path)
    return _CACHE[key]


def content_sha256(path: str | Path) -> dict[str, Any]:
    """{"sha256": ...} of a file's bytes, or of a directory's `name sha256` lines; {"error": why} when unreadable."""
    path = Path(path)
    try:
        if path.is_dir():
            lines = [f"{f.relative_to(path).as_posix()} {cached_file_sha256(f)}" for f in sorted(path.rglob("*")) if f.is_file()]
            return {"sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(), "of": f"the names and sha256 of its {len(lines)} file(s)"}
        return {"sha256": cached_file_sha256(path)}
    except OSError as exc:
        return {"error": f"unreadable: {exc.strerror or exc}"}


def plain(value: Any, depth: int = 0) -> Any:
    """A JSON value of what a checkpoint records: numbers, strings, lists and dicts; anything else as its text."""
    if depth > 6:
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value][:64]
    return str(value)


def describe_model(path: str | Path, route: str, adapter: str | None = None) -> dict[str, Any]:
    """The model's architecture and config, as far as the file says: {"architecture", "config", "parameters", "known"}."""
    path = Path(path)
    if route == "predictions":
        return {"known": False, "architecture": "not given: stored predictions (the model that made them is not part of the file)"}
    if route == "model_file":
        kind = "torch.export program" if path.suffix == ".pt2" else "TorchScript program"
        return {"known": False, "architecture": f"{kind}: a graph, no architecture name or config recorded"}
    content = peek(path) if path.is_file() else {}
    config = content.get("model_config")
    if route == "checkpoint" and isinstance(config, dict) and config:
        return {"known": True, "architecture": str(config.get("kind", "unknown kind")), "config": plain(config),
                "parameters": estimate_parameters(config)}
    for key in FOREIGN_CONFIG_KEYS:
        if isinstance(content.get(key), dict) and content[key]:
            return {"known": True, "architecture": f"another codebase's model, loaded by the adapter {adapter}", "config": plain(content[key]),
                    "config_from": key}
    return {"known": False, "architecture": f"another codebase's model, loaded by the adapter {adapter}; its checkpoint records no config"
            if route == "adapter" else "unknown: the checkpoint records no model_config"}
