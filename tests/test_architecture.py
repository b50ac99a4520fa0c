"""The layering ARCHITECTURE.md draws, enforced: each lvmcore layer imports only the layers below it,
and the library never imports pytest, `fixtures`, `checks` or `train`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

ROOT_MODULES = {"errors", "blocks", "keys", "vectors", "sampling", "files", "progress"}
ALLOWED = {  # layer -> the lvmcore layers it may import (the root modules are always allowed)
    "root": set(),
    "models": set(),
    "artifacts": {"models"},
    "search": {"artifacts"},
    "plumbing": {"artifacts", "search"},
    "training": {"models"},
    "gate": {"artifacts", "search", "plumbing", "models"},
    "ingest": {"artifacts"},
}
FOREIGN = {"pytest", "fixtures", "checks", "train", "_pytest"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return "root" if len(parts) < 2 or parts[1] in ROOT_MODULES or parts[1] == "__init__" else parts[1]


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def library_files() -> list[Path]:
    return sorted((REPO / "lvmcore").rglob("*.py"))


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_library_module_imports_only_layers_below(path: Path) -> None:
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    own = layer_of(module)
    for name in imports_of(path):
        top = name.split(".")[0]
        assert top not in FOREIGN, f"{module} imports {name}: the library must not know the suite, pytest or the training CLI"
        if top != "lvmcore":
            continue
        other = layer_of(name)
        if other in ("root", own):
            continue
        assert other in ALLOWED[own], f"{module} (layer {own}) imports {name} (layer {other}); {own} may import {sorted(ALLOWED[own]) or 'only the root modules'}"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from lvmcore.gate.metrics import echo_rate\nimport pytest\n")
    assert imports_of(bad) == ["lvmcore.gate.metrics", "pytest"]
    assert layer_of("lvmcore.gate.metrics") == "gate" and "gate" not in ALLOWED["search"]
    assert layer_of("lvmcore.keys") == "root" and layer_of("lvmcore") == "root"
