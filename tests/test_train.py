"""The training loop end to end on a small synthetic bank: history, schedule, resume, NaN stop, gate hook, data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lvmcore.artifacts.checkpoint import load_checkpoint
from lvmcore.errors import ArtifactError
from lvmcore.models import PRESETS, build_model
from lvmcore.artifacts.payload import load_payload, write_payload
from lvmcore.gate.predict import predict
from lvmcore.keys import pack_keys
from lvmcore.training.loss import expected_negatives_per_positive
from lvmcore.training.schedule import lr_at
from lvmcore.artifacts.training_data import write_windows_spec
from lvmcore.artifacts.windows import document_split
from train.__main__ import main
from train.config import TrainConfig
from train.data import HardNegativeSampler, TrainingBank, article_dropout, assemble_batch, load_splits, span_corruption
from train.gate_hook import gate_summary, run_gate
from train.loop import TrainHooks, TrainingDiverged, train

DIM, CONTEXT, ARTICLES, CHUNKS = 16, 5, 24, 16

EPOCH_FIELDS = {
    "epoch", "step_end", "train_loss", "val_loss", "val_cosine", "val_r_at_1", "val_r_at_5", "lr_start", "lr_end",
    "lr_trace", "seconds", "samples_per_s", "negatives_per_positive", "bank_size", "masked_per_positive", "checkpoint",
}  # fmt: skip
CONFIG_FIELDS = {
    "lr", "min_lr", "warmup_steps", "total_steps", "schedule", "batch_size", "accumulation", "world_size",
    "temperature", "epochs", "preset", "model_config", "loss", "bank_negatives", "bank_size", "bank_key_multiplicity",
    "context_length", "residual",
}  # fmt: skip
CHECKPOINT_FIELDS = {
    "format", "model_config", "model_state", "optimizer_state", "scheduler_state", "rng_state", "epoch", "step",
    "metrics", "provenance", "training_articles", "validation_articles", "negatives_per_positive", "train_config",
    "bank_size", "masked_per_positive", "loss", "bank_negatives", "residual",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


# --------------------------------------------------------------------------- history, schedule, checkpoints


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
        assert CHECKPOINT_FIELDS <= stored.keys(), f"{name}: missing {CHECKPOINT_FIELDS - stored.keys()}"
        # the default bank loss: every training row is a column, each positive's C context chunks are masked
        assert stored["negatives_per_positive"] == stored["bank_size"] - 1 - CONTEXT == expected_negatives_per_positive(stored["train_config"])
        assert stored["loss"] == "bank" and stored["bank_negatives"] == 0 and stored["residual"] is True
        assert stored["model_config"]["residual"] is True
        assert {"embedder", "dim", "norm", "metric", "payload_hash", "train_data", "validation_data"} <= stored["provenance"].keys()
    checkpoint = load_checkpoint(tmp_path / "best.pt", expected_dim=DIM)
    assert checkpoint.metrics["chosen_by"] == "val_r_at_5"
    assert "val_cosine" in checkpoint.metrics  # reported beside R@5, never used to choose
    assert set(checkpoint.training_articles).isdisjoint(checkpoint.validation_articles)
    assert checkpoint.provenance["payload_hash"] == load_payload(bank / "payload").content_hash


def test_best_is_chosen_by_validation_r_at_5(bank: Path, tmp_path: Path) -> None:
    history = train(config(bank, tmp_path, epochs=3))
    rows = history["epochs"]
    best_epoch = max(rows, key=lambda r: (r["val_r_at_5"], -r["epoch"]))["epoch"]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == best_epoch
    for name, tensor in weights(tmp_path / "best.pt").items():
        assert torch.equal(tensor, weights(tmp_path / f"epoch_{best_epoch:03d}.pt")[name])


def test_training_learns_something_on_the_synthetic_bank(bank: Path, tmp_path: Path) -> None:
    rows = train(config(bank, tmp_path, epochs=3))["epochs"]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_r_at_5"] > 5 / (ARTICLES * CHUNKS)  # above chance


def test_two_tower_with_bf16_and_hard_negatives_trains_and_records_its_negatives(bank: Path, tmp_path: Path) -> None:
    rows = train(config(bank, tmp_path, preset="two-tower", epochs=1, bf16=True, loss="in_batch", hard_negatives=2, accumulation=2))["epochs"]
    assert rows[0]["negatives_per_positive"] == 32 * 3 - 1
    assert all(np.isfinite([rows[0]["train_loss"], rows[0]["val_loss"], rows[0]["val_cosine"]]))
    assert load_checkpoint(tmp_path / "epoch_001.pt").model.tower_count == 2


# --------------------------------------------------------------------------- resume


class Killed(RuntimeError):
    pass


LOSS_SETTINGS = {
    "in_batch": dict(loss="in_batch", hard_negatives=1),
    "full_bank": dict(loss="bank", bank_negatives=0),
    "sampled_bank": dict(loss="bank", bank_negatives=64),
}


@pytest.mark.parametrize("loss", sorted(LOSS_SETTINGS))
def test_resume_after_a_kill_mid_epoch_ends_with_the_same_weights(bank: Path, tmp_path: Path, loss: str) -> None:
    settings = dict(epochs=2, checkpoint_every_steps=2, article_dropout=0.3, span_corruption=0.3, **LOSS_SETTINGS[loss])
    reference = train(config(bank, tmp_path / "whole", **settings))
    steps = reference["config"]["steps_per_epoch"]
    kill_after = steps + 2  # 0-based: killed with steps+3 done, mid epoch 2; last.pt was written at steps+2 done

    def kill(step: int) -> None:
        if step == kill_after:
            raise Killed(f"killed after step {step}")

    with pytest.raises(Killed):
        train(config(bank, tmp_path / "cut", **settings), TrainHooks(after_step=kill))
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["step"] == steps + 2
    ran: list[int] = []
    resumed = train(config(bank, tmp_path / "cut", resume=True, **settings), TrainHooks(before_step=lambda step, _: ran.append(step)))
    assert ran == list(range(steps + 2, 2 * steps))  # it continued from last.pt, it did not start over

    final, again = weights(tmp_path / "whole" / "last.pt"), weights(tmp_path / "cut" / "last.pt")
    for name in final:
        assert torch.equal(final[name], again[name]), f"{name} differs after resume"
    for left, right in zip(reference["epochs"], resumed["epochs"]):
        assert left["lr_trace"] == right["lr_trace"]
        assert left["negatives_per_positive"] == right["negatives_per_positive"]
        assert left["masked_per_positive"] == pytest.approx(right["masked_per_positive"], rel=1e-12)
        assert left["train_loss"] == pytest.approx(right["train_loss"], rel=1e-9)
        assert left["val_r_at_5"] == right["val_r_at_5"]


def test_resume_refuses_different_settings(bank: Path, tmp_path: Path) -> None:
    train(config(bank, tmp_path, epochs=1))
    with pytest.raises(ArtifactError, match="batch_size=16, this run asks for 8"):
        train(config(bank, tmp_path, epochs=1, batch_size=8, resume=True))


# --------------------------------------------------------------------------- divergence


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


# --------------------------------------------------------------------------- CLI


def test_cli_trains_and_reports_user_errors_in_one_line(bank: Path, tmp_path: Path, capsys) -> None:
    common = ["--payload", str(bank / "payload"), "--train-data", str(bank / "train.json"), "--validation-data", str(bank / "validation.json")]
    code = main(["--preset", "mamba-xs", "--epochs", "1", "--out", str(tmp_path / "run"), "--batch-size", "32", "--no-progress", *common])
    assert code == 0
    assert "best epoch 1 by validation R@5" in capsys.readouterr().out
    code = main(["--out", str(tmp_path / "bad"), "--payload", str(tmp_path / "absent"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "payload directory not found" in err


def test_leaking_validation_articles_are_refused(bank: Path) -> None:
    with pytest.raises(ArtifactError, match="shares .* article"):
        load_splits(bank / "payload", bank / "train.json", bank / "train.json", seed=0, validation_fraction=0.1)


def test_without_validation_data_the_articles_are_split_by_hash(bank: Path) -> None:
    splits = load_splits(bank / "payload", bank / "train.json", None, seed=0, validation_fraction=0.3)
    assert splits.validation.count > 0 and splits.train.count > 0
    assert np.intersect1d(splits.training_articles, splits.validation_articles).size == 0


# --------------------------------------------------------------------------- gate hook


FAKE_GATE = """
import json, pathlib, sys
args = sys.argv[1:]
checkpoint = pathlib.Path(args[args.index("--checkpoint") + 1])
report = pathlib.Path(args[args.index("--report-dir") + 1]) / args[args.index("--run-name") + 1] / checkpoint.stem / "report.json"
report.parent.mkdir(parents=True, exist_ok=True)
report.write_text(json.dumps({"decision": "PASS", "argv": args}))
sys.exit(0)
"""


def test_gate_every_epoch_records_the_decision(bank: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake_pytest.py"
    fake.write_text(FAKE_GATE)
    hooks = TrainHooks(pytest_command=(sys.executable, str(fake)))
    rows = train(config(bank, tmp_path / "run", epochs=2, gate_every_epoch=True, eval_set=str(bank / "eval.npz")), hooks)["epochs"]
    for row in rows:
        assert row["gate"]["exit_code"] == 0 and row["gate"]["decision"] == "PASS"
        report = tmp_path / "run" / row["gate"]["report"]
        assert report.parent.name == f"epoch_{row['epoch']:03d}"
        argv = json.loads(report.read_text())["argv"]
        assert argv[:5] == ["checks", "-m", "gate", "-p", "no:cacheprovider"]
        assert argv[argv.index("--checkpoint") + 1] == str(tmp_path / "run" / row["checkpoint"])


def test_gate_hook_survives_a_missing_report(tmp_path: Path) -> None:
    fake = tmp_path / "crash.py"
    fake.write_text("import sys; sys.exit(3)\n")
    result = run_gate(tmp_path, tmp_path / "epoch_001.pt", payload="p", eval_set="e", train_data="t", pytest_command=(sys.executable, str(fake)))
    assert result["exit_code"] == 3 and result["decision"] == "report missing"
    assert result["report"] == "reports/gates/epoch_001/report.json"


def test_gate_summary_names_failed_gates_decision_and_report(tmp_path: Path) -> None:
    fake = tmp_path / "fake_failing_gate.py"
    fake.write_text(FAKE_GATE.replace(
        '{"decision": "PASS", "argv": args}',
        '{"decision": {"action": "below_baseline", "reason": "copies its context"}, '
        '"records": [{"check": "r_at_5_over_best_baseline", "status": "fail"}, {"check": "r_at_5", "status": "pass"}]}',
    ).replace("sys.exit(0)", "sys.exit(1)"))
    gate = run_gate(tmp_path, tmp_path / "epoch_002.pt", payload="p", eval_set="e", train_data="t", pytest_command=(sys.executable, str(fake)))
    assert gate["failed_checks"] == ["r_at_5_over_best_baseline"]
    lines = gate_summary(gate, tmp_path).splitlines()
    assert lines[0].endswith("failed r_at_5_over_best_baseline")
    assert lines[1].endswith("below_baseline: copies its context")
    assert lines[2].endswith("reports/gates/epoch_002/report.md")


# --------------------------------------------------------------------------- data and augmentation


def test_article_dropout_blanks_a_suffix_but_never_the_whole_context() -> None:
    contexts = np.ones((500, CONTEXT, 4), dtype=np.float32)
    out = article_dropout(contexts, 0.5, np.random.default_rng(0))
    blank = (out == 0).all(axis=2)  # (B, C)
    blanked = blank.any(axis=1)
    assert 0.4 < blanked.mean() < 0.6
    assert not blank[:, 0].any()  # k <= C-1: the first chunk always survives
    for row in blank[blanked]:
        k = row.sum()
        assert row[CONTEXT - k :].all() and not row[: CONTEXT - k].any()  # exactly the last k
    assert {int(k) for k in blank[blanked].sum(axis=1)} == set(range(1, CONTEXT))
    assert (contexts == 1).all()  # the input is not modified


def test_span_corruption_swaps_one_position_from_another_document() -> None:
    rng = np.random.default_rng(1)
    contexts = rng.normal(size=(64, CONTEXT, 4)).astype(np.float32)
    articles = np.repeat(np.arange(8), 8)
    out = span_corruption(contexts, articles, 1.0, np.random.default_rng(2))
    for row in range(64):
        changed = np.flatnonzero((out[row] != contexts[row]).any(axis=1))
        assert len(changed) == 1
        position = changed[0]
        donors = np.flatnonzero((contexts[:, position] == out[row, position]).all(axis=1))
        assert len(donors) == 1 and articles[donors[0]] != articles[row]


def test_all_zero_context_gives_a_finite_prediction() -> None:
    for preset in ("mamba-xs", "gru", "lstm", "transformer", "two-tower"):
        model = build_model(PRESETS[preset](dim=DIM))
        out = predict(model, np.zeros((3, CONTEXT, DIM), dtype=np.float32))
        assert out.dtype == np.float32 and out.shape == (3, DIM)
        assert np.isfinite(out).all(), f"{preset} gives NaN on an all-zero context"


def test_hard_negatives_come_from_the_same_article_and_never_the_truth(bank: Path) -> None:
    payload = load_payload(bank / "payload")
    sampler = HardNegativeSampler(payload, np.arange(ARTICLES))
    truth = np.array([[3, 0], [3, CHUNKS - 1], [7, 5]] * 50)
    negatives = sampler.sample(truth, 4, np.random.default_rng(0))  # (B, 4, D)
    assert negatives.shape == (150, 4, DIM)
    truth_vectors, _ = payload.vectors_of(truth)
    for row, key in enumerate(truth):
        article_vectors = payload.vectors[payload.keys[:, 0] == key[0]]
        for vector in negatives[row]:
            assert (np.abs(article_vectors - vector).max(axis=1) == 0).any()  # from the same article
            assert not np.array_equal(vector, truth_vectors[row])  # never the positive


def test_predict_matches_the_model_in_any_batch_size() -> None:
    torch.manual_seed(0)
    model = build_model(PRESETS["mamba-xs"](dim=DIM))
    contexts = np.random.default_rng(0).normal(size=(37, CONTEXT, DIM)).astype(np.float32)
    whole = predict(model, contexts, batch_size=1024)
    pieces = predict(model, contexts, batch_size=5)
    np.testing.assert_allclose(whole, pieces, atol=1e-5)
    assert not model.training


# --------------------------------------------------------------------------- bank loss and residual head


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


def test_cli_sets_loss_bank_negatives_and_residual(bank: Path, tmp_path: Path) -> None:
    common = ["--payload", str(bank / "payload"), "--train-data", str(bank / "train.json"), "--validation-data", str(bank / "validation.json")]
    assert main(["--preset", "gru", "--epochs", "1", "--out", str(tmp_path), "--batch-size", "32", "--no-progress",
                 "--loss", "bank", "--bank-negatives", "40", "--no-residual", "--temperature", "0.03", *common]) == 0
    settings = json.loads((tmp_path / "history.json").read_text())["config"]
    assert (settings["loss"], settings["bank_negatives"], settings["residual"], settings["temperature"]) == ("bank", 40, False, 0.03)


def test_span_corruption_moves_the_donor_key_with_the_donor_vector(bank: Path) -> None:
    """The bank loss masks what a context really holds: a swapped-in chunk's key comes with it."""
    splits = load_splits(bank / "payload", bank / "train.json", bank / "validation.json", seed=0, validation_fraction=0.1)
    rows = np.arange(0, splits.train.count, 3)[:40]
    batch = assemble_batch(splits.train, rows, np.random.default_rng(5), span_corruption_p=1.0)
    vectors, found = splits.payload.vectors_of(batch.context_keys)  # (B, C, D)
    assert found.all()
    np.testing.assert_array_equal(batch.contexts, vectors)
    assert (batch.context_keys != splits.train.context_keys[rows]).any(axis=(1, 2)).sum() >= len(rows) // 2
    columns = TrainingBank.of_articles(splits.payload, splits.training_articles).target_columns(splits.train)
    bank_rows = TrainingBank.of_articles(splits.payload, splits.training_articles).rows
    np.testing.assert_array_equal(pack_keys(splits.payload.keys[bank_rows[columns]]), pack_keys(splits.train.truth_keys))
