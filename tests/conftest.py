"""Options and fixtures for the project's own tests; every cache they touch is a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import DEFAULT_DATA
from helpers.session_caches import route_caches

CACHE_ROOT = route_caches()  # at import, before any test (or a library it imports) reads a cache variable

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread, and a shared 2-core machine does not thrash (restored after)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--healthy-bank",
        default=str(DEFAULT_DATA),
        help="directory with payload/, eval.npz and train.json that the broken-artifact tests start from "
        "(default: the embedded bank); point it at your own bank to see every check fail on its breakages",
    )
