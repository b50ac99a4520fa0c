"""The training loop: plain code from data to checkpoints, readable top to bottom.

One optimizer step = one effective batch of batch_size x accumulation windows per process,
scored by one InfoNCE (`lvmcore.training.loss`, one loss per file): against every training chunk with the window's
own context chunks masked (`--loss bank`, the default; or a sampled bank plus every process's
targets), or against every target of every process (`--loss in_batch`), the LR set by
`lr_at(step)` before the step (`lvmcore.training.schedule`), gradients averaged over processes, clipped,
then AdamW. After each epoch: validation retrieval, `epoch_NNN.pt`, `last.pt`, `best.pt` (by
validation R@5), the optional gate run, and `history.json`.

Determinism: data order is a function of (seed, epoch); augmentation of (seed, epoch, step,
rank); the torch RNG (dropout) is reseeded from (seed, step, rank) before every step. So a run
resumed from `last.pt` at step k, or from any `epoch_NNN.pt` (`train/resume.py`), ends with the same
weights as one never interrupted (CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from lvmcore.artifacts.checkpoint import TrainingCheckpoint, save_checkpoint
from lvmcore.plumbing.user_files import read_eval_rows
from lvmcore.artifacts.history import EpochRecord, TrainingHistory, write_history
from lvmcore.errors import ArtifactError
from lvmcore.files import remove_orphan_temps, write_json_atomic
from lvmcore.keys import pack_keys
from lvmcore.training.bank_loss import BankBatch
from lvmcore.training.loss import training_step
from lvmcore.training.negatives import sample_bank_rows
from lvmcore.models import PRESETS, build_model
from lvmcore.training.schedule import SCHEDULE_NAME, ScheduleConfig, WarmupCosine
from .config import SENTINEL, TrainConfig
from .data import HardNegativeSampler, TrainingBank, TrainingSplits, assemble_batch, bank_sample_rng, epoch_order, load_splits, step_rng
from .ddp import DistContext, all_gather_rows, average_gradients, barrier, broadcast_parameters, init_distributed, mean_over_ranks
from .gate_hook import DEFAULT_PYTEST, gate_summary, run_gate
from .resume import Resume, check_out_dir, make_out_dir, open_resume, refuse_existing_run, remove_run_files, restore, rewind
from .validation import BEST_BY, validate

class TrainingDiverged(RuntimeError):
    """The loss or gradient norm went NaN/inf; the message is one line naming the step."""


@dataclass
class TrainHooks:
    """Test seams: code run around each optimizer step, and the pytest command of the gate hook."""

    before_step: Callable[[int, nn.Module], None] | None = None  # (global step, model)
    after_step: Callable[[int], None] | None = None  # (global step), after last.pt was written
    pytest_command: tuple[str, ...] = DEFAULT_PYTEST
    gate_cwd: Path | None = None


@dataclass
class EpochProgress:
    """What an epoch has measured so far; stored in last.pt so a resumed epoch reports the whole epoch."""

    epoch: int  # 0-based epoch in progress
    next_step: int = 0  # 0-based step inside the epoch to run next
    loss_sum: float = 0.0
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    lr_trace: list[list[float]] = field(default_factory=list)
    negatives_per_positive: int | None = None  # the fewest negatives any positive of the epoch saw
    bank_size: int | None = None  # columns each positive was scored against (the fewest of the epoch)
    masked_sum: float = 0.0  # sum over steps of the mean masked columns per positive

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def steps_per_epoch(config: TrainConfig, windows: int, world_size: int) -> int:
    """Full effective batches over all processes; the last incomplete one is dropped so every step has the same negatives."""
    steps = windows // (config.effective_batch * world_size)
    if config.max_steps_per_epoch > 0:
        steps = min(steps, config.max_steps_per_epoch)
    return steps


def min_over_ranks(value: int, device: torch.device) -> int:
    """The minimum of a Python int over ranks (the fewest negatives any rank's positive saw)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


class Trainer:
    """Holds one run's model, optimizer, data and bookkeeping; `run()` trains every remaining epoch."""

    def __init__(self, config: TrainConfig, hooks: TrainHooks | None = None) -> None:
        self.config = config
        self.hooks = hooks or TrainHooks()
        self.out = Path(config.out)
        check_out_dir(self.out)  # before anything is read: a bad --out or --resume is refused at once, nothing written
        self.resuming: Resume | None = None
        if config.resume:
            self.resuming = open_resume(self.out, config.resume_checkpoint(), {f.name for f in fields(EpochProgress)})
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.dist: DistContext = init_distributed(config.device)
        if self.dist.is_main and not config.resume and not config.overwrite:
            refuse_existing_run(self.out)  # the main process only: the others start while it may already be writing
        self.device = self.dist.device
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(config.seed)
        self.read_options = config.read_options()
        self.splits: TrainingSplits = load_splits(config.payload, config.train_data, config.validation_data, config.seed, config.validation_fraction,
                                                  self.read_options)
        payload = self.splits.payload
        if config.gate_every_epoch and config.eval_set is not None:
            read_eval_rows(config.eval_set, payload, self.read_options)  # checked now, as the gate reads it, not after the first epoch
        self.model_config = PRESETS[config.preset](dim=payload.dim, residual=config.residual)
        self.model = build_model(self.model_config).to(self.device)
        broadcast_parameters(self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps_per_epoch = steps_per_epoch(config, self.splits.train.count, self.dist.world_size)
        if self.steps_per_epoch < 1:
            raise ArtifactError(
                config.train_data,
                f"has {self.splits.train.count} windows, fewer than one effective batch of "
                f"{config.effective_batch * self.dist.world_size} (batch {config.batch_size} x accumulation {config.accumulation} x {self.dist.world_size} process(es))",
            )
        total = self.steps_per_epoch * config.epochs
        self.schedule = ScheduleConfig(
            lr=config.lr, min_lr=config.resolved_min_lr(), warmup_steps=config.resolved_warmup(total), total_steps=total, schedule=SCHEDULE_NAME
        )
        self.scheduler = WarmupCosine(self.optimizer, self.schedule)
        self.sampler = HardNegativeSampler(payload, self.splits.training_articles) if config.hard_negatives > 0 else None
        self.setup_bank()
        self.provenance = {
            "embedder": payload.embedder,
            "dim": payload.dim,
            "norm": payload.manifest.get("norm"),
            "metric": payload.manifest.get("metric"),
            "payload_hash": payload.content_hash,
            "train_data": str(config.train_data),
            "validation_data": None if config.validation_data is None else str(config.validation_data),
        }
        self.history = TrainingHistory(config=self.history_config())
        self.progress = EpochProgress(epoch=0)
        self.best_r_at_5 = -1.0
        self.step_negatives: int | None = None  # the running epoch's fewest negatives per positive
        self.step_bank_size: int | None = None
        self.step_masked: float | None = None  # the running epoch's mean masked columns per positive

    def setup_bank(self) -> None:
        """The bank loss's columns: every training-article row; the full bank's vectors go to the device once."""
        config, world = self.config, self.dist.world_size
        self.bank: TrainingBank | None = None
        self.bank_negatives = config.resolved_bank_negatives(0)
        self.bank_size = config.effective_batch * world * (1 + config.hard_negatives)  # in-batch columns
        self.key_multiplicity = 1
        if config.loss != "bank":
            return
        train = self.splits.train
        self.bank = TrainingBank.of_articles(self.splits.payload, self.splits.training_articles)
        self.window_target_columns = self.bank.target_columns(train)  # (W,)
        windows_per_key = int(np.unique(pack_keys(train.truth_keys), return_counts=True)[1].max())
        self.key_multiplicity = max(self.bank.key_multiplicity, windows_per_key)
        self.bank_negatives = config.resolved_bank_negatives(self.bank.size)
        self.bank_codes = torch.from_numpy(self.bank.codes).to(self.device)  # (K,)
        if self.bank_negatives == 0:
            self.bank_size = self.bank.size
            self.bank_vectors = torch.from_numpy(self.bank.vectors()).to(self.device)  # (K, D)
            return
        batch_columns = config.effective_batch * world
        room = self.bank.size - batch_columns * self.key_multiplicity
        if self.bank_negatives > room:
            raise ArtifactError(
                config.train_data,
                f"--bank-negatives {self.bank_negatives} leaves no room: the bank has {self.bank.size} training rows and "
                f"{batch_columns} of them are the step's targets; ask for at most {max(room, 0)}, or 0 for the full bank",
            )
        self.bank_size = batch_columns + self.bank_negatives

    # ------------------------------------------------------------------ bookkeeping

    def history_config(self) -> dict[str, Any]:
        """Every setting of the run, with the values the defaults resolved to."""
        return {
            **self.config.to_dict(),
            **self.schedule.to_dict(),
            "world_size": self.dist.world_size,
            "effective_batch": self.config.effective_batch * self.dist.world_size,
            "steps_per_epoch": self.steps_per_epoch,
            "model_config": self.model_config.to_dict(),
            "best_by": BEST_BY,  # the validation figure best.pt is chosen by
            "loss": self.config.loss,
            "bank_negatives": self.bank_negatives,  # None: in-batch; 0: the full bank; else rows sampled per step
            "bank_size": self.bank_size,  # columns each positive is scored against
            "bank_key_multiplicity": self.key_multiplicity,  # the most columns one key can hold in a step
            "context_length": self.splits.train.context_length,
            "residual": bool(getattr(self.model_config, "residual", False)),
            "training_windows": self.splits.train.count,
            "validation_windows": self.splits.validation.count,
            "device": str(self.device),
        }

    def checkpoint(self, epoch_done: int, metrics: dict[str, Any]) -> TrainingCheckpoint:
        return TrainingCheckpoint(
            model_config=self.model_config.to_dict(),
            model_state=self.model.state_dict(),
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(),
            rng_state=rng_state(),
            epoch=epoch_done,
            step=self.scheduler.step_count,
            metrics=metrics,
            provenance=self.provenance,
            training_articles=[int(a) for a in self.splits.training_articles],
            validation_articles=[int(a) for a in self.splits.validation_articles],
            negatives_per_positive=self.step_negatives,
            bank_size=self.step_bank_size,
            masked_per_positive=self.step_masked,
            loss=self.config.loss,
            bank_negatives=self.bank_negatives,
            residual=bool(getattr(self.model_config, "residual", False)),
            train_config=self.history.config,
            resume={"progress": self.progress.to_dict(), "best_r_at_5": self.best_r_at_5},
        )

    def save(self, name: str, epoch_done: int, metrics: dict[str, Any]) -> Path:
        return self.written(self.out / name, lambda: save_checkpoint(self.out / name, self.checkpoint(epoch_done, metrics).content()))

    def write_history(self) -> Path:
        path = self.out / "history.json"
        return self.written(path, lambda: write_history(path, self.history))

    @staticmethod
    def written(path: Path, write: Callable[[], Any]) -> Any:
        """Run one atomic write; a disk that refuses it (full, read-only, a directory in the way) is one line."""
        try:
            return write()
        except OSError as exc:
            raise ArtifactError(path, f"cannot be written: {exc.strerror or exc}") from None

    def resume(self) -> None:
        """Continue from the checkpoint `--resume` named (`train/resume.py`: refused when it is another run's,
        restored, and the run directory rewound to it when it is one before last.pt)."""
        resume = self.resuming
        assert resume is not None
        position = restore(
            resume, run_config=self.history.config, world_size=self.dist.world_size, payload_hash=self.provenance["payload_hash"],
            payload=self.config.payload, epochs=self.config.epochs, steps_per_epoch=self.steps_per_epoch,
            model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
        )
        self.progress = EpochProgress(**position.progress)
        self.best_r_at_5 = position.best_r_at_5
        self.step_negatives, self.step_bank_size, self.step_masked = position.negatives_per_positive, position.bank_size, position.masked_per_positive
        if resume.history is not None:  # None: no history.json (moved aside), the run goes on without the earlier rows
            self.history.epochs = resume.history.up_to(self.progress.epoch)
        if self.dist.is_main:
            self.written(self.out, lambda: rewind(self.out, resume.path, self.progress.epoch, self.history))
        self.resuming = None  # the weights are in the model now

    # ------------------------------------------------------------------ training

    def autocast(self):
        if not self.config.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def step_batch(
        self, order: np.ndarray, epoch: int, step_in_epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, BankBatch | None]:
        """This rank's share of the step's global effective batch, augmented, as tensors on the device, and its bank."""
        per_rank = self.config.effective_batch
        start = (step_in_epoch * self.dist.world_size + self.dist.rank) * per_rank
        rows = order[start : start + per_rank]
        rng = step_rng(self.config.seed, epoch, step_in_epoch, self.dist.rank)
        batch = assemble_batch(
            self.splits.train,
            rows,
            rng,
            article_dropout_p=self.config.article_dropout,
            span_corruption_p=self.config.span_corruption,
            hard_negatives=self.config.hard_negatives,
            sampler=self.sampler,
        )
        to = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        bank = None
        if self.bank is not None:
            codes = dict(context_codes=to(pack_keys(batch.context_keys)), target_codes=to(pack_keys(batch.truth_keys)))  # (B, C), (B,)
            if self.bank_negatives == 0:
                bank = BankBatch(self.bank_vectors, self.bank_codes, positive_columns=to(self.window_target_columns[rows]), **codes)
            else:
                step_rows = order[step_in_epoch * self.dist.world_size * per_rank :][: self.dist.world_size * per_rank]  # every rank's windows
                excluded = pack_keys(self.splits.train.truth_keys[step_rows])  # the step's targets are columns already
                sample = sample_bank_rows(self.bank.codes, excluded, int(self.bank_negatives), bank_sample_rng(self.config.seed, epoch, step_in_epoch))
                bank = BankBatch(to(self.bank.vectors(sample)), to(self.bank.codes[sample]), **codes)
        return to(batch.contexts), to(batch.targets), to(batch.negatives), bank

    def optimizer_step(self, order: np.ndarray, epoch: int, step_in_epoch: int) -> float:
        """One optimizer step; raises TrainingDiverged before touching the weights if the loss is not finite."""
        global_step = self.scheduler.step_count
        if self.hooks.before_step:
            self.hooks.before_step(global_step, self.model)
        torch.manual_seed((self.config.seed * 1_000_003 + global_step * 7_919 + self.dist.rank) % 2**63)  # dropout masks of this step
        contexts, targets, negatives, bank = self.step_batch(order, epoch, step_in_epoch)  # (B, C, D), (B, D), (B, k, D)
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.apply()
        result = training_step(
            self.model,
            contexts,
            targets,
            micro_batch_size=self.config.batch_size,
            temperature=self.config.temperature,
            hard_negatives=negatives,
            bank=bank,
            gather=all_gather_rows,
            autocast=self.autocast,
        )
        average_gradients(self.model)
        loss = mean_over_ranks(result.loss, self.device)
        if not math.isfinite(loss):
            raise TrainingDiverged(self.diverged_message(global_step, f"loss is {loss}"))
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip))
        if not math.isfinite(norm):
            raise TrainingDiverged(self.diverged_message(global_step, f"gradient norm is {norm}"))
        self.optimizer.step()
        self.scheduler.advance()
        fewest = min_over_ranks(result.negatives_per_positive, self.device)
        p = self.progress
        p.loss_sum += loss
        p.steps += 1
        p.samples += result.positives * self.dist.world_size
        p.lr_trace.append([global_step, lr])
        p.negatives_per_positive = fewest if p.negatives_per_positive is None else min(p.negatives_per_positive, fewest)
        p.bank_size = result.bank_size if p.bank_size is None else min(p.bank_size, result.bank_size)
        p.masked_sum += mean_over_ranks(result.masked_per_positive, self.device)
        self.step_negatives, self.step_bank_size, self.step_masked = p.negatives_per_positive, p.bank_size, p.masked_sum / p.steps
        return loss

    def diverged_message(self, step: int, what: str) -> str:
        last = self.out / "last.pt"
        kept = f"{last} is the last good checkpoint" if last.is_file() else "no checkpoint was written yet"
        return f"training stopped at optimizer step {step} (epoch {self.progress.epoch + 1}): {what}; {kept}"

    def train_epoch(self, epoch: int) -> None:
        order = epoch_order(self.splits.train.count, self.config.seed, epoch)
        self.model.train()
        bar = tqdm(
            range(self.progress.next_step, self.steps_per_epoch),
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            unit="step",
            disable=not (self.config.progress and self.dist.is_main),
            initial=self.progress.next_step,
            total=self.steps_per_epoch,
        )
        started = time.perf_counter()
        seconds_before = self.progress.seconds
        for step_in_epoch in bar:
            loss = self.optimizer_step(order, epoch, step_in_epoch)
            self.progress.next_step = step_in_epoch + 1
            self.progress.seconds = seconds_before + time.perf_counter() - started
            bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{self.progress.samples / max(self.progress.seconds, 1e-9):.0f}")
            every = self.config.checkpoint_every_steps
            if every > 0 and self.scheduler.step_count % every == 0 and self.dist.is_main:
                self.save("last.pt", epoch, {})
            if self.hooks.after_step:
                self.hooks.after_step(self.scheduler.step_count - 1)
        bar.close()

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """Validate, write epoch_NNN.pt / last.pt / best.pt, run the gate, append the history row (rank 0)."""
        p = self.progress
        validation_started = time.perf_counter()
        metrics = validate(
            self.model,
            self.splits.validation,
            self.splits.payload,
            batch_size=self.config.effective_batch,
            temperature=self.config.temperature,
            max_windows=self.config.max_validation_windows,
            seed=self.config.seed,
        )
        train_loss = p.loss_sum / max(p.steps, 1)
        metrics = {"train_loss": train_loss, **metrics}
        name = f"epoch_{epoch + 1:03d}.pt"
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step_end": self.scheduler.step_count,
            "train_loss": train_loss,
            "val_loss": metrics["val_loss"],
            "val_cosine": metrics["val_cosine"],
            "val_r_at_1": metrics["val_r_at_1"],
            "val_r_at_5": metrics["val_r_at_5"],
            "val_excluded_r_at_5": metrics["val_excluded_r_at_5"],
            "val_copy_last_excluded_r_at_5": metrics["val_copy_last_excluded_r_at_5"],
            "val_excluded_over_copy_last_low": metrics["val_excluded_over_copy_last_low"],
            "val_delta": metrics["val_delta"],
            "val_auc": metrics["val_auc"],
            "val_windows": metrics["val_windows"],
            "validation_seconds": time.perf_counter() - validation_started,
            "lr_start": p.lr_trace[0][1] if p.lr_trace else None,
            "lr_end": p.lr_trace[-1][1] if p.lr_trace else None,
            "lr_trace": p.lr_trace,
            "seconds": p.seconds,
            "samples_per_s": p.samples / max(p.seconds, 1e-9),
            "negatives_per_positive": p.negatives_per_positive,  # the fewest unmasked negatives any positive of the epoch saw
            "bank_size": p.bank_size,  # columns scored per positive
            "masked_per_positive": p.masked_sum / max(p.steps, 1),  # mean masked columns per positive
            "checkpoint": name,
        }
        # the next epoch's position goes into last.pt, so a resume after this point starts the next epoch
        self.progress = EpochProgress(epoch=epoch + 1)
        improved = metrics[BEST_BY] > self.best_r_at_5  # best_r_at_5 holds the best BEST_BY so far
        if improved:
            self.best_r_at_5 = metrics[BEST_BY]
        row["best"] = improved
        row["best_by"] = BEST_BY
        self.save(name, epoch + 1, metrics)
        if improved:
            self.save("best.pt", epoch + 1, {**metrics, "chosen_by": BEST_BY})
        record = EpochRecord.from_dict(None, row)
        self.history.epochs.append(record)
        self.write_history()  # before the gate: it reads this epoch's row
        if self.config.gate_every_epoch:
            row["gate"] = record.extra["gate"] = self.gate(self.out / name)
            self.write_history()
        self.save("last.pt", epoch + 1, metrics)  # last: after history.json, so a resume never loses a row
        return row

    def gate(self, checkpoint: Path) -> dict[str, Any]:
        if self.config.eval_set is None:
            return {"exit_code": None, "decision": "skipped: no --eval-set", "report": None}
        return run_gate(
            self.out,
            checkpoint,
            payload=self.config.payload,
            eval_set=self.config.eval_set,
            train_data=self.config.train_data,
            read_options=self.read_options,
            pytest_command=self.hooks.pytest_command,
            cwd=self.hooks.gate_cwd,
        )

    def run(self) -> TrainingHistory:
        make_out_dir(self.out)
        if self.dist.is_main:
            remove_orphan_temps(self.out)  # temp files of a writer that was killed (no live process has their pid)
            if self.config.overwrite:
                remove_run_files(self.out)
        if self.config.resume:
            self.resume()
        elif self.dist.is_main:
            self.write_history()
        if self.dist.is_main:
            (self.out / SENTINEL).unlink(missing_ok=True)  # the run goes on (or starts over): a watcher must not stop now
        try:
            self.train_epochs()
        except (TrainingDiverged, ArtifactError) as exc:
            self.mark_ended("diverged" if isinstance(exc, TrainingDiverged) else "error")
            raise
        self.mark_ended("finished")
        return self.history

    def mark_ended(self, status: str) -> None:
        """Write OUT/TRAINING_DONE: the run has ended, every checkpoint it will write is written (main process only).

        Only a run that started writes it; one refused at the start (a bad --out, an existing run, a bad
        --resume) has raised in `__init__` and leaves the folder as it found it."""
        if self.dist.is_main:
            write_json_atomic(self.out / SENTINEL, {"status": status, "epochs": len(self.history.epochs), "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def train_epochs(self) -> None:
        for epoch in range(self.progress.epoch, self.config.epochs):
            self.progress.epoch = epoch
            self.train_epoch(epoch)
            if self.dist.is_main:
                row = self.end_epoch(epoch)
                if self.config.progress:
                    tqdm.write(
                        f"epoch {row['epoch']}: train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
                        f"val_cosine {row['val_cosine']:.4f} R@1 {row['val_r_at_1']:.4f} R@5 {row['val_r_at_5']:.4f} "
                        f"negatives/positive {row['negatives_per_positive']} {row['samples_per_s']:.0f} samples/s"
                    )
                    if "gate" in row:
                        tqdm.write(gate_summary(row["gate"], self.out))
            else:
                self.progress = EpochProgress(epoch=epoch + 1)
            barrier()


def train(config: TrainConfig, hooks: TrainHooks | None = None) -> dict[str, Any]:
    """Train (or resume) a run; returns the history written to OUT/history.json, as that JSON object."""
    return Trainer(config, hooks).run().to_dict()
