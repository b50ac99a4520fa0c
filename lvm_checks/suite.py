"""Where the suite this command runs lives, and the pytest command line that runs it from any directory.

The suite root is the folder holding `conftest.py`, `pytest.ini`, `checks/`, `fixtures/` and `train/`:
the repository root in a checkout, this package's folder in an installed wheel. The command runs
`pytest ROOT/checks -c ROOT/pytest.ini -m MARKER ...` with the caller's working directory left alone,
so reports land in `./reports/` as they do for `pytest checks/` in the checkout, and the caller's own
pytest configuration (a `pytest.ini` or `conftest.py` of their repository) is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SUITE_FILES = ("conftest.py", "pytest.ini", "checks", "fixtures", "train")


@dataclass(frozen=True)
class Suite:
    """One suite root and the dotted prefix its `fixtures` and `train` import under."""

    root: Path
    prefix: str  # "" in a checkout (fixtures.options), "lvm_checks." installed (lvm_checks.fixtures.options)

    @property
    def installed(self) -> bool:
        return bool(self.prefix)

    def module(self, name: str) -> str:
        """The importable name of a suite module, e.g. `train.__main__`."""
        return f"{self.prefix}{name}"

    def pytest_args(self, marker: str, extra: list[str]) -> list[str]:
        """pytest's arguments for `-m marker` over the suite's checks, then the caller's own arguments.

        The cache provider is off: an installed suite's folder may be read-only, and the checks keep
        no last-failed state worth a `.pytest_cache` in the caller's directory."""
        return [str(self.root / "checks"), "-c", str(self.root / "pytest.ini"), "--rootdir", str(self.root),
                "-p", "no:cacheprovider", "-m", marker, *extra]


def is_suite_root(folder: Path) -> bool:
    return all((folder / name).exists() for name in SUITE_FILES)


def locate(package: Path = PACKAGE) -> Suite:
    """The installed layout if this package carries the suite, else the checkout around it."""
    if is_suite_root(package):
        return Suite(package, "lvm_checks.")
    if is_suite_root(package.parent):
        return Suite(package.parent, "")
    missing = [name for name in SUITE_FILES if not (package / name).exists()]
    raise FileNotFoundError(f"{package}: lvm-checks is installed without its suite (missing {', '.join(missing)}); reinstall the package")
