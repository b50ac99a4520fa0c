"""Every plumbing check fails on an artifact broken in the way it guards against, and passes when healthy.

Each case copies the healthy bank, breaks it with one breaker from `tests/helpers/broken.py`, runs the real
suite (`checks/ -m plumbing`) in-process with pytester, and asserts that the guarding check fails with
a message that names the cause.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.broken import BREAKAGES, Bank, break_bank
from conftest import REPO

CHECKS = REPO / "checks"


@pytest.fixture(scope="session")
def healthy_bank(pytestconfig: pytest.Config) -> Bank:
    root = Path(pytestconfig.getoption("--healthy-bank"))
    bank = Bank(root / "payload", root / "eval.npz", root / "train.json")
    missing = [str(p) for p in (bank.payload, bank.eval, bank.train) if not p.exists()]
    if missing:
        pytest.fail(f"healthy bank incomplete: missing {', '.join(missing)}", pytrace=False)
    return bank


def run_checks(pytester: pytest.Pytester, tmp_path: Path, args: list[str], *selection: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(
        str(CHECKS), "-m", "plumbing", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO),
        "-p", "no:cacheprovider", "--index-cache", str(tmp_path / "cache"), "--report-dir", str(tmp_path / "reports"),
        "--run-name", "t", *args, *selection,
    )


def plumbing_check_names() -> set[str]:
    """Names of every test function under checks/ marked plumbing (module-level pytestmark)."""
    names = set()
    for path in CHECKS.glob("test_*.py"):
        source = path.read_text()
        if "pytest.mark.plumbing" not in source:
            continue
        tree = ast.parse(source)
        names |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    return names


def test_every_plumbing_check_has_a_breakage() -> None:
    covered = {breakage.check for breakage in BREAKAGES}
    assert plumbing_check_names() - covered == set(), "plumbing checks without a broken artifact that fails them"


INDEX_FILE_CHECKS = 3  # metric, row count, IVF agreement: they inspect an index file, and without --index there is none


@pytest.mark.parametrize("build", [True, False], ids=["build-index", "no-index"])
def test_healthy_bank_passes_every_plumbing_check(pytester: pytest.Pytester, tmp_path: Path, healthy_bank: Bank, build: bool) -> None:
    result = run_checks(pytester, tmp_path, healthy_bank.args() + (["--build-index"] if build else []))
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-3000:]
    skipped = 0 if build else INDEX_FILE_CHECKS
    assert outcomes.get("skipped", 0) == skipped, result.stdout.str()[-3000:]
    assert outcomes.get("passed", 0) == len(plumbing_check_names()) - skipped
    if not build:
        assert f"SKIPPED [{INDEX_FILE_CHECKS}]" in result.stdout.str() and "no --index given: there is no index file to check" in result.stdout.str()


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: f"{b.check}-{b.breaker.__name__}")
def test_check_fails_on_its_broken_artifact(pytester: pytest.Pytester, tmp_path: Path, healthy_bank: Bank, breakage) -> None:
    args = break_bank(healthy_bank, breakage, tmp_path / "bank")
    result = run_checks(pytester, tmp_path, args, "-k", breakage.check)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([breakage.message])
