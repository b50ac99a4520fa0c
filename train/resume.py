"""The run directory (`--out`) and `--resume`: what may be written, which checkpoint continues the run, and
the run made consistent with that checkpoint.

A run directory holds `history.json` (the record), `last.pt` (where the run is), `epoch_NNN.pt`
(each finished epoch: epoch_001.pt after the first) and `best.pt`. Every checkpoint the loop writes
holds the same fields (`lvmcore.artifacts.checkpoint.TrainingCheckpoint`), the loop's position among them, so any of
them continues the run: `--resume` (last.pt) or `--resume epoch_002.pt`. Resuming from an earlier
checkpoint rewinds the run to it: last.pt becomes a copy of it, history.json keeps the rows up to
its epoch, and a best.pt from a later epoch is replaced by the best of the epochs kept. Later
epochs' files are overwritten as the run reaches them again. Each refusal is one `ArtifactError`
line saying what to do instead.

The loop calls three functions here, in order: `open_resume` (before anything is built: the
checkpoint named, the run's history and the checkpoint's fields, each checked), `restore` (once the
model, optimizer and scheduler exist: the settings that define the run must match, then the states
are loaded and the loop's position returned) and `rewind` (rank 0: the run directory made to agree).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvmcore.artifacts.checkpoint import peek_epoch_step, read_checkpoint_dict, save_checkpoint
from lvmcore.artifacts.history import TrainingHistory, read_history, write_history
from lvmcore.artifacts.validate import require_file, require_int, require_number, require_object, shown
from lvmcore.errors import ArtifactError, exception_reason
from lvmcore.files import write_atomic
from .config import LAST_CHECKPOINT, RUN_DEFINING
from .validation import BEST_BY

STATE_FIELDS = ("model_state", "optimizer_state", "scheduler_state", "rng_state", "train_config", "resume")


def check_out_dir(out: Path) -> None:
    """Refuse an `--out` that is not a directory, or that cannot be created, before anything is read or written."""
    if out.is_symlink() and not out.exists():
        raise ArtifactError(out, f"is a dangling symlink (to {os.readlink(out)}); --out names the run directory")
    if out.exists():
        if not out.is_dir():
            raise ArtifactError(out, "exists and is not a directory; --out names the run directory (choose another path)")
        return
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ArtifactError(out, f"cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ArtifactError(out, f"cannot be created: {ancestor} is not writable")


RUN_FILES = ("history.json", "*.pt")  # what a run writes into --out, and what --overwrite removes


def run_files(out: Path) -> list[Path]:
    """The files of a run already in `out` (history.json and checkpoints), sorted."""
    if not out.is_dir():
        return []
    return sorted({path for pattern in RUN_FILES for path in out.glob(pattern) if path.is_file() or path.is_symlink()})


def refuse_existing_run(out: Path) -> None:
    """A new run never writes over another: an --out that holds one needs --resume or --overwrite."""
    found = run_files(out)
    if found:
        marker = peek_epoch_step(out / LAST_CHECKPOINT) if (out / LAST_CHECKPOINT).is_file() else None
        where = f", last.pt at epoch {marker[0]}" if marker and marker[0] is not None else ""
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise ArtifactError(
            out, f"already holds a training run ({names}{where}): continue it with --resume, start it over with --overwrite "
            "(its history.json and checkpoints are deleted), or choose another --out"
        )


def remove_run_files(out: Path) -> list[Path]:
    """--overwrite: delete the previous run's history.json and checkpoints, so no stale epoch_NNN.pt is gated later."""
    removed = run_files(out)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def make_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(out, f"cannot be created: {exc.strerror or exc}") from None


def checkpoints_in(out: Path) -> list[str]:
    """The checkpoint names in a run directory: last.pt first, then the rest in order."""
    names = sorted(p.name for p in out.glob("*.pt"))
    return sorted(names, key=lambda name: name != LAST_CHECKPOINT)


def resume_path(out: Path, checkpoint: Path) -> Path:
    """The checkpoint `--resume` continues from, refused in one line when there is none or it is not this run's."""
    if not out.is_dir():
        raise ArtifactError(out, "no run to resume: the directory does not exist; start the run without --resume")
    parent = Path(os.path.abspath(checkpoint)).parent
    if not (parent.is_dir() and os.path.samefile(parent, out)):
        raise ArtifactError(
            checkpoint,
            f"is not a checkpoint of the run in --out {out}: --resume continues that run from one of its own checkpoints "
            "(last.pt, epoch_NNN.pt); to branch a run, copy its directory and resume the copy",
        )
    if not checkpoint.exists() and not checkpoint.is_symlink():
        others = checkpoints_in(out)
        if not others:
            raise ArtifactError(
                checkpoint, "no checkpoint to resume from: the run stopped before it wrote its first checkpoint; start it again without --resume"
            )
        raise ArtifactError(checkpoint, f"checkpoint file not found; the run in {out} has {', '.join(others)}: pass one as --resume NAME")
    require_file(checkpoint, "checkpoint file")
    return checkpoint


def read_resume_state(path: Path, progress_fields: set[str]) -> dict[str, Any]:
    """A checkpoint of this loop with every field `restore` reads, each of its type.

    progress_fields: the fields of the loop's position (`train.loop.EpochProgress`), stored in `resume.progress`.
    """
    state = read_checkpoint_dict(path)
    missing = [name for name in STATE_FIELDS if name not in state]
    if missing:
        raise ArtifactError(
            path,
            f"cannot be resumed: it has no {', '.join(missing)} (it is not a checkpoint written by python -m train); "
            "resume from last.pt or an epoch_NNN.pt of the run",
        )
    for name in ("model_state", "optimizer_state", "scheduler_state", "train_config"):
        require_object(path, name, state[name])
    rng = require_object(path, "rng_state", state["rng_state"])
    if not isinstance(rng.get("torch"), torch.Tensor) or rng["torch"].dtype != torch.uint8:
        raise ArtifactError(path, f"rng_state.torch is {shown(type(rng.get('torch')).__name__)}, expected torch's RNG state (a uint8 tensor)")
    require_int(path, "epoch", state.get("epoch"), minimum=0)
    position = require_object(path, "resume", state["resume"])
    require_number(path, "resume.best_r_at_5", position.get("best_r_at_5"))
    progress = require_object(path, "resume.progress", position.get("progress"))
    if set(progress) != progress_fields:
        raise ArtifactError(path, f"resume.progress has fields {sorted(map(str, progress))[:12]}, expected {sorted(progress_fields)}")
    for name in ("epoch", "next_step", "steps", "samples"):
        require_int(path, f"resume.progress.{name}", progress[name], minimum=0)
    for name in ("negatives_per_positive", "bank_size"):
        if progress[name] is not None:
            require_int(path, f"resume.progress.{name}", progress[name], minimum=0)
    for name in ("loss_sum", "seconds", "masked_sum"):
        require_number(path, f"resume.progress.{name}", progress[name])
    trace = progress["lr_trace"]
    if not isinstance(trace, list) or not all(isinstance(p, list) and len(p) == 2 for p in trace):
        raise ArtifactError(path, "resume.progress.lr_trace is not a list of [step, lr] pairs")
    for name in ("negatives_per_positive", "bank_size"):
        if state.get(name) is not None:
            require_int(path, name, state[name], minimum=0)
    if state.get("masked_per_positive") is not None:
        require_number(path, "masked_per_positive", state["masked_per_positive"])
    return state


@dataclass
class Resume:
    """What `--resume` read before the run was built: the checkpoint, its fields, and the run's history."""

    path: Path
    state: dict[str, Any]  # the checkpoint's fields (read_resume_state)
    history: TrainingHistory | None  # None: no history.json (moved aside), the run goes on without the earlier rows


def open_resume(out: Path, checkpoint: Path, progress_fields: set[str]) -> Resume:
    """The checkpoint `--resume` names, the run's history.json and the checkpoint's fields, each refused in one line."""
    path = resume_path(out, checkpoint)
    history = read_history(out / "history.json", complete=True)  # the run's record: refused, not repaired, when broken
    return Resume(path, read_resume_state(path, progress_fields), history)


@dataclass
class ResumedPosition:
    """Where the restored run stands: the loop's position in its epoch and the figures it carries on from."""

    progress: dict[str, Any]  # resume.progress: the fields of `train.loop.EpochProgress`
    best_r_at_5: float  # the best BEST_BY so far
    negatives_per_positive: int | None
    bank_size: int | None
    masked_per_positive: float | None


def restore(
    resume: Resume, *, run_config: dict[str, Any], world_size: int, payload_hash: str | None, payload: Any, epochs: int, steps_per_epoch: int,
    model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
) -> ResumedPosition:
    """Refuse a checkpoint of another run, then load its model, optimizer, scheduler and RNG states.

    Any checkpoint of the run continues it (each holds the loop's position); the settings that define
    the run (`RUN_DEFINING`), the process count and the payload must match. run_config: this run's
    settings with the defaults resolved as in the stored one (history.json's "config").
    """
    path, state = resume.path, resume.state
    stored = state["train_config"]
    for name in RUN_DEFINING:
        if stored.get(name) != run_config[name]:
            raise ArtifactError(path, f"was trained with {name}={stored.get(name)!r}, this run asks for {run_config[name]!r}; resume with the same settings")
    if stored.get("world_size") != world_size:
        raise ArtifactError(path, f"was trained on {stored.get('world_size')} process(es), this run has {world_size}")
    provenance = state.get("provenance")
    stored_hash = provenance.get("payload_hash") if isinstance(provenance, dict) else None
    if stored_hash is not None and stored_hash != payload_hash:
        raise ArtifactError(path, f"was trained on payload {stored_hash}, --payload {payload} is {payload_hash}; resume with the same data")
    progress = state["resume"]["progress"]
    if progress["next_step"] > steps_per_epoch or progress["epoch"] > epochs:
        raise ArtifactError(
            path,
            f"is at step {progress['next_step']} of epoch {progress['epoch'] + 1}, outside this run of {epochs} epoch(s) of "
            f"{steps_per_epoch} steps; resume with the same data",
        )
    load_into(path, "model_state", lambda: model.load_state_dict(state["model_state"]))
    load_into(path, "optimizer_state", lambda: optimizer.load_state_dict(state["optimizer_state"]))
    load_into(path, "scheduler_state", lambda: scheduler.load_state_dict(state["scheduler_state"]))
    load_into(path, "rng_state", lambda: torch.set_rng_state(state["rng_state"]["torch"]))
    return ResumedPosition(
        progress=progress,
        best_r_at_5=float(state["resume"]["best_r_at_5"]),
        negatives_per_positive=state.get("negatives_per_positive"),
        bank_size=state.get("bank_size"),
        masked_per_positive=state.get("masked_per_positive"),
    )


def load_into(path: Path, what: str, load) -> None:
    """Call `load()` (a load_state_dict), a state that does not fit being one line naming `what`."""
    try:
        load()
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ArtifactError(path, f"cannot be resumed: its {what} does not fit this run ({exception_reason(exc)})") from None


def copy_checkpoint(source: Path, target: Path) -> None:
    """`target` becomes a byte copy of `source`, atomically."""

    def copy(out) -> None:
        with source.open("rb") as handle:
            shutil.copyfileobj(handle, out, 16 << 20)

    write_atomic(target, copy)


EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt")


def epoch_checkpoints_after(out: Path, epoch_done: int) -> list[Path]:
    """The run's epoch_NNN.pt files with NNN > epoch_done."""
    return sorted(p for p in out.glob("epoch_*.pt") if (m := EPOCH_FILE.fullmatch(p.name)) and int(m.group(1)) > epoch_done)


def rewind(out: Path, checkpoint: Path, epoch_done: int, history: TrainingHistory) -> None:
    """Make the run directory agree with `checkpoint` (resumed at `epoch_done` finished epochs); rank 0 only.

    Order matters for a kill at any point: last.pt first (a bare --resume then continues from here and
    cuts the history itself), then the history cut back, then the later epochs' checkpoints removed
    (the abandoned branch: gating the run directory must not pick them up), then best.pt.
    """
    last = out / LAST_CHECKPOINT
    if not (last.exists() and os.path.samefile(checkpoint, last)):
        copy_checkpoint(checkpoint, last)
    write_history(out / "history.json", history)
    for later in epoch_checkpoints_after(out, epoch_done):
        later.unlink(missing_ok=True)
    best = out / "best.pt"
    stored = peek_epoch_step(best) if best.is_file() else None
    if stored is None or not isinstance(stored[0], int) or stored[0] <= epoch_done:
        return
    kept = [row for row in history.epochs if row.checkpoint and Path(row.checkpoint).name == row.checkpoint]
    flagged = [row for row in kept if row.extra.get("best") is True]  # the loop marks each epoch that improved
    chosen = flagged[-1] if flagged else max(kept, key=lambda row: row.extra.get(BEST_BY, row.val_r_at_5), default=None)
    try:
        content = read_checkpoint_dict(out / chosen.checkpoint) if chosen is not None else None
    except ArtifactError:
        content = None  # the kept best epoch's own file is gone or broken
    if content is None:
        best.unlink()  # from an epoch this run no longer has, and no kept epoch to take its place
        return
    metrics = content.get("metrics")
    content["metrics"] = {**(metrics if isinstance(metrics, dict) else {}), "chosen_by": BEST_BY}
    save_checkpoint(best, content)
