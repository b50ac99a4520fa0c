"""The suite's own machinery: threshold markers and overrides, levels, the recorder and its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from helpers.synthetic import write_healthy_bank

PLUGINS = ["-p", "fixtures.options", "-p", "fixtures.recorder", "-p", "fixtures.thresholds"]

LEVELLED_CHECK = """
import pytest

@pytest.mark.threshold("r_at_5", minimum=0.0, good=0.05, strong=0.10, strict=True, percent=True)
def test_recall(threshold):
    threshold.check({value}, cause="the model learned nothing")
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(*PLUGINS, "-p", "no:cacheprovider", "--report-dir", "rep", "--run-name", "r", *args)


def test_required_level_fails_and_message_states_figure_threshold_and_cause(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LEVELLED_CHECK.format(value=0.0))
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*r_at_5 = 0.00%, required > 0.00% (minimum).*Likely cause: the model learned nothing*"])


def test_higher_levels_are_reported_without_failing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LEVELLED_CHECK.format(value=0.07))
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*r_at_5*7.00%*> 0.00%*PASS (good)*"])
    report = json.loads((pytester.path / "rep" / "r" / "plumbing" / "report.json").read_text())
    (row,) = report["records"]
    assert row["level_reached"] == "good" and row["levels"]["strong"] == "> 10.00%"


def test_level_option_raises_the_bar(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LEVELLED_CHECK.format(value=0.07))
    run(pytester, "--level", "strong").assert_outcomes(failed=1)


def test_command_line_override(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LEVELLED_CHECK.format(value=0.07))
    result = run(pytester, "--level", "good", "--threshold", "r_at_5.good=0.08")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*required > 8.00% (good)*"])


def test_ini_override(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlvm_thresholds =\n    r_at_5.minimum=0.10\n")
    pytester.makepyfile(LEVELLED_CHECK.format(value=0.07))
    run(pytester).assert_outcomes(failed=1)


def test_malformed_override_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LEVELLED_CHECK.format(value=0.07))
    result = run(pytester, "--threshold", "r_at_5=0.1")
    result.stderr.fnmatch_lines(["*expected NAME.LEVEL=VALUE*"])


def test_threshold_fixture_without_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(threshold):\n    pass\n")
    result = run(pytester)
    assert "without a @pytest.mark.threshold marker" in result.stdout.str() + result.stderr.str()


def test_below_threshold_direction(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
@pytest.mark.threshold("dup", minimum=0.01, above=False)
def test_dup(threshold):
    threshold.check(0.02, cause="duplicated rows")
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*dup = 0.02, required <= 0.01 (minimum).*duplicated rows*"])


def test_records_merge_across_xdist_workers(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pytester.makepyfile(
        """
import pytest
@pytest.mark.parametrize("i", range(6))
@pytest.mark.threshold("value", minimum=0)
def test_value(i, threshold, record):
    record(f"info_{i}", i)
    threshold.check(i, cause="never")
"""
    )
    result = pytester.runpytest_subprocess(*PLUGINS, "-p", "no:cacheprovider", "-n", "2", "--report-dir", "rep", "--run-name", "r")
    result.assert_outcomes(passed=6)
    report = json.loads((pytester.path / "rep" / "r" / "plumbing" / "report.json").read_text())
    assert len(report["records"]) == 12
    assert sorted(r["measured"] for r in report["records"] if r["check"] == "value") == [0, 1, 2, 3, 4, 5]
    assert set(report["outcomes"].values()) == {"passed"}


def test_plumbing_passes_on_public_format_files(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A public .npz payload and an eval file without context_keys: context keys are recovered from the payload, so the
    context checks run (and pass); the guards that cannot measure (no training data, no index) are listed loudly."""
    bank = write_healthy_bank(tmp_path / "bank", articles=120, dim=16)  # >= 153 eval rows (test_eval_size)
    vectors = np.load(bank["payload"] / "vectors.npy")
    keys = np.load(bank["payload"] / "keys.npy")
    np.savez(tmp_path / "public_payload.npz", vectors=vectors, article_indices=keys[:, 0], chunk_indices=keys[:, 1])
    with np.load(bank["eval"]) as ours:
        np.savez(tmp_path / "public_eval.npz", contexts=ours["contexts"], targets=ours["targets"], truth_keys=ours["truth_keys"])
    result = pytester.runpytest_inprocess(
        str(REPO / "checks"), "-m", "plumbing", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
        "--payload", str(tmp_path / "public_payload.npz"), "--eval-set", str(tmp_path / "public_eval.npz"), "--train-data", "none",
        "--index-cache", str(tmp_path / "cache"), "--report-dir", str(tmp_path / "rep"), "-rs",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes["passed"] >= 12
    result.stdout.fnmatch_lines(["*eval_context_aligned_fraction*100.00%*PASS*", "*SKIPPED GUARD(S)*",
                                 "SKIPPED checks/test_training_alignment.py::test_every_training_target_matches_payload: no training data given*"])


def test_markers_are_registered_by_the_plugins_under_strict_markers(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """No pytest.ini here: the plugins alone must register `threshold`, `plumbing`, `gate` and `slow`."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the checkout's `fixtures` (installed, it is `lvm_checks.fixtures`)
    pytester.makepyfile(LEVELLED_CHECK.format(value=0.07).replace("def test_recall", "@pytest.mark.plumbing\n@pytest.mark.gate\n@pytest.mark.slow\ndef test_recall"))
    result = pytester.runpytest_subprocess(*PLUGINS, "-p", "no:cacheprovider", "--report-dir", "rep", "--run-name", "r", "--strict-markers")  # a fresh process: nothing registered by this session leaks in
    result.assert_outcomes(passed=1)
    pytester.makepyfile(test_marker_only="import pytest\n\n@pytest.mark.threshold('x', minimum=0)\ndef test_x():\n    pass\n")
    without = pytester.runpytest_subprocess("test_marker_only.py", "-p", "no:cacheprovider", "--strict-markers")  # no plugins: the marker is unknown
    assert without.ret != 0 and "not found in `markers` configuration option" in without.stdout.str()


PHASED_TEST = """
from lvmcore.progress import phase

def test_work():
    with phase("demo work", total=2) as step:
        step()
        step()
"""


def test_long_phases_are_shown_once_each_and_not_under_quiet(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import fixtures.progress

    monkeypatch.setattr(fixtures.progress, "MIN_SECONDS", 0.0)  # every phase counts as long here
    pytester.makepyfile(PHASED_TEST)
    shown = pytester.runpytest_inprocess("-p", "fixtures.progress", "-p", "no:cacheprovider")
    shown.assert_outcomes(passed=1)
    assert shown.stdout.str().count("lvm-checks: demo work 100%") == 1, shown.stdout.str()
    quiet = pytester.runpytest_inprocess("-p", "fixtures.progress", "-p", "no:cacheprovider", "-q")
    quiet.assert_outcomes(passed=1)
    assert "lvm-checks: demo work" not in quiet.stdout.str()
    monkeypatch.setattr(fixtures.progress, "MIN_SECONDS", 60.0)  # short phases stay silent
    short = pytester.runpytest_inprocess("-p", "fixtures.progress", "-p", "no:cacheprovider")
    assert "lvm-checks: demo work" not in short.stdout.str()


def test_xdist_workers_share_the_cores_instead_of_each_taking_all(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the checkout's `fixtures` (installed, it is `lvm_checks.fixtures`)
    cores = os.cpu_count() or 1
    pytester.makepyfile(f"""
import faiss, torch

def test_threads():
    assert torch.get_num_threads() == {max(1, cores // 2)}
    assert faiss.omp_get_max_threads() == {max(1, cores // 2)}
""")
    result = pytester.runpytest_subprocess("-p", "fixtures.threads", "-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=1)


def test_skipped_guards_are_listed_loudly(pytester: pytest.Pytester) -> None:
    """`fixtures.skips`: every skipped plumbing/gate check, with its reason, in its own section; other skips are not guards."""
    pytester.makepyfile(
        """
import pytest

@pytest.mark.plumbing
def test_guard():
    pytest.skip("no context_keys: cannot measure")

@pytest.mark.gate
@pytest.mark.skip(reason="needs --checkpoint")
def test_gate_guard():
    pass

def test_not_a_guard():
    pytest.skip("unrelated")
"""
    )
    result = pytester.runpytest_inprocess(*PLUGINS, "-p", "fixtures.skips", "-p", "no:cacheprovider", "--report-dir", "rep")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines([
        "*lvm-checks: 2 SKIPPED GUARD(S) - these did NOT measure anything*",
        "SKIPPED test_skipped_guards_are_listed_loudly.py::test_guard: no context_keys: cannot measure",
        "SKIPPED test_skipped_guards_are_listed_loudly.py::test_gate_guard: needs --checkpoint",
        "A run with skipped guards is not a full pass*",
    ])
    assert "test_not_a_guard: unrelated" not in result.stdout.str()
