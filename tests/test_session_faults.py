"""The suite as a command: a broken artifact is one line, once; a bad option is a usage error; no traceback.

Runs the real `checks/` in-process with pytester on a small healthy bank broken one way per case.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from conftest import REPO
from helpers.synthetic import write_healthy_bank

CHECKS = REPO / "checks"
DIM = 16


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_healthy_bank(tmp_path_factory.mktemp("session") / "bank", articles=160, dim=DIM)


@pytest.fixture
def bank(healthy: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "bank"
    shutil.copytree(healthy["payload"].parent, root)
    return {name: root / path.relative_to(healthy["payload"].parent) for name, path in healthy.items()}


def run_suite(pytester: pytest.Pytester, bank: dict[str, Path], marker: str, *extra: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(
        str(CHECKS), "-m", marker, "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
        "--payload", str(bank["payload"]), "--eval-set", str(bank["eval"]), "--train-data", str(bank["train"]),
        "--index-cache", str(pytester.path / "cache"), "--report-dir", str(pytester.path / "reports"), "--nlist", "8", "--nprobe", "8",
        *extra,
    )


def assert_reported_once(result: pytest.RunResult, fragment: str) -> str:
    """One artifact error, in one line containing `fragment`, every other dependent check "not run"; no traceback."""
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, text[-3000:]
    assert "Traceback" not in text and "During handling of the above exception" not in text, text[-3000:]
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 1, text[-3000:]
    lines = [line for line in text.splitlines() if line.startswith("ERROR ") and "more check(s) not run" in line]
    assert len(lines) == 1 and fragment in lines[0], text[-3000:]
    return lines[0]


BREAKS = {
    "manifest not UTF-8": (lambda b: b["payload"].joinpath("manifest.json").write_bytes(b'{"dim": \xff}'), "manifest.json: is not UTF-8 text"),
    "manifest dim a string": (lambda b: _edit_json(b["payload"] / "manifest.json", dim="16-D"), "'dim' is '16-D' (str), expected an integer"),
    "keys.npy truncated": (lambda b: _truncate(b["payload"] / "keys.npy", 200), "keys.npy: cannot be read: truncated"),
    "eval member missing": (lambda b: _drop_member(b["eval"], "truth_keys"), "eval.npz"),
    "eval truncated": (lambda b: _truncate(b["eval"], 300), "eval.npz"),
    "windows spec context_length 0": (lambda b: _edit_json(b["train"], context_length=0), "train.json: 'context_length' is 0"),
    "windows spec articles not integers": (lambda b: _edit_json(b["train"], articles=["a", "b"]), "train.json"),
}


def _edit_json(path: Path, **changes) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _drop_member(path: Path, name: str) -> None:
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files if k != name}
    np.savez(path, **arrays)


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_a_broken_artifact_is_one_line_once_and_the_dependent_checks_are_not_run(pytester: pytest.Pytester, bank, case: str) -> None:
    breaker, fragment = BREAKS[case]
    breaker(bank)
    result = run_suite(pytester, bank, "plumbing")
    assert_reported_once(result, fragment)
    if "not run" in result.stdout.str():
        result.stdout.fnmatch_lines(["SKIPPED [[]*[]] *: not run: the same artifact error: *"])


def test_under_two_workers_the_error_is_still_reported_once(pytester: pytest.Pytester, bank) -> None:
    _truncate(bank["eval"], 300)
    result = run_suite(pytester, bank, "plumbing", "-n", "2")
    line = assert_reported_once(result, "eval.npz")
    assert int(re.search(r"; (\d+) more check\(s\) not run", line).group(1)) >= 5


def test_a_corrupt_checkpoint_is_one_line_once_per_checkpoint(pytester: pytest.Pytester, bank, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "epoch_001.pt").write_bytes(b"PK\x03\x04 not really a zip")
    result = run_suite(pytester, bank, "gate", "--checkpoint", str(run))
    assert_reported_once(result, "epoch_001.pt: is truncated or corrupt")


@pytest.mark.parametrize("args, message", [
    (["--index", "{missing}"], "--index {missing}: no such file"),
    (["--index", "{dir}"], "is a directory, expected a FAISS index file"),
    (["--nprobe", "0"], "--nprobe 0: expected a positive integer"),
    (["--gate-train-sample", "-5"], "--gate-train-sample -5: expected a positive integer"),
    (["--checkpoint", "{missing}"], "--checkpoint {missing}: no such file or directory"),
    (["--checkpoint", "{dir}"], "directory holds no *.pt checkpoint"),
], ids=["index-missing", "index-directory", "nprobe-zero", "negative-sample", "checkpoint-missing", "checkpoint-empty-dir"])
def test_a_bad_option_is_one_usage_error_line(pytester: pytest.Pytester, bank, tmp_path: Path, args: list[str], message: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    names = {"missing": str(tmp_path / "typo.faiss"), "dir": str(empty)}
    result = run_suite(pytester, bank, "plumbing", *[a.format(**names) for a in args])
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == 4 and "Traceback" not in text, text[-2000:]
    errors = [line for line in text.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and message.format(**names) in errors[0], text[-2000:]


def test_an_index_of_another_dimension_is_one_line(pytester: pytest.Pytester, bank, tmp_path: Path) -> None:
    other = faiss.IndexFlatIP(DIM + 8)
    other.add(np.eye(DIM + 8, dtype=np.float32))
    faiss.write_index(other, str(tmp_path / "other.faiss"))
    result = run_suite(pytester, bank, "plumbing", "--index", str(tmp_path / "other.faiss"))
    assert_reported_once(result, f"other.faiss: indexes vectors of dimension {DIM + 8}, the payload's are {DIM}")


def test_two_sessions_in_the_same_second_write_two_run_directories(pytester: pytest.Pytester, bank, monkeypatch) -> None:
    import time

    monkeypatch.setattr(time, "strftime", lambda *_: "20261202-151339")  # both sessions start in the same second
    first = run_suite(pytester, bank, "plumbing", "-k", "payload")
    second = run_suite(pytester, bank, "plumbing", "-k", "payload")
    assert first.ret == 0 and second.ret == 0
    runs = sorted(p.name for p in (pytester.path / "reports").iterdir())
    assert runs == ["20261202-151339", "20261202-151339-2"], runs
    assert all((pytester.path / "reports" / name / "plumbing" / "report.json").is_file() for name in runs)


def test_a_corrupted_cached_index_is_rebuilt_on_the_next_run_without_user_action(pytester: pytest.Pytester, bank) -> None:
    first = run_suite(pytester, bank, "plumbing", "--build-index", "-k", "index")
    assert first.ret == 0, first.stdout.str()[-2000:]
    (cached,) = (pytester.path / "cache" / "index").glob("*.faiss")
    cached.write_bytes(cached.read_bytes()[:100])  # what a power cut during a non-atomic write leaves
    second = run_suite(pytester, bank, "plumbing", "--build-index", "-k", "index", "-W", "always::UserWarning")  # shown even under an outer -W ignore
    text = second.stdout.str()
    assert second.ret == 0 and "Traceback" not in text, text[-2000:]
    assert "CacheWarning" in text and "moved aside to" in text and "rebuilding it" in text, text[-2000:]
    assert len(list(cached.parent.glob("*.corrupt-*"))) == 1 and cached.stat().st_size > 1000
    third = run_suite(pytester, bank, "plumbing", "--build-index", "-k", "index", "-W", "always::UserWarning")
    assert third.ret == 0 and "CacheWarning" not in third.stdout.str()


@pytest.mark.parametrize("option", ["--index", "--checkpoint"])
def test_a_mistyped_path_is_one_usage_error_line_under_two_workers_too(pytester: pytest.Pytester, bank, tmp_path: Path, option: str) -> None:
    missing = str(tmp_path / "typo")
    result = run_suite(pytester, bank, "gate" if option == "--checkpoint" else "plumbing", option, missing, "-n", "2")
    text = result.stdout.str() + result.stderr.str()
    errors = [line for line in text.splitlines() if line.startswith("ERROR: ")]
    assert result.ret == 4 and "Traceback" not in text and len(errors) == 1 and f"{option} {missing}" in errors[0], text[-2000:]
