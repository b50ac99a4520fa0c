"""The wheel: two top-level names, the whole suite inside `lvm_checks/`, and `lvm-checks` working from any directory.

The wheel is built from this checkout and unpacked into a temporary folder (a pure-Python wheel's
install is its unpacking), which is put first on PYTHONPATH of a process started in another
temporary folder: what a user meets after `pip install lvm-checks` in their own repository.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

SUITE_FOLDERS = ("checks", "fixtures", "train")


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_library_package_and_data_folder_is_listed() -> None:
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    library = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "lvmcore").rglob("__init__.py")}
    data = {"lvm_checks." + ".".join(p.relative_to(REPO).parts) for p in (REPO / "fixtures" / "data").rglob("*") if p.is_dir() and any(f.is_file() for f in p.iterdir())}
    assert library <= listed, f"lvmcore packages missing from pyproject's packages: {sorted(library - listed)}"
    assert data <= listed, f"data folders missing from pyproject's packages: {sorted(data - listed)}"
    assert {f"lvm_checks.{name}" for name in SUITE_FOLDERS} <= listed


def test_the_installed_ini_is_the_checkout_ini() -> None:
    """The two pytest.ini files differ only in `testpaths` (the checkout's `pytest` runs tests/)."""
    def settings(path: Path) -> dict[str, str]:
        parser = configparser.ConfigParser()
        parser.read(path)
        return {k: " ".join(v.split()) for k, v in parser["pytest"].items() if k != "testpaths"}

    assert settings(REPO / "pytest.ini") == settings(REPO / "lvm_checks" / "pytest.ini")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = out.glob("lvm_checks-*.whl")
    return found


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    return folder


def run_installed(site: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_wheel_claims_two_top_level_names_and_carries_the_suite(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert top == {"lvmcore", "lvm_checks"}
    for folder in SUITE_FOLDERS:
        for path in (REPO / folder).glob("*.py"):
            assert f"lvm_checks/{folder}/{path.name}" in names, f"{folder}/{path.name} is not in the wheel"
    for path in (REPO / "fixtures" / "data").rglob("*"):
        if path.is_file():
            assert "lvm_checks/" + "/".join(path.relative_to(REPO).parts) in names
    assert {"lvm_checks/conftest.py", "lvm_checks/pytest.ini"} <= set(names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lvm-checks = lvm_checks.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.mark.slow
def test_installed_plumbing_passes_from_another_directory(site: Path, tmp_path: Path) -> None:
    where = run_installed(site, tmp_path, "-c", "import lvm_checks, lvmcore; from lvm_checks.suite import locate; print(lvm_checks.__file__, lvmcore.__file__, locate().root)")
    assert where.returncode == 0, where.stderr
    assert all(part.startswith(str(site)) for part in where.stdout.split()), where.stdout  # the unpacked wheel, not the checkout
    done = run_installed(site, tmp_path, "-m", "lvm_checks", "plumbing", "--build-index", "--index-cache", str(tmp_path / "cache"), "--run-name", "p")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout.split("short test summary")[-1]
    report = json.loads((tmp_path / "reports" / "p" / "plumbing" / "report.json").read_text())
    assert report["records"] and all(r["status"] != "fail" for r in report["records"])


@pytest.mark.slow
def test_installed_trainer_gates_its_epochs_and_the_report_command_reads_them(site: Path, tmp_path: Path) -> None:
    """`lvm-checks train --gate-every-epoch` runs the installed suite on each epoch; `lvm-checks report` rebuilds run.md."""
    trained = run_installed(site, tmp_path, "-m", "lvm_checks", "train", "--out", "run", "--epochs", "2", "--max-steps-per-epoch", "2",
                            "--no-progress", "--device", "cpu", "--gate-every-epoch")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    for row in history["epochs"]:
        assert isinstance(row["gate"]["decision"], dict), row["gate"]  # a real report, read back (not "report missing")
    (tmp_path / "run" / "reports" / "gates" / "run.md").unlink()
    again = run_installed(site, tmp_path, "-m", "lvm_checks", "report", "run")
    assert again.returncode == 0, again.stderr
    assert "| epoch_001 |" in (tmp_path / "run" / "reports" / "gates" / "run.md").read_text()
