"""Options and fixtures for the project's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import DEFAULT_DATA

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--healthy-bank",
        default=str(DEFAULT_DATA),
        help="directory with payload/, eval.npz and train.json that the broken-artifact tests start from "
        "(default: the embedded bank); point it at your own bank to see every check fail on its breakages",
    )
