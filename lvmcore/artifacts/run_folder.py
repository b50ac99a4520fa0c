"""Which files of a run folder the gate judges: one rule for every route, said at the start of the session.

The rule (README "Gate checks"):

1. Every file of the route's kinds in the folder (`SUFFIXES`), in name order.
2. Two files are the same model when they hold the same weights: for checkpoints (ours and, with an
   adapter, another codebase's) the same tensors in the state dict, compared from a memory map; for
   exported programs and predictions files, the same bytes. Recorded (epoch, step) only rules a pair
   out when both files record them and they differ; it never makes two files the same, since
   another pipeline's `best.pt` and `final.pt` of one epoch may differ and rarely record a step.
   A file whose weights cannot be read is its own model (the gate then reports why it cannot read it).
3. Of the files holding one model, the one gated is the one with the most training record
   (`record_size`: epoch, step, each validation figure, provenance, training articles, model
   config, negatives); ties go to a name that is not `last`, `best` or `final` (an epoch file says
   its epoch in the report), then to name order. The others are skipped, each named with the file
   gated in its place.

Before, a folder of our checkpoints dropped `last.pt`/`best.pt` by (epoch, step) alone, while with
an adapter every file was gated; another pipeline's `best.pt` was dropped as a "duplicate" of its
`final.pt` (same epoch, step unknown), keeping the file without training figures, and neither was said.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lvmcore.artifacts.checkpoint import peek
from lvmcore.files import file_sha256

SUFFIXES = {
    "checkpoint": (".pt",),
    "adapter": (".pt", ".pth", ".ckpt", ".bin"),
    "model_file": (".pt2", ".pt", ".ts"),
    "predictions": (".npz",),
}
WEIGHT_KEYS = ("model_state", "model_state_dict", "state_dict", "model")  # ours first, then how other training scripts name them
ROLE_NAMES = ("last", "best", "final", "latest")  # names that say a role, not an epoch
RECORD_FIELDS = ("epoch", "step", "global_step", "provenance", "training_articles", "validation_articles", "model_config",
                 "negatives_per_positive", "train_config")


@dataclass(frozen=True)
class Skipped:
    """A file not gated: the file gated in its place (the same model) and why that one."""

    path: Path
    same_as: Path
    why: str


@dataclass(frozen=True)
class RunFolder:
    """The files of one folder the gate judges, and the files it skips with the reason."""

    directory: Path
    route: str
    kept: list[Path]
    skipped: list[Skipped]

    def lines(self) -> list[str]:
        """What the session prints before any check runs."""
        head = f"lvm-checks: run folder {self.directory} ({self.route.replace('_', ' ')} route): gating {len(self.kept)} file(s): " + ", ".join(p.name for p in self.kept)
        if not self.skipped:
            return [head + "; none skipped (no two files hold the same weights)"]
        return [head] + [f"  skipped {s.path.name}: {s.why}" for s in self.skipped]


@dataclass
class Candidate:
    """One file and what is known of it without reading more than its top-level dict."""

    path: Path
    epoch: Any
    step: Any
    record: int
    weights: dict[str, torch.Tensor] | None  # memory-mapped tensors, None when not a checkpoint or unreadable
    digest: str | None = None

    def fingerprint(self, by_bytes: bool) -> str | None:
        if self.digest is None:
            if by_bytes:
                self.digest = file_sha256(self.path)
            elif self.weights is not None:
                self.digest = weights_digest(self.weights)
        return self.digest


def run_files(directory: Path, route: str) -> list[Path]:
    """Every file of the route's kinds in the folder, in name order."""
    return sorted(f for f in Path(directory).iterdir() if f.is_file() and f.suffix in SUFFIXES[route])


def state_dict_of(content: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The checkpoint's weights: the first of `WEIGHT_KEYS` holding a dict of tensors."""
    for key in WEIGHT_KEYS:
        value = content.get(key)
        if isinstance(value, dict) and value and all(isinstance(t, torch.Tensor) for t in value.values()):
            return value
    return None


def record_size(content: dict[str, Any]) -> int:
    """How much of its training a checkpoint records: each field present, each numeric validation figure."""
    size = sum(1 for name in RECORD_FIELDS if content.get(name) not in (None, {}, []))
    metrics = content.get("metrics") if isinstance(content.get("metrics"), dict) else {}
    figures = {**{k: v for k, v in content.items() if isinstance(k, str) and k.startswith(("val_", "train_"))}, **metrics}
    return size + sum(1 for v in figures.values() if isinstance(v, (int, float)) and not isinstance(v, bool))


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """A digest of every tensor's name, dtype, shape and bytes (read from the memory map, once)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def candidate(path: Path, route: str) -> Candidate:
    if route in ("model_file", "predictions"):
        return Candidate(path, None, None, 0, None)
    content = peek(path)
    step = content.get("step", content.get("global_step"))
    return Candidate(path, content.get("epoch"), step, record_size(content), state_dict_of(content))


def may_be_same(a: Candidate, b: Candidate) -> bool:
    """False only when both record an epoch (or a step) and they differ."""
    for left, right in ((a.epoch, b.epoch), (a.step, b.step)):
        if left is not None and right is not None and left != right:
            return False
    return True


def preference(c: Candidate) -> tuple:
    """Sort key of the file to gate among copies of one model: most record, then an epoch-named file, then name."""
    role = c.path.stem.lower() in ROLE_NAMES
    return (-c.record, role, c.path.name)


def select_run_files(directory: str | Path, route: str) -> RunFolder:
    """The rule of the module docstring over `directory`."""
    directory = Path(directory)
    by_bytes = route in ("model_file", "predictions")
    candidates = [candidate(p, route) for p in run_files(directory, route)]
    groups: list[list[Candidate]] = []
    for c in candidates:
        for group in groups:
            first = group[0]
            if may_be_same(first, c) and first.fingerprint(by_bytes) is not None and first.fingerprint(by_bytes) == c.fingerprint(by_bytes):
                group.append(c)
                break
        else:
            groups.append([c])
    kept: list[Path] = []
    skipped: list[Skipped] = []
    for group in groups:
        ordered = sorted(group, key=preference)
        chosen = ordered[0]
        kept.append(chosen.path)
        for other in ordered[1:]:
            what = "the same bytes" if by_bytes else "the same weights"
            if other.record < chosen.record:
                why = f"it records more of its training ({chosen.record} field(s) against {other.record})"
            elif preference(other)[1] and not preference(chosen)[1]:
                why = f"both record {chosen.record} field(s) of their training, and its name says its epoch"
            else:
                why = f"both record {chosen.record} field(s) of their training, and it comes first by name"
            skipped.append(Skipped(other.path, chosen.path, f"{what} as {chosen.path.name}, which is gated: {why}"))
    kept.sort(key=lambda p: p.name)
    for c in candidates:  # release the memory maps
        c.weights = None
    return RunFolder(directory, route, kept, skipped)
