"""Every training setting in one dataclass, and the command line that fills it (`python -m train --help`)."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lvmcore.default_data import DEFAULT_DATA
from lvmcore.models import PRESETS
from lvmcore.plumbing.user_files import ReadOptions
from lvmcore.training.negatives import LOSSES

# The bank loss scores the whole training bank exactly up to this many columns; a larger bank is
# sampled (DEFAULT_BANK_SAMPLE rows per step) unless --bank-negatives says otherwise.
FULL_BANK_MAX_COLUMNS = 65_536
DEFAULT_BANK_SAMPLE = 16_384


MAX_HARD_NEGATIVES = 1024  # same-document negatives per window: (B, k, D) floats per micro-batch
LAST_CHECKPOINT = "last.pt"  # what a bare --resume continues from
SENTINEL = "TRAINING_DONE"  # written into OUT when the run ends; `lvm-checks watch OUT` stops on it (lvm_checks/watch.py)
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


# Settings that define the run: `--resume` refuses to continue a run whose stored values differ.
RUN_DEFINING = (
    "preset",
    "epochs",
    "batch_size",
    "accumulation",
    "lr",
    "min_lr",
    "warmup_steps",
    "temperature",
    "loss",
    "bank_negatives",
    "residual",
    "seed",
    "weight_decay",
    "grad_clip",
    "article_dropout",
    "span_corruption",
    "hard_negatives",
    "bf16",
    "max_steps_per_epoch",
)


@dataclass
class TrainConfig:
    """One training run. Paths default to the repository's default bank (`fixtures/data/default/`)."""

    out: str
    preset: str = "gru"  # defaults chosen by bench/sweep_training.py: bench/SWEEP.md (gru, bank, residual, tau 0.05, 4 epochs)
    epochs: int = 4
    payload: str = str(DEFAULT_DATA / "payload")
    train_data: str = str(DEFAULT_DATA / "train.json")
    validation_data: str | None = str(DEFAULT_DATA / "validation.json")
    eval_set: str | None = str(DEFAULT_DATA / "eval.npz")
    allow_pickle: bool = False  # read pickles (object arrays, a pickled payload .npy) through the restricted unpickler, as the suite's --allow-pickle
    field_mapping: list[str] = field(default_factory=list)  # --field NAME=ARRAY lines, as the suite's --field: our field read from the file's array
    batch_size: int = 256  # windows per micro-batch (per process)
    accumulation: int = 1  # micro-batches per optimizer step; all of them share one InfoNCE
    lr: float = 1e-3
    min_lr: float | None = None  # None: lr / 100
    warmup_steps: int | None = None  # None: 5% of the optimizer steps (at least 1)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    temperature: float = 0.05  # tau; 0.03 and 0.07 were no better in bench/SWEEP.md
    loss: str = "bank"  # "bank": masked InfoNCE over the training bank; "in_batch": over the effective batch
    bank_negatives: int | None = None  # bank rows per step: 0 = the full bank; None = full up to FULL_BANK_MAX_COLUMNS, else DEFAULT_BANK_SAMPLE
    residual: bool = True  # prediction = normalize(last context vector + f(context)), f's output layer zero at init
    bf16: bool = False
    seed: int = 0
    resume: bool | str = False  # True: OUT/last.pt; a name (epoch_002.pt) inside OUT, or a path to a checkpoint in OUT
    overwrite: bool = False  # start a new run in an OUT that holds one: its history.json and checkpoints are removed first
    checkpoint_every_steps: int = 0  # 0: last.pt only at each epoch end
    gate_every_epoch: bool = False
    article_dropout: float = 0.0
    span_corruption: float = 0.0
    hard_negatives: int = 0
    validation_fraction: float = 0.1  # used only without --validation-data: split training articles by hash
    max_validation_windows: int = 4096  # 0: all
    max_steps_per_epoch: int = 0  # 0: every full effective batch; >0 caps an epoch (smoke runs)
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0: torch's default
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.resume, os.PathLike):
            self.resume = os.fspath(self.resume)
        problems = []
        for name, what in (("out", "the run directory"), ("payload", "the payload directory"), ("train_data", "the training windows")):
            if not str(getattr(self, name)).strip():
                problems.append(f"--{name.replace('_', '-')} is empty; name {what}")
        if self.overwrite and self.resume:
            problems.append("--overwrite starts the run over and --resume continues it: give one of them")
        if isinstance(self.resume, str) and not self.resume.strip():
            problems.append("--resume was given an empty name; pass nothing for OUT/last.pt, or a checkpoint such as epoch_002.pt")
        try:
            self.read_options()
        except ValueError as exc:  # FieldMappingError: the suite's own words
            problems.append(f"--field: {exc}")
        if self.preset not in PRESETS:
            problems.append(f"--preset must be one of {', '.join(sorted(PRESETS))}, got {self.preset!r}")
        if self.epochs < 1:
            problems.append(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.accumulation < 1:
            problems.append(f"--batch-size and --accumulation must be >= 1, got {self.batch_size}, {self.accumulation}")
        for name in ("lr", "temperature", "grad_clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"--weight-decay must be a finite number >= 0, got {self.weight_decay}")
        if self.min_lr is not None and not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            problems.append(f"--min-lr must be a finite number in [0, --lr {self.lr}], got {self.min_lr}")
        if not 0.0 < self.validation_fraction < 1.0:  # NaN fails too
            problems.append(f"--validation-fraction must be in (0, 1), got {self.validation_fraction}")
        for name in ("article_dropout", "span_corruption"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"--{name.replace('_', '-')} is a probability, got {getattr(self, name)}")
        for name in ("warmup_steps", "hard_negatives", "checkpoint_every_steps", "max_validation_windows", "max_steps_per_epoch", "threads"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if not 0 <= self.seed <= MAX_SEED:
            problems.append(f"--seed must be in [0, 2**63 - 1], got {self.seed}")
        if self.loss not in LOSSES:
            problems.append(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.hard_negatives > MAX_HARD_NEGATIVES:
            problems.append(f"--hard-negatives must be <= {MAX_HARD_NEGATIVES} (drawn with replacement from the target's article: "
                            f"more repeat its chunks and only grow the step's memory), got {self.hard_negatives}")
        if self.loss == "bank" and self.hard_negatives > 0:
            problems.append("--hard-negatives is for --loss in_batch: the bank already holds every same-article chunk")
        if self.bank_negatives is not None and self.bank_negatives < 0:
            problems.append(f"--bank-negatives must be >= 0 (0: the full bank), got {self.bank_negatives}")
        if problems:
            raise ValueError("; ".join(problems))

    def read_options(self) -> ReadOptions:
        """How the payload, training, validation and eval files are read: the suite's `--field` and `--allow-pickle`."""
        return ReadOptions.from_lines(list(self.field_mapping), self.allow_pickle)

    def resume_checkpoint(self) -> Path | None:
        """The checkpoint `--resume` names: OUT/last.pt for the bare flag, a bare name inside OUT, else the path as given."""
        if self.resume is False or self.resume is None:
            return None
        if self.resume is True:
            return Path(self.out) / LAST_CHECKPOINT
        bare = not any(sep and sep in self.resume for sep in (os.sep, os.altsep))
        return Path(self.out) / self.resume if bare else Path(self.resume)

    @property
    def effective_batch(self) -> int:
        """Windows per optimizer step on one process (batch_size x accumulation)."""
        return self.batch_size * self.accumulation

    def resolved_min_lr(self) -> float:
        return self.lr / 100 if self.min_lr is None else float(self.min_lr)

    def resolved_warmup(self, total_steps: int) -> int:
        return max(1, round(0.05 * total_steps)) if self.warmup_steps is None else int(self.warmup_steps)

    def resolved_bank_negatives(self, bank_rows: int) -> int | None:
        """Sampled bank rows per step: 0 for the full bank, None for the in-batch loss."""
        if self.loss != "bank":
            return None
        if self.bank_negatives is None:
            return 0 if bank_rows <= FULL_BANK_MAX_COLUMNS else DEFAULT_BANK_SAMPLE
        return int(self.bank_negatives)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are a ValueError (one line, printed by `python -m train` as `error: ...`, exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        raise ValueError(f"{message} (python -m train --help lists the options)")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        for action in self._actions:  # `--lr=--` reaches us as [] (argparse drops a "--" value): refuse it like any bad value
            appends = isinstance(action, argparse._AppendAction)  # --field collects a list: its values are checked one by one
            if action.option_strings and action.nargs is None and not appends and isinstance(getattr(namespace, action.dest, None), list):
                self.error(f"argument {action.option_strings[0]}: expected one value")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m train",
        description="Train a latent vector model with InfoNCE over the effective batch; "
        "writes history.json and checkpoints (last.pt, epoch_NNN.pt, best.pt by validation R@5 with each window's own context excluded) into --out.",
    )
    d = TrainConfig(out="OUT")  # the defaults
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--preset", default=d.preset, help="model preset from lvmcore.models.PRESETS (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--payload", default=d.payload,
                        help="payload: a directory in our format, a source-vectors .npz, or a pickled payload .npy (with --allow-pickle) (default: %(default)s)")
    parser.add_argument("--train-data", default=d.train_data,
                        help="windows spec (.json) or an .npz in any layout the suite reads; without context_keys each context "
                        "vector's key is recovered from the payload, and the file is refused when some match no payload row (default: %(default)s)")
    parser.add_argument(
        "--validation-data",
        default=d.validation_data,
        help="held-out windows; pass '' to split the training articles by a seeded hash instead (default: %(default)s)",
    )
    parser.add_argument("--eval-set", default=d.eval_set, help="eval set for --gate-every-epoch, in any layout the suite reads (default: %(default)s)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read pickles (a pickled payload .npy, object arrays such as eval v3's provenance) through the suite's restricted "
                        "unpickler; passed on to the gate; never read without this flag")
    parser.add_argument("--field", dest="field_mapping", action="append", default=[], metavar="NAME=ARRAY",
                        help="read our field NAME from the file's array ARRAY, for a layout we do not know (repeatable; the suite's --field, passed on to the gate)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per micro-batch per process")
    parser.add_argument("--accumulation", type=int, default=d.accumulation, help="micro-batches per optimizer step (one shared InfoNCE)")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--min-lr", type=float, default=None, help="floor of the cosine decay (default: lr/100)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="optimizer steps of linear warmup (default: 5%% of all steps)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm")
    parser.add_argument("--temperature", type=float, default=d.temperature, help="InfoNCE temperature tau (default: %(default)s)")
    parser.add_argument(
        "--loss",
        choices=LOSSES,
        default=d.loss,
        help="bank: masked InfoNCE over every training chunk (context chunks masked); in_batch: over the effective batch (default: %(default)s)",
    )
    parser.add_argument(
        "--bank-negatives",
        type=int,
        default=d.bank_negatives,
        help=f"bank rows sampled per step for --loss bank; 0: the full bank (default: full up to {FULL_BANK_MAX_COLUMNS:,} rows, else {DEFAULT_BANK_SAMPLE:,})",
    )
    parser.add_argument(
        "--residual",
        action=argparse.BooleanOptionalAction,
        default=d.residual,
        help="predict normalize(last context vector + f(context)), starting as copy-last (default: on)",
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the model's forward (loss stays float32)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue the run in --out: from OUT/last.pt, or from the checkpoint named (epoch_002.pt, resolved inside --out); "
        "history.json is cut back to that checkpoint's epoch",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an --out that holds a run: its history.json and *.pt checkpoints are deleted first "
        "(without it, such an --out is refused: --resume it, or choose another directory)",
    )
    parser.add_argument("--checkpoint-every-steps", type=int, default=d.checkpoint_every_steps, help="also write last.pt every N optimizer steps")
    parser.add_argument("--gate-every-epoch", action="store_true", help="run `pytest checks -m gate` on each epoch's checkpoint")
    parser.add_argument("--article-dropout", type=float, default=d.article_dropout, help="probability of blanking the last k context chunks")
    parser.add_argument("--span-corruption", type=float, default=d.span_corruption, help="probability of swapping one context chunk for another document's")
    parser.add_argument("--hard-negatives", type=int, default=d.hard_negatives, help="same-document negatives per window")
    parser.add_argument("--validation-fraction", type=float, default=d.validation_fraction)
    parser.add_argument("--max-validation-windows", type=int, default=d.max_validation_windows, help="0: all")
    parser.add_argument("--max-steps-per-epoch", type=int, default=d.max_steps_per_epoch, help="0: all full batches")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device)
    parser.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default: torch's choice; 1 helps on a busy machine)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bar")
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    args = vars(build_parser().parse_args(argv))
    if args["validation_data"] == "":
        args["validation_data"] = None
    if args["eval_set"] == "":
        args["eval_set"] = None
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in args.items() if k in known})
