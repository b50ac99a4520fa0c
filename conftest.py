"""Root conftest: the suite's plugins (hooks, options, markers) live in `fixtures/`, one job each.

The fixtures the checks take are imported by name in `checks/conftest.py`.
"""

pytest_plugins = [
    "fixtures.artifact_errors",
    "fixtures.options",
    "fixtures.recorder",
    "fixtures.thresholds",
    "fixtures.gate",
    "fixtures.progress",
    "fixtures.threads",
    "fixtures.skips",
]
