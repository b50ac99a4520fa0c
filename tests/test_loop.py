"""The training loop (`train/loop.py`) end to end on a small synthetic bank: history.json, the LR at every step,
checkpoints and best.pt, the bank loss's recorded negatives, the residual head, a NaN stop, a write that fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lvmcore.artifacts.checkpoint import TRAINING_CHECKPOINT_FIELDS, load_checkpoint
from lvmcore.errors import ArtifactError
from lvmcore.artifacts.payload import load_payload
from lvmcore.gate.predict import predict
from lvmcore.training.negatives import expected_negatives_per_positive
from lvmcore.training.schedule import lr_at
from train.__main__ import main
from train.data import load_splits
from train.loop import TrainHooks, TrainingDiverged, train
from helpers.training_runs import DIM, CONTEXT, ARTICLES, CHUNKS, bank, config, weights, cli_args, one_line_error  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


EPOCH_FIELDS = {
    "epoch", "step_end", "train_loss", "val_loss", "val_cosine", "val_r_at_1", "val_r_at_5", "lr_start", "lr_end",
    "lr_trace", "seconds", "samples_per_s", "negatives_per_positive", "bank_size", "masked_per_positive", "checkpoint",
}  # fmt: skip


CONFIG_FIELDS = {
    "lr", "min_lr", "warmup_steps", "total_steps", "schedule", "batch_size", "accumulation", "world_size",
    "temperature", "epochs", "preset", "model_config", "loss", "bank_negatives", "bank_size", "bank_key_multiplicity",
    "context_length", "residual",
}  # fmt: skip


def test_history_has_every_field_and_the_lr_follows_lr_at_every_step(bank: Path, tmp_path: Path) -> None:
    history = train(config(bank, tmp_path, loss="in_batch", hard_negatives=1))
    on_disk = json.loads((tmp_path / "history.json").read_text())
    assert on_disk == json.loads(json.dumps(history))
    assert on_disk["format"] == "lvm-history/1"
    assert CONFIG_FIELDS <= on_disk["config"].keys()
    rows = on_disk["epochs"]
    assert [row["epoch"] for row in rows] == [1, 2]
    steps = on_disk["config"]["steps_per_epoch"]
    assert on_disk["config"]["total_steps"] == 2 * steps
    trace = []
    for row in rows:
        assert EPOCH_FIELDS <= row.keys(), EPOCH_FIELDS - row.keys()
        assert len(row["lr_trace"]) == steps  # one entry per optimizer step, not per epoch
        assert row["lr_start"] == row["lr_trace"][0][1] and row["lr_end"] == row["lr_trace"][-1][1]
        assert (tmp_path / row["checkpoint"]).is_file()
        trace += row["lr_trace"]
    assert [s for s, _ in trace] == list(range(2 * steps))
    for step, lr in trace:
        assert lr == pytest.approx(lr_at(step, on_disk["config"]), rel=1e-12), f"step {step}"
    # negatives from the real shapes: 16 x 2 accumulation x (1 + 1 hard negative) columns, minus the positive
    assert all(row["negatives_per_positive"] == 32 * 2 - 1 == expected_negatives_per_positive(on_disk["config"]) for row in rows)
    assert all(row["bank_size"] == 64 and row["masked_per_positive"] == 0 for row in rows)


def test_mamba_xs_run_writes_checkpoints_that_are_plain_dicts_with_every_field(bank: Path, tmp_path: Path) -> None:
    train(config(bank, tmp_path, preset="mamba-xs", epochs=1))
    for name in ("last.pt", "epoch_001.pt", "best.pt"):
        stored = torch.load(tmp_path / name, weights_only=True)
        assert stored.keys() == set(TRAINING_CHECKPOINT_FIELDS), f"{name}: {sorted(stored.keys() ^ set(TRAINING_CHECKPOINT_FIELDS))}"
        # the default bank loss: every training row is a column, each positive's C context chunks are masked
        assert stored["negatives_per_positive"] == stored["bank_size"] - 1 - CONTEXT == expected_negatives_per_positive(stored["train_config"])
        assert stored["loss"] == "bank" and stored["bank_negatives"] == 0 and stored["residual"] is True
        assert stored["model_config"]["residual"] is True
        assert {"embedder", "dim", "norm", "metric", "payload_hash", "train_data", "validation_data"} <= stored["provenance"].keys()
    checkpoint = load_checkpoint(tmp_path / "best.pt", expected_dim=DIM)
    assert checkpoint.metrics["chosen_by"] == "val_excluded_over_copy_last_low"
    assert "val_cosine" in checkpoint.metrics  # reported beside R@5, never used to choose
    assert set(checkpoint.training_articles).isdisjoint(checkpoint.validation_articles)
    assert checkpoint.provenance["payload_hash"] == load_payload(bank / "payload").content_hash


def test_best_is_chosen_by_validation_r_at_5_with_its_own_context_excluded(bank: Path, tmp_path: Path) -> None:
    """The gate's view: how surely it beats copy-last with the context excluded (raw R@5 rewards copying); recorded in history.json."""
    history = train(config(bank, tmp_path, epochs=3))
    rows = history["epochs"]
    assert history["config"]["best_by"] == "val_excluded_over_copy_last_low" and all(r["best_by"] == "val_excluded_over_copy_last_low" for r in rows)
    best_epoch = max(rows, key=lambda r: (r["val_excluded_over_copy_last_low"], -r["epoch"]))["epoch"]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == best_epoch
    for name, tensor in weights(tmp_path / "best.pt").items():
        assert torch.equal(tensor, weights(tmp_path / f"epoch_{best_epoch:03d}.pt")[name])


def test_best_follows_the_excluded_view_when_raw_r_at_5_prefers_the_copier(bank: Path, tmp_path: Path, monkeypatch) -> None:
    """Epoch 1 copies (raw R@5 36.0%, not shown above copy-last), epoch 2 predicts (raw 35.1%, above copy-last): best.pt is epoch 2."""
    import train.loop as loop_module

    scripted = iter([{"val_r_at_5": 0.360, "val_excluded_over_copy_last_low": -0.01}, {"val_r_at_5": 0.351, "val_excluded_over_copy_last_low": 0.007}])
    real = loop_module.validate

    def validate(*args, **kwargs):
        return {**real(*args, **kwargs), **next(scripted)}

    monkeypatch.setattr(loop_module, "validate", validate)
    train(config(bank, tmp_path, epochs=2))
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 2
    assert torch.load(tmp_path / "best.pt", weights_only=True)["metrics"]["chosen_by"] == "val_excluded_over_copy_last_low"


def test_training_learns_something_on_the_synthetic_bank(bank: Path, tmp_path: Path) -> None:
    rows = train(config(bank, tmp_path, epochs=3))["epochs"]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_r_at_5"] > 5 / (ARTICLES * CHUNKS)  # above chance


def test_two_tower_with_bf16_and_hard_negatives_trains_and_records_its_negatives(bank: Path, tmp_path: Path) -> None:
    rows = train(config(bank, tmp_path, preset="two-tower", epochs=1, bf16=True, loss="in_batch", hard_negatives=2, accumulation=2))["epochs"]
    assert rows[0]["negatives_per_positive"] == 32 * 3 - 1
    assert all(np.isfinite([rows[0]["train_loss"], rows[0]["val_loss"], rows[0]["val_cosine"]]))
    assert load_checkpoint(tmp_path / "epoch_001.pt").model.tower_count == 2


def test_a_directory_in_the_way_of_a_checkpoint_is_one_line(bank: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "run" / "epoch_001.pt").mkdir(parents=True)
    assert main(cli_args(bank, tmp_path / "run", "--epochs", "1", "--max-steps-per-epoch", "1")) == 2
    line = one_line_error(capsys)
    assert "epoch_001.pt: cannot be written" in line, line
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_nan_loss_stops_with_one_line_naming_the_step_and_keeps_last_good(bank: Path, tmp_path: Path) -> None:
    def poison(step: int, model: torch.nn.Module) -> None:
        if step == 5:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged) as error:
        train(config(bank, tmp_path, checkpoint_every_steps=2), TrainHooks(before_step=poison))
    message = str(error.value)
    assert "\n" not in message and "optimizer step 5" in message and "loss is nan" in message
    assert "last.pt is the last good checkpoint" in message
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["step"] == 4
    assert all(torch.isfinite(t).all() for t in last["model_state"].values() if t.is_floating_point())


def test_full_bank_records_what_each_positive_saw(bank: Path, tmp_path: Path) -> None:
    """Every training row is a column; each window's C context chunks are masked, so every positive sees K - 1 - C."""
    history = train(config(bank, tmp_path, epochs=1, loss="bank", bank_negatives=0))
    splits = load_splits(bank / "payload", bank / "train.json", bank / "validation.json", seed=0, validation_fraction=0.1)
    columns = int(np.isin(splits.payload.keys[:, 0], splits.training_articles).sum())
    settings = history["config"]
    assert (settings["loss"], settings["bank_negatives"], settings["bank_size"], settings["residual"]) == ("bank", 0, columns, True)
    row = history["epochs"][0]
    assert row["bank_size"] == columns
    assert row["masked_per_positive"] == CONTEXT  # unique keys: exactly the context chunks
    assert row["negatives_per_positive"] == columns - 1 - CONTEXT == expected_negatives_per_positive(settings)
    stored = torch.load(tmp_path / "epoch_001.pt", weights_only=True)
    assert (stored["negatives_per_positive"], stored["bank_size"], stored["masked_per_positive"]) == (
        row["negatives_per_positive"], row["bank_size"], row["masked_per_positive"],
    )


def test_sampled_bank_records_its_columns_and_never_less_than_the_guarantee(bank: Path, tmp_path: Path) -> None:
    history = train(config(bank, tmp_path, epochs=1, loss="bank", bank_negatives=64))
    row, settings = history["epochs"][0], history["config"]
    assert settings["bank_negatives"] == 64 and settings["bank_size"] == 32 + 64 == row["bank_size"]
    assert row["negatives_per_positive"] >= expected_negatives_per_positive(settings) == 96 - 1 - CONTEXT
    assert 0 < row["masked_per_positive"] < CONTEXT  # a context chunk is a column only when drawn or another window's target


def test_a_sampled_bank_larger_than_the_bank_is_refused(bank: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="--bank-negatives 100000 leaves no room"):
        train(config(bank, tmp_path, epochs=1, loss="bank", bank_negatives=100_000))
    with pytest.raises(ValueError, match="--hard-negatives is for --loss in_batch"):
        config(bank, tmp_path, loss="bank", hard_negatives=2)


def test_no_residual_trains_the_plain_head_and_an_old_checkpoint_loads_as_it_was(bank: Path, tmp_path: Path) -> None:
    """--no-residual records residual false; a checkpoint whose model_config predates the key loads non-residual."""
    history = train(config(bank, tmp_path, epochs=1, residual=False))
    assert history["config"]["residual"] is False and history["config"]["model_config"]["residual"] is False
    stored = torch.load(tmp_path / "epoch_001.pt", weights_only=True)
    del stored["model_config"]["residual"]  # as written before the field existed
    torch.save(stored, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt", expected_dim=DIM)
    assert old.model.config.residual is False
    contexts = np.random.default_rng(3).normal(size=(6, CONTEXT, DIM)).astype(np.float32)
    np.testing.assert_allclose(predict(old.model, contexts), predict(load_checkpoint(tmp_path / "epoch_001.pt").model, contexts), atol=1e-6)
