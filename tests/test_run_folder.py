"""Which files of a run folder are gated (`lvmcore.artifacts.run_folder`): one rule for every route, said at
the start of the session, keeping the file with the most training record."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO
from lvmcore.artifacts.checkpoint import save_checkpoint
from lvmcore.artifacts.run_folder import select_run_files

CHECKS = REPO / "checks"


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"mix.weight": torch.full((4, 4), value), "mix.bias": torch.zeros(4)}


def their_checkpoint(path: Path, state: dict[str, torch.Tensor], **facts) -> Path:
    """The public pipeline's dict: epoch, model_state_dict, val_* figures when it has them, no step."""
    torch.save({"epoch": 3, "model_state_dict": state, "optimizer_state_dict": {}, **facts}, path)
    return path


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_our_run_keeps_each_epoch_file_and_skips_last_and_best_holding_its_weights(tmp_path) -> None:
    metrics = {"val_r_at_5": 0.4, "val_cosine": 0.5}
    for name, epoch, step, value in (("epoch_001.pt", 1, 10, 1.0), ("epoch_002.pt", 2, 20, 2.0), ("best.pt", 1, 10, 1.0), ("last.pt", 2, 20, 2.0)):
        save_checkpoint(tmp_path / name, {"model_config": {"kind": "gru"}, "model_state": weights(value), "epoch": epoch, "step": step, "metrics": metrics})
    folder = select_run_files(tmp_path, "checkpoint")
    assert names(folder.kept) == ["epoch_001.pt", "epoch_002.pt"]
    skipped = {s.path.name: (s.same_as.name, s.why) for s in folder.skipped}
    assert skipped["best.pt"][0] == "epoch_001.pt" and skipped["last.pt"][0] == "epoch_002.pt"
    assert "its name says its epoch" in skipped["best.pt"][1]
    lines = folder.lines()
    assert lines[0].endswith("gating 2 file(s): epoch_001.pt, epoch_002.pt")
    assert any(line.startswith("  skipped best.pt: the same weights as epoch_001.pt, which is gated") for line in lines)


@pytest.mark.parametrize("route", ["checkpoint", "adapter"])
def test_their_best_and_final_of_one_epoch_the_file_with_training_figures_is_kept_on_every_route(tmp_path, route) -> None:
    """The issue's case: same epoch, no step. Only the same weights make them one model, and best.pt (val figures) is gated."""
    their_checkpoint(tmp_path / "best.pt", weights(1.0), val_cosine=0.36, val_loss=1.7)
    their_checkpoint(tmp_path / "final.pt", weights(1.0))
    folder = select_run_files(tmp_path, route)
    assert names(folder.kept) == ["best.pt"]
    assert [(s.path.name, s.same_as.name) for s in folder.skipped] == [("final.pt", "best.pt")]
    assert "records more of its training (3 field(s) against 1)" in folder.skipped[0].why


@pytest.mark.parametrize("route", ["checkpoint", "adapter"])
def test_their_best_and_final_with_different_weights_are_both_gated(tmp_path, route) -> None:
    their_checkpoint(tmp_path / "best.pt", weights(1.0), val_cosine=0.36)
    their_checkpoint(tmp_path / "final.pt", weights(2.0))
    folder = select_run_files(tmp_path, route)
    assert names(folder.kept) == ["best.pt", "final.pt"] and folder.skipped == []
    assert folder.lines()[0].endswith("none skipped (no two files hold the same weights)")


def test_a_recorded_epoch_that_differs_is_never_read_as_the_same_model(tmp_path) -> None:
    for epoch in (1, 2):  # a flat epoch (lr 0) leaves the same weights: still two checkpoints of the run
        save_checkpoint(tmp_path / f"epoch_{epoch:03d}.pt", {"model_config": {}, "model_state": weights(1.0), "epoch": epoch, "step": 10 * epoch})
    assert names(select_run_files(tmp_path, "checkpoint").kept) == ["epoch_001.pt", "epoch_002.pt"]


def test_predictions_and_programs_are_the_same_model_when_their_bytes_are(tmp_path) -> None:
    (tmp_path / "a.npz").write_bytes(b"predictions one")
    shutil.copy(tmp_path / "a.npz", tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"predictions two")
    folder = select_run_files(tmp_path, "predictions")
    assert names(folder.kept) == ["a.npz", "c.npz"]
    assert folder.skipped[0].path.name == "b.npz" and folder.skipped[0].why.startswith("the same bytes as a.npz")


@pytest.mark.parametrize("route_args", [[], ["--model-adapter", "helpers.foreign_model:load_predictor"]], ids=["checkpoint", "adapter"])
def test_the_session_says_what_it_gates_and_skips_before_any_check(pytester, tmp_path, route_args) -> None:
    their_checkpoint(tmp_path / "best.pt", weights(1.0), val_cosine=0.36, val_loss=1.7)
    their_checkpoint(tmp_path / "final.pt", weights(1.0))
    result = pytester.runpytest_subprocess(str(CHECKS), "-m", "gate", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
                                           "--checkpoint", str(tmp_path), *route_args, "--collect-only", "-q")
    out = result.stdout.str()
    route = "adapter" if route_args else "checkpoint"
    assert f"lvm-checks: run folder {tmp_path} ({route} route): gating 1 file(s): best.pt" in out, out[-2000:]
    assert "  skipped final.pt: the same weights as best.pt, which is gated: it records more of its training" in out
    assert "[best]" in out and "[final]" not in out
