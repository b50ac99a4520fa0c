"""The trainer's tests' shared pieces: a small synthetic bank (payload of drifting unit vectors, train/validation windows
specs, an eval set), the run config and CLI arguments for it, a finished 2-epoch run, and one-line-error and weight
comparisons. The fixtures `bank` and `finished_run` are imported by name into the test modules that use them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lvmcore.artifacts.evalset import write_eval_set
from lvmcore.artifacts.payload import write_payload
from lvmcore.artifacts.training_data import write_windows_spec
from lvmcore.artifacts.windows import build_windows, document_split
from train.config import TrainConfig
from train.loop import train

DIM, CONTEXT, ARTICLES, CHUNKS = 16, 5, 24, 16


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    """A payload of smoothly drifting unit vectors per article, with train/validation windows specs."""
    root = tmp_path_factory.mktemp("bank")
    rng = np.random.default_rng(0)
    vectors, keys = [], []
    for article in range(ARTICLES):
        walk = rng.normal(size=DIM) + np.cumsum(rng.normal(size=(CHUNKS, DIM)) * 0.5, axis=0)  # (CHUNKS, D)
        vectors.append(walk)
        keys += [(article, chunk) for chunk in range(CHUNKS)]
    vectors = np.concatenate(vectors).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_payload(root / "payload", vectors, np.array(keys), embedder="synthetic")
    parts = document_split(np.arange(ARTICLES), {"train": 0.75, "validation": 0.25}, seed=1)
    provenance = {"embedder": "synthetic", "dim": DIM}
    write_windows_spec(root / "train.json", parts["train"], CONTEXT, provenance)
    write_windows_spec(root / "validation.json", parts["validation"], CONTEXT, provenance)
    keys = np.array(keys)
    context_rows, target_rows = build_windows(keys, CONTEXT, parts["validation"])  # for --gate-every-epoch, checked before training
    write_eval_set(root / "eval.npz", vectors[context_rows], vectors[target_rows], keys[target_rows], keys[context_rows], provenance)
    return root


def config(bank: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(
        out=str(out),
        preset="gru",  # a real preset that is fast on CPU; mamba-xs runs in test_mamba_xs_run_*
        epochs=2,
        payload=str(bank / "payload"),
        train_data=str(bank / "train.json"),
        validation_data=str(bank / "validation.json"),
        eval_set=None,
        batch_size=16,
        accumulation=2,
        lr=3e-3,
        warmup_steps=3,
        seed=0,
        progress=False,
        device="cpu",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state"]


def assert_same_weights(expected: Path, found: Path) -> None:
    left, right = weights(expected), weights(found)
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), f"{name} differs between {expected} and {found}"


def cli_args(bank: Path, out: Path, *extra: str) -> list[str]:
    """The `python -m train` arguments of `config(bank, out)`, plus `extra` (a later option wins)."""
    return [
        "--out", str(out), "--preset", "gru", "--epochs", "2", "--payload", str(bank / "payload"), "--train-data", str(bank / "train.json"),
        "--validation-data", str(bank / "validation.json"), "--eval-set", "", "--batch-size", "16", "--accumulation", "2", "--lr", "3e-3",
        "--warmup-steps", "3", "--seed", "0", "--no-progress", "--device", "cpu", *extra,
    ]  # fmt: skip


def one_line_error(capsys) -> str:
    """The CLI's stderr, asserted to be exactly one `error: ...` line with no traceback anywhere."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(bank: Path, tmp_path_factory) -> Path:
    """A finished 2-epoch run (history.json, last.pt, epoch_001.pt, epoch_002.pt, best.pt); copy it, never change it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(config(bank, out, epochs=2))
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


class Killed(RuntimeError):
    pass
