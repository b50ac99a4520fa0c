"""Every cache the project's tests could touch, pointed at one temporary folder per test run.

A test that finds an ONNX export, an IVF index or a matplotlib font cache in the user's home passes
there and fails on a fresh machine (issue 21): CI's green then depends on the home directory. So the
test session never reads or writes the user's caches: `route_caches` sets each variable below to a
folder under a fresh temporary root before any test runs. xdist workers inherit the controller's
environment and keep its root, so the ONNX export and the index are built once per run, not per worker.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# variable -> folder under the root; XDG_CACHE_HOME catches what has no variable of its own
# (onnxruntime's ~/.cache/Microsoft, torch hub), HF_HOME what transformers might write
CACHE_VARIABLES = {
    "LVM_CACHE_DIR": "lvmcore",  # lvmcore.ingest.encoder: the ONNX export
    "LVM_CHECKS_CACHE": "lvm-checks",  # lvmcore.search.ivf, lvmcore.gate.fixed_sets: indexes, baselines
    "MPLCONFIGDIR": "matplotlib",  # the gate report's figures
    "HF_HOME": "huggingface",
    "XDG_CACHE_HOME": "xdg-cache",
    "IR_DATASETS_HOME": "ir_datasets",  # ranx (tests/test_metrics.py) imports ir_datasets, which makes ~/.ir_datasets/<name>/ for 40 names
}
ROOT_VARIABLE = "LVM_TEST_CACHE_ROOT"  # set by the process that made the root; its workers reuse it
ROOT_PREFIX = "lvm-checks-test-caches-"


def route_caches() -> Path:
    """Point every cache variable at a temporary root (made here, or the controller's for an xdist worker).

    Returns the root. The process that makes it removes it at exit.
    """
    inherited = os.environ.get(ROOT_VARIABLE)
    if os.environ.get("PYTEST_XDIST_WORKER") and inherited and Path(inherited).is_dir():
        root = Path(inherited)
    else:
        root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        os.environ[ROOT_VARIABLE] = str(root)
    for variable, folder in CACHE_VARIABLES.items():
        os.environ[variable] = str(root / folder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder's weights ship in a package: never reach for the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return root
