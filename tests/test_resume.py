"""The run directory and `--resume` (`train/resume.py`): a killed run resumed ends with the same weights, any checkpoint of
the run continues it and rewinds the run to it, each refusal is one line, and a new run never writes over another."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lvmcore.artifacts.checkpoint import peek_epoch_step
from lvmcore.artifacts.history import read_history
from lvmcore.errors import ArtifactError
from lvmcore.artifacts.payload import load_payload, write_payload
from train.__main__ import main
from train.config import config_from_args
from train.loop import TrainHooks, train
from train.resume import rewind
from helpers.training_runs import bank, config, weights, assert_same_weights, cli_args, one_line_error, finished_run, copy_run, Killed  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_out_naming_a_file_is_one_line_and_writes_nothing(bank: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(cli_args(bank, tmp_path / "notes.txt")) == 2
    assert "notes.txt: exists and is not a directory" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"
    assert main(cli_args(bank, tmp_path / "notes.txt" / "run")) == 2  # a directory we cannot create
    assert "cannot be created" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


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
