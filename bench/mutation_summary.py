"""Per-module figures of the last mutation run (`bash scripts/mutation`), for bench/MUTATION.md.

mutmut keeps each mutated file's results in `mutants/<path>.meta` (mutant name -> the exit code of
its tests). This reads them, takes the mutants bench/MUTATION.md explains (a table row whose first cell is the
mutant's name in backticks, its reason beside it: equivalent, or in the section of survivors only a
GPU or a two-rank run can kill), and prints one row per module: generated, killed (a test failed),
timed out (a test ran past its limit: the mutant hangs, counted as caught), equivalent, CPU-only
survivors, and what is left unexplained; the score is caught over generated minus equivalent. Exit status 1 when a module
has an unexplained survivor, a mutant no selected test runs, or an unchecked mutant.

    .venv/bin/python bench/mutation_summary.py            # the table
    .venv/bin/python bench/mutation_summary.py --list     # and every unexplained survivor by name
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MUTANTS = REPO / "mutants"
RECORD = REPO / "bench" / "MUTATION.md"
KILLED = {1, 3}  # a test failed (3: pytest's internal error, also a kill)
TIMEOUT = {36, 24, -24, 152, 255}
EQUIVALENT_ROW = re.compile(r"^\|\s*`([\w.]+__mutmut_\d+)`\s*\|")


def explained_mutants(record: Path = RECORD) -> dict[str, str]:
    """{mutant name: "equivalent" or "needs a GPU or two ranks"} from the record's tables (first cell in backticks),
    by the `## ` section a row stands in."""
    if not record.exists():
        return {}
    out, section = {}, ""
    for line in record.read_text().splitlines():
        if line.startswith("## "):
            section = line
        elif m := EQUIVALENT_ROW.match(line):
            out[m.group(1)] = "needs a GPU or two ranks" if "GPU" in section else "equivalent"
    return out


def outcome(exit_code: int | None) -> str:
    if exit_code is None:
        return "not checked"
    if exit_code in KILLED:
        return "killed"
    if exit_code == 0:
        return "survived"
    if exit_code in (5, 33):
        return "no tests"
    if exit_code in TIMEOUT:
        return "timeout"  # the tests ran past their time: a mutant that loops is caught, not survived
    return "other"


def module_results(mutants: Path = MUTANTS) -> dict[str, dict[str, int | None]]:
    """{module path: {mutant name: exit code}} from every `.meta` file mutmut wrote."""
    out = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = str(meta.relative_to(mutants))[: -len(".meta")]
        out[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return out


def summarise(results: dict[str, dict[str, int | None]], explained: dict[str, str]) -> tuple[list[dict], dict[str, list[str]]]:
    """One row per module and, per module, the names of mutants neither killed nor explained."""
    rows, unexplained = [], {}
    for module, codes in results.items():
        counts = Counter()
        left = []
        for name, code in codes.items():
            kind = outcome(code)
            if kind in ("killed", "timeout"):
                counts[kind] += 1
            elif name in explained:
                counts[explained[name]] += 1
            else:
                counts[kind] += 1
                left.append(f"{name} ({kind})")
        keys = ("killed", "timeout", "equivalent", "needs a GPU or two ranks", "survived", "no tests", "not checked", "other")
        rows.append({"module": module, "generated": len(codes), **{k: counts[k] for k in keys}})
        if left:
            unexplained[module] = sorted(left)
    return rows, unexplained


def table(rows: list[dict]) -> str:
    head = "| module | generated | killed | timed out | equivalent | survive on CPU (GPU or two ranks) | unexplained survivors | no tests | not checked | score |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        scored = r["generated"] - r["equivalent"]
        score = f"{100 * (r['killed'] + r['timeout']) / scored:.1f}%" if scored else "n/a"
        lines.append(f"| `{r['module']}` | {r['generated']} | {r['killed']} | {r['timeout']} | {r['equivalent']} | {r['needs a GPU or two ranks']} | "
                     f"{r['survived'] + r['other']} | {r['no tests']} | {r['not checked']} | {score} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print every unexplained mutant by name")
    args = parser.parse_args(argv)
    if not MUTANTS.exists():
        print("no mutants/ folder: run `bash scripts/mutation` first", file=sys.stderr)
        return 2
    rows, unexplained = summarise(module_results(), explained_mutants())
    print(table(rows))
    if args.list:
        for module, names in unexplained.items():
            print(f"\n{module}:")
            print("\n".join(f"  {n}" for n in names))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
