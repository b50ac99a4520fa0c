"""Provenance across artifacts (`lvmcore/plumbing/provenance.py`) against brute force. (Named apart from
checks/test_provenance.py, which pytester collects in-process.)"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lvmcore.plumbing.provenance import FIELDS, UNKNOWN, disagreements, provenance_table

values = st.one_of(st.none(), st.sampled_from(["", "unknown", "unknown (public format)", "e5", "gtr", "l2", "ip"]), st.integers(0, 3))
records = st.dictionaries(st.sampled_from([*FIELDS, "payload_hash", "split"]), values, max_size=6)
sources = st.dictionaries(st.sampled_from(["payload", "eval", "train", "checkpoint"]), records, max_size=4)


@given(sources)
def test_table_and_disagreements_match_brute_force(found) -> None:
    expected: dict[str, dict[str, str]] = {}
    for field in FIELDS:  # field order first, then artifacts in their given order
        for artifact, record in found.items():
            if field in record and record[field] not in UNKNOWN:
                expected.setdefault(field, {})[artifact] = str(record[field])
    table = provenance_table(found)
    assert table == expected and list(table) == list(expected)
    assert all(list(table[f]) == list(expected[f]) for f in table)
    problems = disagreements(table)
    differing = [f for f in expected if len(set(expected[f].values())) > 1]
    assert [p.split(":")[0] for p in problems] == differing
    for problem, field in zip(problems, differing):
        assert problem == f"{field}: " + ", ".join(f"{a}={v}" for a, v in expected[field].items())


def test_unknown_values_are_left_out_and_never_disagree() -> None:
    table = provenance_table({"payload": {"embedder": "e5", "dim": 768}, "eval": {"embedder": "unknown", "dim": "768"}, "train": {"embedder": None}})
    assert table == {"embedder": {"payload": "e5"}, "dim": {"payload": "768", "eval": "768"}}
    assert disagreements(table) == []  # 768 and "768" are one value once written down
    assert disagreements(provenance_table({"payload": {"norm": "l2"}, "eval": {"norm": "none"}})) == ["norm: payload=l2, eval=none"]
