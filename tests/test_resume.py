"""The training loop end to end on a small synthetic bank: history, schedule, resume, NaN stop, gate hook, data,
and the CLI's one-line refusals (the fault-driven tests are in test_train_faults.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lvmcore.artifacts.checkpoint import TRAINING_CHECKPOINT_FIELDS, load_checkpoint, peek_epoch_step
from lvmcore.artifacts.evalset import write_eval_set
from lvmcore.artifacts.history import read_history
from lvmcore.errors import ArtifactError
from lvmcore.models import PRESETS, build_model
from lvmcore.artifacts.payload import load_payload, write_payload
from lvmcore.gate.predict import predict
from lvmcore.keys import pack_keys
from lvmcore.training.negatives import expected_negatives_per_positive
from lvmcore.training.schedule import lr_at
from lvmcore.artifacts.training_data import write_windows_spec
from lvmcore.artifacts.windows import build_windows, document_split
from train.__main__ import main
from train.config import TrainConfig, config_from_args
from train.data import HardNegativeSampler, TrainingBank, article_dropout, assemble_batch, load_splits, span_corruption
from train.gate_hook import gate_summary, run_gate
from train.loop import TrainHooks, TrainingDiverged, train
from train.resume import rewind

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


def test_validation_excludes_each_windows_own_context(bank: Path) -> None:
    """A copier is copy-last: the same excluded R@5, and a paired lower bound over it of exactly 0 (not shown better)."""
    from lvmcore.artifacts.training_data import load_training_data
    from train.validation import validate

    class CopyLast(torch.nn.Module):
        tower_count = 1

        def forward(self, contexts: torch.Tensor) -> torch.Tensor:
            return contexts[:, -1, :]  # (B, D)

    payload = load_payload(bank / "payload")
    data = load_training_data(bank / "validation.json", payload)
    figures = validate(CopyLast(), data, payload, batch_size=32, temperature=0.05)
    assert figures["val_excluded_r_at_5"] == figures["val_copy_last_excluded_r_at_5"] and figures["val_excluded_over_copy_last_low"] == 0.0  # it is copy-last


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


def test_resume_takes_the_flag_alone_or_a_checkpoint_name_or_path(tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["--out", str(out)]
    assert config_from_args(base).resume_checkpoint() is None
    assert config_from_args([*base, "--resume"]).resume_checkpoint() == out / "last.pt"
    assert config_from_args(["--resume", *base]).resume_checkpoint() == out / "last.pt"  # a bare flag before another option
    assert config_from_args([*base, "--resume", "epoch_002.pt"]).resume_checkpoint() == out / "epoch_002.pt"  # a name: inside --out
    assert config_from_args([*base, f"--resume={out / 'epoch_001.pt'}"]).resume_checkpoint() == out / "epoch_001.pt"  # a path: as given


def test_resume_from_an_epoch_checkpoint_rewinds_the_run_and_ends_with_the_same_weights(bank: Path, tmp_path: Path) -> None:
    """epoch_001.pt holds what last.pt holds after epoch 1: resuming from it replays epochs 2-3 bit-exactly."""
    out = tmp_path / "run"
    whole = train(config(bank, out, epochs=3))
    steps = whole["config"]["steps_per_epoch"]
    (tmp_path / "final.pt").write_bytes((out / "last.pt").read_bytes())
    assert torch.load(out / "epoch_001.pt", weights_only=True)["epoch"] == 1  # epoch_NNN.pt: NNN finished epochs, from 001
    seen: list[tuple] = []

    def look(step: int, _model) -> None:  # what the run directory holds when the first resumed step starts
        if not seen:
            rows = [row["epoch"] for row in json.loads((out / "history.json").read_text())["epochs"]]
            seen.append((step, rows, peek_epoch_step(out / "last.pt"), peek_epoch_step(out / "best.pt")[0]))

    resumed = train(config(bank, out, epochs=3, resume="epoch_001.pt"), TrainHooks(before_step=look))
    assert seen == [(steps, [1], (1, steps), seen[0][3])] and seen[0][3] <= 1, "the run was not rewound to epoch 1 before it went on"
    assert [row["epoch"] for row in resumed["epochs"]] == [1, 2, 3]
    assert_same_weights(tmp_path / "final.pt", out / "last.pt")
    for left, right in zip(whole["epochs"], resumed["epochs"]):
        assert left["lr_trace"] == right["lr_trace"] and left["val_r_at_5"] == right["val_r_at_5"]


def test_resume_from_a_checkpoint_path_in_the_run_directory_by_the_cli(bank: Path, finished_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(finished_run, tmp_path)
    assert main(cli_args(bank, run, "--resume", str(run / "epoch_001.pt"))) == 0, capsys.readouterr().err
    assert "2 epoch(s)" in capsys.readouterr().out
    assert [row.epoch for row in read_history(run / "history.json", complete=True).epochs] == [1, 2]
    assert_same_weights(finished_run / "last.pt", run / "last.pt")


def test_rewinding_past_the_best_epoch_puts_back_the_best_of_the_epochs_kept(finished_run: Path, tmp_path: Path) -> None:
    run = copy_run(finished_run, tmp_path)
    shutil.copyfile(run / "epoch_002.pt", run / "best.pt")  # as if epoch 2 had been the best
    history = read_history(run / "history.json", complete=True)
    history.epochs = history.up_to(1)
    rewind(run, run / "epoch_001.pt", 1, history)
    assert sorted(p.name for p in run.glob("epoch_*.pt")) == ["epoch_001.pt"]  # the abandoned epoch 2 is not left for a gate to pick up
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["epoch"] == 1 and best["metrics"]["chosen_by"] == "val_excluded_over_copy_last_low"
    assert_same_weights(run / "epoch_001.pt", run / "best.pt")
    assert_same_weights(run / "epoch_001.pt", run / "last.pt")
    assert [row.epoch for row in read_history(run / "history.json").epochs] == [1]


def test_resume_before_the_first_checkpoint_says_to_start_again(bank: Path, tmp_path: Path, capsys) -> None:
    """A run killed before its first checkpoint has a directory, maybe history.json, and no last.pt."""
    assert main(cli_args(bank, tmp_path / "never", "--resume")) == 2
    line = one_line_error(capsys)
    assert "no run to resume" in line and "without --resume" in line
    assert not (tmp_path / "never").exists()
    out = tmp_path / "killed"
    out.mkdir()
    (out / "history.json").write_text(json.dumps({"format": "lvm-history/1", "config": {}, "epochs": []}))
    assert main(cli_args(bank, out, "--resume")) == 2
    line = one_line_error(capsys)
    assert "last.pt: no checkpoint to resume from" in line and "start it again without --resume" in line
    assert sorted(p.name for p in out.iterdir()) == ["history.json"]


def test_resume_names_the_checkpoints_a_run_has_when_the_one_asked_for_is_missing(bank: Path, finished_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(finished_run, tmp_path)
    assert main(cli_args(bank, run, "--resume", "epoch_007.pt")) == 2
    line = one_line_error(capsys)
    assert "epoch_007.pt: checkpoint file not found" in line and "last.pt, best.pt, epoch_001.pt, epoch_002.pt" in line
    elsewhere = tmp_path / "elsewhere.pt"
    shutil.copyfile(run / "last.pt", elsewhere)
    assert main(cli_args(bank, run, "--resume", str(elsewhere))) == 2
    assert "is not a checkpoint of the run in --out" in one_line_error(capsys)


def plain_torch_file(path: Path) -> None:
    torch.save({"format": "lvm-checkpoint/1", "model_config": {}, "model_state": {}}, path)  # a checkpoint, but not one to resume


RESUME_CHECKPOINT_FAULTS = {
    "a directory": (lambda p: (p.unlink(), p.mkdir()), "is a directory, expected a checkpoint file"),
    "empty": (lambda p: p.write_bytes(b""), "last.pt"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "is truncated or corrupt"),
    "not a checkpoint": (lambda p: p.write_text("{}"), "last.pt"),
    "no resume position": (plain_torch_file, "cannot be resumed: it has no"),
    "a dangling symlink": (lambda p: (p.unlink(), p.symlink_to(p.parent / "gone.pt")), "dangling symlink"),
}


@pytest.mark.parametrize("fault", sorted(RESUME_CHECKPOINT_FAULTS))
def test_a_resume_checkpoint_that_cannot_be_resumed_is_one_line(bank: Path, finished_run: Path, tmp_path: Path, capsys, fault: str) -> None:
    run = copy_run(finished_run, tmp_path)
    breaker, expected = RESUME_CHECKPOINT_FAULTS[fault]
    breaker(run / "last.pt")
    before = sorted(p.name for p in run.iterdir())
    assert main(cli_args(bank, run, "--resume")) == 2
    line = one_line_error(capsys)
    assert expected in line and "last.pt" in line, line
    assert sorted(p.name for p in run.iterdir()) == before


def history_of(run: Path) -> dict:
    return json.loads((run / "history.json").read_text())


HISTORY_FAULTS = {  # what history.json holds -> what the one line says
    "empty": (b"", "is empty (0 bytes)"),
    "not UTF-8": (b'{"format": "lvm-history/1", "\xff": 1}', "is not UTF-8 text"),
    "not JSON": (b'{"format": "lvm-history/1", "epochs": [', "is not valid JSON"),
    "a list": (b"[]", "is not a training history"),
    "epochs not a list": (lambda h: {**h, "epochs": {"1": h["epochs"][0]}}, "epochs is"),
    "a row not an object": (lambda h: {**h, "epochs": [3, *h["epochs"][1:]]}, "epochs[0] is 3 (int), expected a JSON object"),
    "a missing field": (lambda h: {**h, "epochs": [{k: v for k, v in h["epochs"][0].items() if k != "val_r_at_5"}]}, "epochs[0] is missing field(s) val_r_at_5"),
    "a field of the wrong type": (lambda h: {**h, "epochs": [{**h["epochs"][0], "epoch": "1"}]}, "epochs[0].epoch is '1' (str), expected an integer"),
    "rows out of order": (lambda h: {**h, "epochs": h["epochs"][::-1]}, "epochs[0] has epoch 2, expected 1"),
    "config not an object": (lambda h: {**h, "config": []}, "config is [] (list), expected a JSON object"),
}


@pytest.mark.parametrize("fault", sorted(HISTORY_FAULTS))
def test_resume_refuses_a_broken_history_in_one_line_naming_it_and_the_way_on(bank: Path, finished_run: Path, tmp_path: Path, capsys, fault: str) -> None:
    """history.json is the run's record: --resume refuses to go on without it whole, and says how to fix it."""
    run = copy_run(finished_run, tmp_path)
    content, expected = HISTORY_FAULTS[fault]
    data = content if isinstance(content, bytes) else json.dumps(content(history_of(run))).encode()
    (run / "history.json").write_bytes(data)
    assert main(cli_args(bank, run, "--resume")) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"error: {run / 'history.json'}: ") and expected in line, line
    assert "move it aside and resume again" in line
    assert (run / "history.json").read_bytes() == data  # refused, not repaired


def test_resume_without_history_goes_on_and_keeps_the_later_rows(bank: Path, finished_run: Path, tmp_path: Path) -> None:
    """The way on that the refusal names: history.json moved aside, the run resumes without the earlier rows."""
    run = copy_run(finished_run, tmp_path)
    (run / "history.json").rename(tmp_path / "history.json.broken")
    history = train(config(bank, run, resume="epoch_001.pt"))
    assert [row["epoch"] for row in history["epochs"]] == [2]
    assert_same_weights(finished_run / "last.pt", run / "last.pt")


def test_resume_refuses_another_payload(bank: Path, finished_run: Path, tmp_path: Path) -> None:
    run = copy_run(finished_run, tmp_path)
    payload = load_payload(bank / "payload")
    write_payload(tmp_path / "other", payload.vectors[:, ::-1].copy(), payload.keys, embedder="synthetic")
    with pytest.raises(ArtifactError, match="was trained on payload .* resume with the same data"):
        train(config(bank, run, payload=str(tmp_path / "other"), resume=True))


def test_orphan_temp_files_of_a_killed_writer_are_removed_on_resume_and_at_start(bank: Path, finished_run: Path, tmp_path: Path) -> None:
    run = copy_run(finished_run, tmp_path)
    orphans = [run / ".last.pt.pid999999.abcd.tmp", run / ".history.json.pid999999.k2x9.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    train(config(bank, run, resume=True))  # the run is finished: nothing to train, only the directory tidied
    assert not any(orphan.exists() for orphan in orphans)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / orphans[0].name).write_bytes(b"half a checkpoint")
    train(config(bank, fresh, epochs=1, max_steps_per_epoch=1))
    assert not (fresh / orphans[0].name).exists()


# --------------------------------------------------------------------------- the run directory


def test_out_naming_a_file_is_one_line_and_writes_nothing(bank: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(cli_args(bank, tmp_path / "notes.txt")) == 2
    assert "notes.txt: exists and is not a directory" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"
    assert main(cli_args(bank, tmp_path / "notes.txt" / "run")) == 2  # a directory we cannot create
    assert "cannot be created" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_directory_in_the_way_of_a_checkpoint_is_one_line(bank: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "run" / "epoch_001.pt").mkdir(parents=True)
    assert main(cli_args(bank, tmp_path / "run", "--epochs", "1", "--max-steps-per-epoch", "1")) == 2
    line = one_line_error(capsys)
    assert "epoch_001.pt: cannot be written" in line, line
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


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


CLI_FAULTS = [  # (option=value, what the one line says): each numeric option out of range, and values argparse cannot read
    ("--epochs=0", "--epochs must be >= 1"), ("--epochs=x", "invalid int value: 'x'"), ("--epochs=--", "--epochs: expected one value"),
    ("--batch-size=-1", "--batch-size and --accumulation must be >= 1"), ("--accumulation=0", "--batch-size and --accumulation must be >= 1"),
    ("--lr=nan", "--lr must be a finite number > 0"), ("--lr=0", "--lr must be a finite number > 0"), ("--lr=-inf", "--lr must be"),
    ("--lr=--", "--lr: expected one value"), ("--min-lr=1", "--min-lr must be a finite number in [0, --lr"), ("--min-lr=-1e-9", "--min-lr must be"),
    ("--warmup-steps=-1", "--warmup-steps must be >= 0"), ("--weight-decay=nan", "--weight-decay must be"), ("--grad-clip=0", "--grad-clip must be"),
    ("--temperature=inf", "--temperature must be a finite number > 0"), ("--temperature=0", "--temperature must be"),
    ("--seed=-1", "--seed must be in [0, 2**63 - 1]"), ("--seed=9223372036854775808", "--seed must be"), ("--seed=1.5", "invalid int value"),
    ("--validation-fraction=0", "--validation-fraction must be in (0, 1)"), ("--validation-fraction=nan", "--validation-fraction must be"),
    ("--article-dropout=1.5", "--article-dropout is a probability"), ("--span-corruption=nan", "--span-corruption is a probability"),
    ("--bank-negatives=-1", "--bank-negatives must be >= 0"), ("--hard-negatives=2", "--hard-negatives is for --loss in_batch"),
    ("--hard-negatives=100000", "--hard-negatives must be <= 1024"),
    ("--checkpoint-every-steps=-2", "--checkpoint-every-steps must be >= 0"), ("--max-validation-windows=-1", "--max-validation-windows must be >= 0"),
    ("--max-steps-per-epoch=-1", "--max-steps-per-epoch must be >= 0"), ("--threads=-1", "--threads must be >= 0"),
    ("--preset=gpt", "--preset must be one of"), ("--loss=triplet", "argument --loss: invalid choice"), ("--device=tpu", "argument --device: invalid choice"),
    ("--payload=", "--payload is empty"), ("--train-data=", "--train-data is empty"), ("--resume=", "--resume was given an empty name"),
    ("--no-such-option", "unrecognized arguments: --no-such-option"),
]  # fmt: skip


@pytest.mark.parametrize("argument, expected", CLI_FAULTS, ids=[a for a, _ in CLI_FAULTS])
def test_each_bad_option_value_is_one_line_exit_2_and_writes_nothing(bank: Path, tmp_path: Path, capsys, argument: str, expected: str) -> None:
    assert main(cli_args(bank, tmp_path / "run", argument)) == 2
    line = one_line_error(capsys)
    assert expected in line, line
    assert not (tmp_path / "run").exists()


def test_out_missing_is_one_line(capsys) -> None:
    assert main(["--epochs", "1"]) == 2
    assert "the following arguments are required: --out" in one_line_error(capsys)


@pytest.mark.parametrize("option", ["--payload", "--train-data", "--validation-data", "--eval-set"])
def test_each_input_file_option_names_a_missing_or_wrong_kind_of_file_in_one_line(bank: Path, tmp_path: Path, capsys, option: str) -> None:
    """Every option that reads a file, given a path that does not exist and then a path of the wrong kind (a directory, a text file)."""
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "notes.txt").write_text("not data")
    gate = ["--gate-every-epoch"] if option == "--eval-set" else []  # the eval set is read only for the gate, and then before training
    wrong_kind = tmp_path / ("notes.txt" if option in ("--payload", "--eval-set") else "a_dir")
    for path, expected in ((tmp_path / "absent", "not found"), (wrong_kind, str(wrong_kind))):
        assert main(cli_args(bank, tmp_path / "run", option, str(path), *gate)) == 2
        line = one_line_error(capsys)
        assert expected in line, line
        assert not (tmp_path / "run").exists()


def test_device_cuda_without_a_gpu_is_one_line(bank: Path, tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(cli_args(bank, tmp_path / "run", "--device", "cuda")) == 2
    assert "--device cuda" in one_line_error(capsys)


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
        assert row["gate"]["run_report"].startswith("not written:") and "per-row figures" in row["gate"]["run_report"]  # the fake gate records none


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


# --------------------------------------------------------------------------- a new run never writes over another


def test_a_new_run_into_a_directory_holding_one_is_refused_and_nothing_changes(bank: Path, finished_run: Path, tmp_path: Path, capsys) -> None:
    run = copy_run(finished_run, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(cli_args(bank, run, "--max-steps-per-epoch", "1")) == 2
    message = one_line_error(capsys)
    assert "already holds a training run" in message and "last.pt at epoch 2" in message and "--resume" in message and "--overwrite" in message
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_overwrite_starts_over_and_leaves_no_stale_epoch_checkpoint(bank: Path, finished_run: Path, tmp_path: Path) -> None:
    run = copy_run(finished_run, tmp_path)
    assert (run / "epoch_002.pt").is_file()
    history = train(config(bank, run, epochs=1, max_steps_per_epoch=2, overwrite=True))
    assert [row["epoch"] for row in history["epochs"]] == [1]
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "epoch_001.pt", "last.pt"]  # epoch_002.pt of the old run is gone
    assert peek_epoch_step(run / "last.pt")[0] == 1


def test_overwrite_and_resume_together_are_refused(bank: Path, tmp_path: Path, capsys) -> None:
    assert main(cli_args(bank, tmp_path / "run", "--overwrite", "--resume")) == 2
    assert "give one of them" in one_line_error(capsys) and not (tmp_path / "run").exists()
