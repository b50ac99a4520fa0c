"""The layering ARCHITECTURE.md draws, enforced: each lvmcore layer imports only the layers below it,
the library never imports pytest, `fixtures`, `checks` or `train`, and the programs above it import
only what their row of PROGRAMS allows (the trainer never the pytest plugins, the plugins never the
checks or the trainer, nothing the project's tests)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

ROOT_MODULES = {"errors", "blocks", "keys", "vectors", "sampling", "files", "progress", "default_data"}
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
FOREIGN = {"pytest", "fixtures", "checks", "train", "_pytest", "lvm_checks"}


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


PROGRAMS = {  # top-level folder -> the project's top-level packages it may import (besides itself)
    "fixtures": {"lvmcore"},
    "checks": {"lvmcore", "fixtures"},
    "train": {"lvmcore"},
    "lvm_checks": {"lvmcore"},  # the command; it reaches the suite through pytest (and fixtures.warm by importlib, by layout)
}
PROJECT = {"lvmcore", "fixtures", "checks", "train", "tests", "bench", "scripts", "lvm_checks"}


def program_violations(path: Path, program: str) -> list[str]:
    """The imports of one file of `program` that its row of PROGRAMS does not allow."""
    allowed = PROGRAMS[program] | {program}
    return [name for name in imports_of(path) if name.split(".")[0] in PROJECT and name.split(".")[0] not in allowed]


def program_files() -> list[tuple[str, Path]]:
    return [(program, path) for program in PROGRAMS for path in sorted((REPO / program).rglob("*.py"))]


@pytest.mark.parametrize(("program", "path"), program_files(), ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else v)
def test_programs_import_only_what_their_layer_allows(program: str, path: Path) -> None:
    found = program_violations(path, program)
    assert not found, f"{path.relative_to(REPO)} imports {found}; {program}/ may import {sorted(PROGRAMS[program])} (ARCHITECTURE.md)"


@pytest.mark.parametrize(("program", "upward"), [("train", "from fixtures import DEFAULT_DATA"), ("fixtures", "from checks.conftest import eval_keys"),
                                                 ("fixtures", "import train.loop"), ("checks", "from train.validation import validate"),
                                                 ("checks", "from tests.broken import nan_payload_rows"),
                                                 ("lvm_checks", "from fixtures.warm import WarmStore"), ("lvm_checks", "import train.loop")])
def test_the_program_rule_catches_an_upward_import(tmp_path: Path, program: str, upward: str) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(f"import numpy\nfrom lvmcore.keys import pack_keys\n{upward}\n")
    assert program_violations(bad, program) == [upward.split()[1]]
