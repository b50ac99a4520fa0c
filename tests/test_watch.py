"""`lvm-checks watch`: every checkpoint gated once, as soon as it is complete, and never a partial file.

The end-to-end tests run a real `python -m train` and a real `python -m lvm_checks watch` side by
side (subprocesses, the embedded bank); the report of each gate records the sha256 of the file it
read, which must be the finished file's. The unit tests pin how a file is known to be complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import REPO
from lvm_checks.suite import locate
from lvm_checks.watch import NO_CHECKPOINT_EXIT, SENTINEL, Watcher, WatchOptions, is_temporary, looks_complete, route_of

EPOCHS = 3
TRAIN_ARGS = ("--preset", "gru", "--epochs", str(EPOCHS), "--max-steps-per-epoch", "3", "--batch-size", "16", "--no-progress", "--device", "cpu", "--seed", "0")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lvm_checks(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lvm_checks", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def gated_file_hash(report: Path) -> str:
    return json.loads(report.read_text())["options"]["measured"]["subject"]["file"]["sha256"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished 3-epoch run of the real trainer (3 steps an epoch): copy it, never change it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    done = subprocess.run([sys.executable, "-m", "train", "--out", str(out), *TRAIN_ARGS], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


# -- how a file is known to be complete ------------------------------------------------------------

@pytest.mark.parametrize("name", [".epoch_001.pt.pid12.ab3x.tmp", "epoch_001.pt.tmp", "epoch_001.pt.part", ".epoch_001.pt.Xy12", "epoch_001.pt~"])
def test_temporary_names_are_never_read(name: str) -> None:
    assert is_temporary(Path(name))


@pytest.mark.parametrize(("name", "adapter", "route"), [("epoch_001.pt", None, "checkpoint"), ("model.pth", None, None), ("model.pth", "m:f", "adapter"),
                                                        ("epoch_001.pt", "m:f", "adapter"), ("prog.pt2", None, "model_file"),
                                                        ("predictions.npz", None, "predictions"), ("history.json", None, None)])
def test_a_file_arrives_by_its_suffix(name: str, adapter: str | None, route: str | None) -> None:
    assert not is_temporary(Path(name))
    assert route_of(Path(name), adapter) == route


def test_a_checkpoint_cut_off_mid_write_is_not_complete(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save({"model_state": {"w": torch.randn(64, 64)}, "epoch": 1}, whole)
    data = whole.read_bytes()
    for cut in (len(data) // 4, len(data) // 2, len(data) - 30):
        part = tmp_path / f"cut{cut}.pt"
        part.write_bytes(data[:cut])
        assert not looks_complete(part), f"a file cut at {cut} of {len(data)} bytes was taken as complete"
    assert looks_complete(whole)


def test_a_file_is_ready_only_after_it_stops_changing(tmp_path: Path) -> None:
    now = [100.0]
    watcher = Watcher(WatchOptions(run_dir=tmp_path, report_dir=tmp_path / "reports", settle_s=2.0), locate(), out=io.StringIO(), clock=lambda: now[0])
    path = tmp_path / "epoch_001.pt"
    torch.save({"model_state": {"w": torch.zeros(3)}}, path)
    assert watcher.ready(now[0]) == []  # first sighting
    now[0] += 1.0
    assert watcher.ready(now[0]) == []  # unchanged for 1 s of 2
    with path.open("ab") as handle:  # it grows: the wait starts again
        handle.write(b"\0")
    os.utime(path, ns=(time.time_ns(), time.time_ns()))
    now[0] += 5.0
    assert watcher.ready(now[0]) == []
    torch.save({"model_state": {"w": torch.zeros(3)}}, path)
    watcher.ready(now[0])
    now[0] += 2.0
    assert watcher.ready(now[0]) == [path]


def test_a_watch_that_gates_nothing_certifies_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    code = Watcher(WatchOptions(run_dir=tmp_path, report_dir=tmp_path / "reports", timeout_s=0.3, poll_s=0.05), locate(), out=out).run()
    assert code == NO_CHECKPOINT_EXIT != 0
    assert "no checkpoint was gated" in out.getvalue()


# -- end to end --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_watcher_gates_every_epoch_of_a_training_subprocess_exactly_once(tmp_path: Path) -> None:
    """`python -m train` and `lvm-checks watch` on its --out, started before the folder exists."""
    out = tmp_path / "run"
    watcher = lvm_checks("watch", str(out), "--settle", "0.5", "--poll", "0.2", "--timeout", "400", cwd=tmp_path)
    trainer = subprocess.run([sys.executable, "-m", "train", "--out", str(out), *TRAIN_ARGS], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert trainer.returncode == 0, trainer.stderr[-2000:]
    log, _ = watcher.communicate(timeout=600)
    assert watcher.returncode in (0, 1), log  # the worst decision's code: 0 only when every epoch is `continue`
    gates = out / "reports" / "gates"
    for epoch in range(1, EPOCHS + 1):
        name = f"epoch_{epoch:03d}"
        assert log.count(f"gating {name}.pt") == 1, log
        report = gates / name / "report.json"
        assert gated_file_hash(report) == sha256(out / f"{name}.pt"), f"{name}: the gate read another version of the file"
        assert json.loads(report.read_text())["decision"]["action"]
    assert "gating last.pt" not in log and "gating best.pt" not in log  # copies of an epoch file: skipped, and said so
    assert "skipped last.pt: the same weights as epoch_003.pt" in log
    assert "changed while it was gated" not in log
    assert f"{SENTINEL} found" in log
    run_md = (gates / "run.md").read_text()
    assert all(f"| epoch_{e:03d} |" in run_md for e in range(1, EPOCHS + 1)) and "keep" in run_md
    assert (gates / "run.png").is_file()


def write_slowly(data: bytes, path: Path, pieces: int, pause_s: float) -> None:
    """Another trainer's in-place write: the file exists, growing, for pieces * pause_s seconds."""
    with path.open("wb") as handle:
        step = len(data) // pieces + 1
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            time.sleep(pause_s)


@pytest.mark.slow
def test_a_file_written_in_place_is_gated_once_and_only_when_complete(tmp_path: Path, trained_run: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    watcher = lvm_checks("watch", str(out), "--settle", "0.6", "--poll", "0.1", "--timeout", "300", cwd=tmp_path)
    (out / ".epoch_009.pt.pid1.x.tmp").write_bytes(b"never complete")  # a temporary file is never read
    first = (trained_run / "epoch_001.pt").read_bytes()
    writer = threading.Thread(target=write_slowly, args=(first, out / "epoch_001.pt", 6, 0.4))
    writer.start()
    writer.join()
    time.sleep(2.0)
    shutil.copy(trained_run / "epoch_002.pt", out / "epoch_002.pt")
    time.sleep(1.0)
    (out / SENTINEL).write_text("{}")
    log, _ = watcher.communicate(timeout=600)
    assert watcher.returncode in (0, 1), log
    assert log.count("gating epoch_001.pt") == 1 and log.count("gating epoch_002.pt") == 1, log
    assert ".tmp" not in log
    gates = out / "reports" / "gates"
    for name in ("epoch_001", "epoch_002"):
        assert gated_file_hash(gates / name / "report.json") == sha256(out / f"{name}.pt")


@pytest.mark.slow
def test_checkpoints_copied_in_one_by_one_share_the_warm_inputs(tmp_path: Path, trained_run: Path) -> None:
    """In one process: the payload, index, baselines and the gate's input figures are computed once for three checkpoints."""
    out = tmp_path / "run"
    out.mkdir()
    for epoch in range(1, EPOCHS + 1):
        shutil.copy(trained_run / f"epoch_{epoch:03d}.pt", out / f"epoch_{epoch:03d}.pt")
    (out / SENTINEL).write_text("{}")
    log = io.StringIO()
    watcher = Watcher(WatchOptions(run_dir=out, report_dir=out / "reports", settle_s=0.0, poll_s=0.05), locate(), out=log)
    code = watcher.run()
    assert code in (0, 1), log.getvalue()
    assert [g.subject for g in watcher.history] == [f"epoch_{e:03d}" for e in range(1, EPOCHS + 1)]
    for name in ("payload", "eval_set", "ivf_index", "gate_fixed_results", "gate_inputs"):
        assert watcher.store.hits.get(name) == EPOCHS - 1, (name, watcher.store.hits)
    run = json.loads((out / "reports" / "gates" / "run.json").read_text())
    assert [c["name"] for c in run["checkpoints"]] == [f"epoch_{e:03d}" for e in range(1, EPOCHS + 1)]
    assert run["keep"] in {c["name"] for c in run["checkpoints"]} and run["sentence"]


@pytest.mark.slow
def test_a_rewritten_file_is_gated_again_and_its_first_report_kept(tmp_path: Path, trained_run: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    log = io.StringIO()
    watcher = Watcher(WatchOptions(run_dir=out, report_dir=out / "reports", settle_s=0.0, poll_s=0.05, timeout_s=0.5), locate(), out=log)
    shutil.copy(trained_run / "epoch_001.pt", out / "model.pt")
    watcher.ready(0.0)
    watcher.gate(*watcher.ready(1.0))
    shutil.copy(trained_run / "epoch_003.pt", out / "model.pt")  # a trainer that overwrites one file each epoch
    watcher.ready(2.0)
    watcher.gate(*watcher.ready(3.0))
    gates = out / "reports" / "gates"
    assert gated_file_hash(gates / "model@1" / "report.json") == sha256(trained_run / "epoch_001.pt")
    assert gated_file_hash(gates / "model" / "report.json") == sha256(trained_run / "epoch_003.pt")
    assert {c["name"] for c in json.loads((gates / "run.json").read_text())["checkpoints"]} == {"model", "model@1"}


def test_the_trainer_writes_the_sentinel_when_it_ends(tmp_path: Path, trained_run: Path) -> None:
    content = json.loads((trained_run / SENTINEL).read_text())
    assert content["status"] == "finished" and content["epochs"] == EPOCHS


def test_zip_central_directory_is_what_completes_a_file(tmp_path: Path) -> None:
    """The property the completeness rule leans on: torch writes a zip whose directory comes last."""
    path = tmp_path / "x.pt"
    torch.save({"a": torch.ones(10)}, path)
    assert zipfile.is_zipfile(path)
    data = path.read_bytes()
    assert data.rfind(b"PK\x05\x06") > len(data) - 100  # the end-of-central-directory record sits at the very end


def test_a_gate_option_that_cannot_work_is_refused_before_anything_is_watched(tmp_path: Path) -> None:
    out = io.StringIO()
    options = WatchOptions(run_dir=tmp_path, report_dir=tmp_path / "reports", timeout_s=0.1, poll_s=0.05, pytest_args=["--level", "nope"])
    assert Watcher(options, locate(), out=out).run() == 4
    assert "invalid choice: 'nope'" in out.getvalue() and "gating" not in out.getvalue()


@pytest.mark.slow
def test_a_checkpoint_left_cut_off_at_the_end_is_named_and_never_read(tmp_path: Path, trained_run: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(trained_run / "epoch_001.pt", out / "epoch_001.pt")
    data = (trained_run / "epoch_002.pt").read_bytes()
    (out / "epoch_002.pt").write_bytes(data[: len(data) // 2])  # a trainer killed mid-write
    (out / SENTINEL).write_text("{}")
    log = io.StringIO()
    code = Watcher(WatchOptions(run_dir=out, report_dir=out / "reports", settle_s=0.0, poll_s=0.05), locate(), out=log).run()
    assert code != 0
    assert "NOT gated: epoch_002.pt: it does not open as a whole zip" in log.getvalue()
    assert "gating epoch_002.pt" not in log.getvalue() and not (out / "reports" / "gates" / "epoch_002").exists()


def test_the_watcher_stops_on_the_name_the_trainer_writes() -> None:
    from train.config import SENTINEL as WRITTEN  # the two programs may not import each other: one test holds them together

    assert SENTINEL == WRITTEN


def test_the_worst_verdict_is_the_highest_exit_code_then_the_decision_that_comes_first() -> None:
    from lvm_checks.watch import Gated, severity

    def gated(action: str, code: int) -> Gated:
        return Gated(Path(f"{action}.pt"), action, code, action, "", None, None)

    runs = [gated("train_more", 1), gated("below_baseline", 1), gated("check_data", 1), gated("continue", 0)]
    assert max(runs, key=severity).action == "check_data"
    assert max([gated("train_more", 1), gated("below_baseline", 1)], key=severity).action == "below_baseline"
    assert max([gated("continue", 0), gated("unknown", 4)], key=severity).action == "unknown"
    assert max([gated("continue", 0), gated("continue", 0)], key=severity).exit_code == 0


def test_ctrl_c_during_a_gate_stops_the_watch_and_keeps_no_half_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest swallows Ctrl-C and returns INTERRUPTED: the watcher must stop on it, not watch on."""
    import lvm_checks.watch as watch

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model_state": {"w": torch.zeros(3)}, "epoch": 1}, out / "epoch_001.pt")
    monkeypatch.setattr(watch.pytest, "main", lambda *a, **k: pytest.ExitCode.INTERRUPTED)
    watcher = Watcher(WatchOptions(run_dir=out, report_dir=out / "reports", settle_s=0.0, poll_s=0.05, timeout_s=30), locate(), out=io.StringIO())
    watcher.preflight = lambda: None  # type: ignore[method-assign]  (the stubbed pytest.main has nothing to refuse)
    began = time.monotonic()
    code = watcher.run()
    assert time.monotonic() - began < 10 and "interrupted: stopping" in watcher.out.getvalue()
    assert code == NO_CHECKPOINT_EXIT and watcher.history == [] and not (out / "reports" / "gates" / "epoch_001").exists()
