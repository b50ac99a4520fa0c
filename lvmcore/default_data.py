"""Where the embedded default bank lives (payload/, eval.npz, train.json, validation.json; see its RECIPE.md).

One home that both the suite's option defaults (`fixtures/options.py`) and the trainer's
(`train/config.py`) read, so the trainer never imports the pytest plugin package for a path.
"""

from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "default"
