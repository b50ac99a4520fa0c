"""Checkpoints: a plain dict of tensors and JSON-able values, written atomically, read with weights_only.

Layout (`format: "lvm-checkpoint/1"`), every value loadable by `torch.load(path, weights_only=True)`:
`TrainingCheckpoint` below, the one writer of the fields `python -m train` stores, beside
`read_checkpoint_dict` / `load_checkpoint`, their readers. `model_config` and `model_state` are
required; a checkpoint of another writer may hold fewer fields (`CheckpointRecord` reads what is there).

Never a pickled Python object: a checkpoint is an artifact somebody hands us, and loading it must
not run code from the file.
"""

from __future__ import annotations

import math
import pathlib
import pickle
import re
import zipfile
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvmcore.errors import ArtifactError, exception_reason
from lvmcore.artifacts.validate import require_article_ids, require_file, require_int, require_number, require_object, require_provenance, shown
from lvmcore.files import write_atomic

CHECKPOINT_FORMAT = "lvm-checkpoint/1"
# A checkpoint's model_config is checked before anything is allocated: every size is bounded, the
# parameter count is estimated from the config alone (`estimate_parameters`) and refused above
# MAX_MODEL_PARAMETERS, and the config's exact shapes (built on torch's "meta" device, which
# allocates nothing) must match the stored weights before the real model is built.
MAX_MODEL_PARAMETERS = 2_000_000_000  # 8 GiB of float32 weights; AdamW's moments triple that when resumed
MAX_LAYERS = 1_024
MAX_SIZE = 1 << 20  # any one width: dim, d_model, hidden, d_state, expand, d_conv, max_context, ...
POSITIVE_SIZES = ("dim", "d_model", "hidden", "query_hidden", "payload_hidden", "n_heads", "expand", "d_conv", "max_context")
SAFE_PATH_TYPES = (pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath)
FOREIGN_STATE_KEYS = {"model_state_dict", "state_dict", "model"}  # how other training scripts name their weights
REQUIRED_FIELDS = ("model_config", "model_state")


@dataclass
class CheckpointRecord:
    """What a checkpoint records about its training, without its weights: what the gates read."""

    path: Path
    model_config: dict[str, Any]
    epoch: int | None  # None: a foreign checkpoint that does not say
    step: int | None
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    training_articles: list[int] = field(default_factory=list)
    validation_articles: list[int] = field(default_factory=list)
    negatives_per_positive: int | None = None
    train_config: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int | None:
        value = self.provenance.get("dim", self.model_config.get("dim"))
        return None if value is None else int(value)

    @property
    def history_path(self) -> Path:
        """Where training wrote this run's `history.json`: beside the checkpoint."""
        return self.path.parent / "history.json"


@dataclass
class Checkpoint(CheckpointRecord):
    """A loaded checkpoint: the record, the model (eval mode, on CPU) and the optimizer's states."""

    model: nn.Module | None = None
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    scheduler_state: dict[str, Any] | None = field(default=None, repr=False)
    rng_state: dict[str, Any] | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def record(self) -> CheckpointRecord:
        """The record alone, so a caller can drop the weights and keep the facts."""
        return CheckpointRecord(**{f.name: getattr(self, f.name) for f in fields(CheckpointRecord)})


@dataclass
class TrainingCheckpoint:
    """Every field `python -m train` writes into each checkpoint of a run (last.pt, epoch_NNN.pt, best.pt), in this order.

    `CheckpointRecord` reads the record's fields back, `load_checkpoint` the model, and
    `train/resume.py` the states and `resume` (the loop's position inside an epoch: `--resume`
    starts from any of the run's checkpoints).
    """

    model_config: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any]
    rng_state: dict[str, Any]  # {"torch": uint8 tensor, "cuda": [...] when CUDA is present}
    epoch: int  # epochs finished
    step: int  # optimizer steps taken
    metrics: dict[str, Any]  # the epoch's validation figures ({} mid-epoch)
    provenance: dict[str, Any]  # embedder, dim, norm, metric, payload_hash, train_data, validation_data
    training_articles: list[int]
    validation_articles: list[int]
    negatives_per_positive: int | None  # the fewest negatives any positive of the epoch so far saw
    bank_size: int | None  # columns each positive was scored against
    masked_per_positive: float | None  # mean masked columns per positive
    loss: str  # "bank" or "in_batch"
    bank_negatives: int | None  # None: in-batch; 0: the full bank; else rows sampled per step
    residual: bool
    train_config: dict[str, Any]  # history.json's "config": every setting, defaults resolved
    resume: dict[str, Any]  # {"progress": the loop's position (train.loop.EpochProgress), "best_r_at_5": the best figure so far}

    def content(self) -> dict[str, Any]:
        """The dict `save_checkpoint` writes (field by field, no copies of the tensors)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


TRAINING_CHECKPOINT_FIELDS = ("format", *(f.name for f in fields(TrainingCheckpoint)))  # what a checkpoint of `python -m train` holds


def save_checkpoint(path: str | Path, content: dict[str, Any]) -> Path:
    """Write `content` to `path` atomically (`lvmcore.files.write_atomic`): the old file or the whole new one."""
    content = {"format": CHECKPOINT_FORMAT, **content}
    return write_atomic(path, lambda out: torch.save(content, out))


def peek(path: str | Path) -> dict[str, Any]:
    """A checkpoint's top-level dict mapped, not read (`torch.load(mmap=True, weights_only=True)`, pathlib
    paths allowed), or {} when it cannot be read safely: for facts only, never for weights."""
    try:
        with torch.serialization.safe_globals(list(SAFE_PATH_TYPES)):
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable here: the caller keeps the file and the full reader reports it properly
        return {}
    return content if isinstance(content, dict) else {}


def peek_epoch_step(path: str | Path) -> tuple[Any, Any] | None:
    """(epoch, step) of a checkpoint without reading its weights, None if unreadable.

    Used to tell a `last.pt`/`best.pt` that duplicates an `epoch_NNN.pt` from one that does not.
    """
    content = peek(path)
    return (content.get("epoch"), content.get("step")) if content else None


def read_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    """torch.load(weights_only=True) of a checkpoint file, every failure one `ArtifactError` line."""
    path = Path(path)
    size = require_file(path, "checkpoint file").st_size
    if size == 0:
        raise ArtifactError(path, "is empty (0 bytes): a checkpoint whose write never finished; use another (an epoch_NNN.pt) or train again")
    with path.open("rb") as handle:
        magic = handle.read(4)
    is_zip_start = magic == b"PK\x03\x04"
    if not is_zip_start and not magic.startswith(b"\x80"):  # torch.save writes a zip; the legacy format is a pickle (protocol >= 2)
        raise ArtifactError(path, f"is not a checkpoint: neither a torch zip archive nor a pickle (it starts with {magic!r})")
    if is_zip_start and not zipfile.is_zipfile(path):
        raise ArtifactError(path, f"is truncated or corrupt: a torch zip archive without its central directory ({path.stat().st_size} bytes)")
    try:
        with torch.serialization.safe_globals(list(SAFE_PATH_TYPES)):  # paths in a training script's args: data, not code
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = exception_reason(exc, limit=None)
        if "Weights only load failed" in first or "Unsupported global" in str(exc):
            named = _refused_global(str(exc))
            raise ArtifactError(path, f"is not a checkpoint we can read safely: it holds pickled Python objects{named} that torch.load(weights_only=True) refuses to run; "
                                f"to gate it, load it in your own trusted code with --model-adapter module:function, or pass --model-file / --predictions (README: Gate any model)") from None
        raise ArtifactError(path, f"is not a checkpoint: cannot be unpickled ({first})") from None
    except Exception as exc:  # torch.load on bytes that are not a checkpoint raises whatever its parsers meet (struct.error, ...)
        first = exception_reason(exc)
        if is_zip_start or isinstance(exc, EOFError):
            raise ArtifactError(path, f"is truncated or corrupt: {first}") from None
        raise ArtifactError(path, f"is not a checkpoint: {first}") from None
    if isinstance(content, dict) and "format" not in content and FOREIGN_STATE_KEYS & set(content):
        keys = ", ".join(sorted(str(k) for k in content)[:8])
        raise ArtifactError(path, f"is a training checkpoint of another codebase (keys {keys}): lvm-checks cannot rebuild its model class; "
                            f"gate it with --model-adapter module:function (your loader), --model-file (an exported program) or --predictions (README: Gate any model)")
    if not isinstance(content, dict) or "format" not in content:
        kind = type(content).__name__ if not isinstance(content, dict) else "a dict without 'format'"
        raise ArtifactError(path, f"is not a checkpoint: holds {kind} (expected \"format\": \"{CHECKPOINT_FORMAT}\")")
    if content["format"] != CHECKPOINT_FORMAT:
        raise ArtifactError(path, f"has format {content['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    missing = [name for name in REQUIRED_FIELDS if name not in content]
    if missing:
        raise ArtifactError(path, f"is missing field(s) {', '.join(missing)}")
    return content


def _refused_global(message: str) -> str:
    """' (pathlib.PosixPath)' when torch's refusal names the global it would not run, else ''."""
    match = re.search(r"(?:Unsupported global: GLOBAL|global) ([\w.]+)", message)
    return f" ({match.group(1)})" if match else ""


def read_foreign_record(path: str | Path) -> CheckpointRecord:
    """What a checkpoint of another codebase says about itself (epoch, val_* figures), read without running code.

    Used with `--model-adapter`: the adapter rebuilds the model; this keeps the facts for the report.
    A file that cannot be read safely gives a record with only its path. Each field read (epoch,
    step or global_step, provenance, training_articles) must be of its type when present: a
    malformed one is one `ArtifactError` line, never a record that silently drops it. null: not recorded.
    """
    path = Path(path)
    require_file(path, "checkpoint")  # missing, a directory, a FIFO torch.load would wait on: each named
    content = peek(path)

    def count(name: str) -> int | None:
        value = content.get(name)
        return None if value is None else require_int(path, name, value, minimum=0)

    step = count("step") if content.get("step") is not None else count("global_step")
    metrics = {k: v for k, v in content.items() if isinstance(k, str) and k.startswith(("val_", "train_")) and isinstance(v, (int, float))}
    provenance = {} if content.get("provenance") is None else require_provenance(path, "provenance", content["provenance"])
    articles = content.get("training_articles")
    return CheckpointRecord(
        path=path, model_config={}, epoch=count("epoch"), step=step, metrics=metrics, provenance=provenance,
        training_articles=[] if articles is None else require_article_ids(path, "training_articles", articles),
    )


def estimate_parameters(config: dict[str, Any]) -> int | None:
    """Parameters of the model a config dict describes, from the config alone (None for a kind without a formula).

    Exact for every kind in `lvmcore.models` (`tests/test_checkpoint.py` compares it with the built
    models), in Python integers, so an absurd config costs nothing to estimate:
        mamba        Dm + m + L (2mE + (K+1)E + E(R+2N) + RE + E + EN + E + Em + m) + m + mD,  E = expand m
        lstm / gru   g = 4 / 3 gates: gH(D+H) + 2gH, then (L-1)(2gH^2 + 2gH), then HD + D
        transformer  Dm + m + max_context m + L (12m^2 + 13m) + 2m + mD + D
        two-tower    the GRU query tower above, then the payload tower's LayerNorm, fc, proj: 2D + 2DP + P + D
    """
    kind, get = config.get("kind"), config.get

    def recurrent(gates: int, dim: int, hidden: int, layers: int) -> int:
        stack = gates * hidden * (dim + hidden) + 2 * gates * hidden + max(layers - 1, 0) * (2 * gates * hidden * hidden + 2 * gates * hidden)
        return (stack if layers > 0 else 0) + hidden * dim + dim

    if kind == "mamba":
        dim, m, layers, n, k = get("dim", 768), get("d_model", 768), get("n_layers", 8), get("d_state", 128), get("d_conv", 4)
        e = get("expand", 2) * m
        r = get("dt_rank", "auto")
        r = math.ceil(m / 16) if r == "auto" else r
        block = 2 * m * e + (k + 1) * e + e * (r + 2 * n) + r * e + e + e * n + e + e * m + m
        return dim * m + m + layers * block + m + m * dim
    if kind in ("lstm", "gru"):
        return recurrent(4 if kind == "lstm" else 3, get("dim", 768), get("hidden", 512), get("n_layers", 2))
    if kind == "transformer":
        dim, m, layers, positions = get("dim", 768), get("d_model", 256), get("n_layers", 4), get("max_context", 16)
        return dim * m + m + positions * m + layers * (12 * m * m + 13 * m) + 2 * m + m * dim + dim
    if kind == "two-tower":
        dim, hidden = get("dim", 768), get("payload_hidden", 1536)
        return recurrent(3, dim, get("query_hidden", 512), get("query_layers", 2)) + 2 * dim + 2 * dim * hidden + hidden + dim
    return None


def check_model_config(path: Path, config: Any) -> dict[str, Any]:
    """Types and bounds of a stored model_config, before anything is built; returns it as a dict.

    Every field is checked against its dataclass default's type (an int field takes an int, not
    "384-D"); widths are bounded by MAX_SIZE and layer counts by MAX_LAYERS; the estimated
    parameter count must not exceed MAX_MODEL_PARAMETERS.
    """
    from lvmcore.models.registry import CONFIG_FOR_KIND

    config = dict(require_object(path, "model_config", config))
    kind = config.get("kind")
    if not isinstance(kind, str) or kind not in CONFIG_FOR_KIND:
        raise ArtifactError(path, f"model_config has unknown kind {shown(kind)}; known kinds: {', '.join(sorted(CONFIG_FOR_KIND))}")
    declared = {f.name: f for f in fields(CONFIG_FOR_KIND[kind]) if f.init}
    unknown = sorted(str(name) for name in set(config) - set(declared) - {"kind"})
    if unknown:
        raise ArtifactError(path, f"model_config of kind {kind!r} has unknown keys {unknown[:8]}")
    for name, value in config.items():
        if name == "kind":
            continue
        where, spec = f"model_config.{name}", declared[name]
        default = spec.default if spec.default is not MISSING else None
        annotation = str(spec.type)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ArtifactError(path, f"{where} is {shown(value)}, expected true or false")
        elif isinstance(value, str) and "str" in annotation:
            if value != "auto":
                raise ArtifactError(path, f"{where} is {shown(value)}, expected an integer or \"auto\"")
        elif isinstance(default, float):
            require_number(path, where, value)
            if name == "dropout" and not 0.0 <= value <= 1.0:
                raise ArtifactError(path, f"{where} is {value}, expected a probability in [0, 1]")
        elif isinstance(default, int) or "int" in annotation:
            require_int(path, where, value, minimum=1 if name in POSITIVE_SIZES else 0, maximum=MAX_LAYERS if "layers" in name else MAX_SIZE)
    estimate = estimate_parameters(config)
    if estimate is not None and estimate > MAX_MODEL_PARAMETERS:
        raise ArtifactError(
            path, f"model_config asks for about {estimate:,} parameters, over the limit of {MAX_MODEL_PARAMETERS:,} (8 GiB of float32 weights); refusing to build it"
        )
    return config


def build_on_meta(path: Path, config: dict[str, Any]) -> nn.Module:
    """The config's model on torch's "meta" device: every parameter's name and shape, and no memory."""
    from lvmcore.models import build_model, model_config_from_dict

    try:
        with torch.device("meta"):
            return build_model(model_config_from_dict(config))
    except ArtifactError as exc:
        raise ArtifactError(path, f"model_config cannot be built: {exc.problem}") from None
    except Exception as exc:  # a config the model's own code rejects, in whatever way it does
        raise ArtifactError(path, f"model_config cannot be built: {type(exc).__name__}: {exception_reason(exc, fallback='')}") from None


def record_fields(path: Path, content: dict[str, Any]) -> dict[str, Any]:
    """The record's fields of a checkpoint dict, each of its type (an epoch is an integer, metrics an object)."""

    def ids(name: str) -> list[int]:
        return require_article_ids(path, name, content.get(name, []))

    negatives = content.get("negatives_per_positive")
    provenance = require_provenance(path, "provenance", content.get("provenance", {}))
    return dict(
        epoch=require_int(path, "epoch", content.get("epoch", 0), minimum=0),
        step=require_int(path, "step", content.get("step", 0), minimum=0),
        metrics=dict(require_object(path, "metrics", content.get("metrics", {}))),
        provenance=provenance,
        training_articles=ids("training_articles"),
        validation_articles=ids("validation_articles"),
        negatives_per_positive=None if negatives is None else require_int(path, "negatives_per_positive", negatives, minimum=0),
        train_config=dict(require_object(path, "train_config", content.get("train_config", {}))),
    )


def first_state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """The first difference between a model's state dict and a checkpoint's, in words, or None."""
    for name, tensor in expected.items():
        if name not in found:
            return f"parameter '{name}' is missing"
        if tuple(found[name].shape) != tuple(tensor.shape):
            return f"parameter '{name}' has shape {tuple(found[name].shape)}, the model needs {tuple(tensor.shape)}"
    for name in found:
        if name not in expected:
            return f"has unexpected parameter '{name}'"
    return None


def load_checkpoint(path: str | Path, expected_dim: int | None = None) -> Checkpoint:
    """Load a checkpoint and rebuild its model in eval mode; problems raise one-line `ArtifactError`s.

    expected_dim: the payload's dimension; a checkpoint for another dimension is refused.
    """
    from lvmcore.models import build_model, model_config_from_dict

    path = Path(path)
    content = read_checkpoint_dict(path)
    config_dict = check_model_config(path, content["model_config"])
    record = record_fields(path, content)
    state = content["model_state"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ArtifactError(path, "model_state is not a state dict (parameter names to tensors)")
    mismatch = first_state_mismatch(build_on_meta(path, config_dict).state_dict(), state)  # shapes first, no memory yet
    if mismatch:
        raise ArtifactError(path, f"holds another model's weights for model_config kind {config_dict.get('kind')!r}: {mismatch}")
    model = build_model(model_config_from_dict(config_dict))
    try:
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, int(config_dict.get("dim", 768))))  # one tiny forward: a config that builds but cannot run is refused here
    except Exception as exc:  # the model's own code refusing these weights or this config, in whatever way it does
        raise ArtifactError(path, f"model cannot run with this model_config and these weights: {type(exc).__name__}: {exception_reason(exc, fallback='')}") from None
    checkpoint = Checkpoint(
        path=path,
        model=model,
        model_config=config_dict,
        **record,
        optimizer_state=content.get("optimizer_state"),
        scheduler_state=content.get("scheduler_state"),
        rng_state=content.get("rng_state"),
        raw=content,
    )
    if expected_dim is not None and checkpoint.dim is not None and checkpoint.dim != expected_dim:
        raise ArtifactError(path, f"was trained on {checkpoint.dim}-D vectors but the payload has dimension {expected_dim}")
    return checkpoint
