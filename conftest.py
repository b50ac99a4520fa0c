"""Root conftest: the suite's plugins live in `fixtures/`, one job each."""

pytest_plugins = [
    "fixtures.options",
    "fixtures.recorder",
    "fixtures.thresholds",
    "fixtures.artifacts",
    "fixtures.gate",
]
