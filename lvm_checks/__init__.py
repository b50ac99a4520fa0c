"""lvm-checks as a command: `lvm-checks plumbing|gate|watch|report|train` from any directory.

In the checkout this folder holds only the command; the suite it runs is the checkout's own
(`conftest.py`, `pytest.ini`, `checks/`, `fixtures/`, `train/` at the repository root). In an
installed wheel those ship inside this package (`lvm_checks/checks`, `lvm_checks/fixtures`,
`lvm_checks/train`, beside this folder's `conftest.py` and `pytest.ini`), so the two layouts are the
same folder tree with a different root (`lvm_checks.suite.locate`; ARCHITECTURE.md, "Installed").
"""

__version__ = "0.1.0"
