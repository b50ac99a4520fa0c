"""Root conftest of an installed suite: registers the plugins as `lvm_checks.fixtures.<name>`.

Used only when the wheel is installed (the suite root is this package folder); the checkout's
root `conftest.py` registers the same list, `fixtures.PLUGINS`, as `fixtures.<name>`.
"""

from lvm_checks.fixtures import PLUGINS

pytest_plugins = [f"lvm_checks.fixtures.{name}" for name in PLUGINS]
