"""Root conftest of the checkout: the suite's plugins (hooks, options, markers, fixtures) live in `fixtures/`, one job each.

The list is `fixtures.PLUGINS`; an installed wheel registers the same modules from `lvm_checks/conftest.py`.
"""

from fixtures import PLUGINS

pytest_plugins = [f"fixtures.{name}" for name in PLUGINS]
