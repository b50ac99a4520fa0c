"""A fresh machine: the tests use no cache of the user's, and the programs work from an empty home directory.

The whole suite under `HOME=$(mktemp -d)` is the real proof (issue 21's closing note); here, in
seconds, are its parts: the test session's caches are temporary folders (`helpers/session_caches.py`) and a
session from an empty `HOME` leaves it empty; the ingest command and the demo's plumbing run pass
with an empty `HOME` and no cache variable, building the ONNX export and the index where a new
user's would go.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from lvmcore.artifacts.windows import document_split
from lvmcore.ingest import encoder
from lvmcore.ingest.build import SPLIT
from lvmcore.search import ivf
from helpers.session_caches import CACHE_VARIABLES, ROOT_PREFIX, ROOT_VARIABLE

REPO = Path(__file__).resolve().parents[1]


def test_every_cache_of_the_session_is_a_temporary_folder() -> None:
    root = Path(os.environ[ROOT_VARIABLE])
    assert root.is_dir() and root.name.startswith(ROOT_PREFIX) and not root.is_relative_to(Path.home() / ".cache"), root
    for variable, folder in CACHE_VARIABLES.items():
        assert Path(os.environ[variable]) == root / folder, f"{variable}={os.environ[variable]} is not the session's {root / folder}"
    assert encoder.default_cache_dir().is_relative_to(root) and ivf.default_cache_dir().is_relative_to(root)


def empty_home_environment(home: Path) -> dict[str, str]:
    """This process's environment as a new user's: HOME an empty folder, no cache variable, no pytest worker."""
    dropped = {*CACHE_VARIABLES, ROOT_VARIABLE, "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"}
    env = {name: value for name, value in os.environ.items() if name not in dropped and not name.startswith("PYTEST_XDIST")}
    home.mkdir()
    return {**env, "HOME": str(home), "OMP_NUM_THREADS": "1"}


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_ingest_exports_quietly_into_an_empty_home(tmp_path: Path) -> None:
    """First use: the ONNX export lands in ~/.cache/lvmcore and shows only as the progress line on stderr."""
    env = empty_home_environment(tmp_path / "home")
    docs = tmp_path / "docs"
    docs.mkdir()
    for topic in ("river", "star", "bread"):
        (docs / f"{topic}.txt").write_text(" ".join(f"Sentence {i} is about the {topic} and its story number {i}." for i in range(12)))
    seed = next(s for s in range(1000) if all(len(ids) for ids in document_split(np.arange(3), SPLIT, s).values()))
    done = run([sys.executable, "-m", "lvmcore.ingest", "--source", "folder", "--input", str(docs), "--out", str(tmp_path / "bank"),
                "--chunk-chars", "120", "--seed", str(seed)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert any(line.startswith("ingest: exporting the encoder to ONNX") for line in lines), done.stderr
    stray = [line for line in lines if not line.startswith(("ingest: ", "encoding (onnx)"))]
    assert not stray, f"stderr beyond the progress lines: {stray}"
    assert list((tmp_path / "home" / ".cache" / "lvmcore" / "onnx").glob("*.onnx")), "the export is not in the new user's cache"


def demo_plumbing_arguments() -> list[str]:
    """The pytest arguments of `scripts/demo`'s plumbing line, as the script has them."""
    line = next(line for line in (REPO / "scripts" / "demo").read_text().splitlines() if line.startswith(".venv/bin/python -m pytest checks"))
    return shlex.split(line, comments=True)[3:]


def test_demo_plumbing_run_measures_every_check_from_an_empty_home(tmp_path: Path) -> None:
    """`scripts/demo`'s plumbing line on the embedded bank: every check passes, none skipped, the index cached in ~/.cache."""
    env = empty_home_environment(tmp_path / "home")
    done = run([sys.executable, "-m", "pytest", *demo_plumbing_arguments(), "-p", "no:cacheprovider",
                "--report-dir", str(tmp_path / "reports")], env, REPO)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "skipped" not in last and "SKIPPED GUARD" not in done.stdout, last
    assert list((tmp_path / "home" / ".cache" / "lvm-checks" / "index").glob("*.faiss")), "the index is not in the new user's cache"


def test_a_test_session_leaves_an_empty_home_empty(tmp_path: Path) -> None:
    """The tests' own session, from an empty HOME: it passes, and HOME is still empty after (ranx's ir_datasets included)."""
    home = tmp_path / "home"
    env = empty_home_environment(home)
    done = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                "tests/test_fresh_machine.py::test_every_cache_of_the_session_is_a_temporary_folder",
                "tests/test_metrics.py::test_recall_and_mrr_equal_ranx"], env, REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout, done.stdout[-1000:]
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == [], "the test session wrote into the home directory"
