"""Compare what each artifact says about how its vectors were made (which payload it names: `identity.py`)."""

from __future__ import annotations

from typing import Any

FIELDS = ("embedder", "dim", "norm", "metric")
UNKNOWN = {None, "", "unknown", "unknown (public format)"}


def provenance_table(sources: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """{field: {artifact: value}} for every field an artifact records (unknown values left out)."""
    table: dict[str, dict[str, str]] = {}
    for field in FIELDS:
        for artifact, values in sources.items():
            value = values.get(field)
            if value not in UNKNOWN:
                table.setdefault(field, {})[artifact] = str(value)
    return table


def disagreements(table: dict[str, dict[str, str]]) -> list[str]:
    """One sentence per field whose recorded values differ between artifacts."""
    problems = []
    for field, values in table.items():
        if len(set(values.values())) > 1:
            problems.append(f"{field}: " + ", ".join(f"{artifact}={value}" for artifact, value in values.items()))
    return problems
