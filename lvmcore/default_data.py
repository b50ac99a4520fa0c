"""Where the embedded default bank lives (payload/, eval.npz, train.json, validation.json; see its RECIPE.md).

One home that both the suite's option defaults (`fixtures/options.py`) and the trainer's
(`train/config.py`) read, so the trainer never imports the pytest plugin package for a path. The data ships in
`fixtures/data/default/`: at the repository root in a checkout, inside `lvm_checks/` in an installed wheel.
"""

from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]  # the checkout, or site-packages when installed
_CHECKOUT = _ROOT / "fixtures" / "data" / "default"
_INSTALLED = _ROOT / "lvm_checks" / "fixtures" / "data" / "default"  # the wheel carries fixtures/ inside lvm_checks/
DEFAULT_DATA = _CHECKOUT if _CHECKOUT.is_dir() or not _INSTALLED.is_dir() else _INSTALLED
