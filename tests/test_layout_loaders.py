"""Readers of other pipelines' layouts: each layout reads with no converter, each malformed input is one line
`<file>: <problem>` (no traceback), and pickles are never read without the flag, nor run with it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from lvmcore.artifacts.importers import import_public_payload, import_rows, main
from lvmcore.artifacts.layout_payload import PickleWarning, measured_norm, read_layout_payload
from lvmcore.artifacts.layout_rows import read_rows, read_training_rows
from lvmcore.artifacts.layouts import FieldMappingError, canonical_provenance, detect_layout, parse_field_mapping
from lvmcore.artifacts.npz_members import npz_members
from lvmcore.artifacts.payload import load_payload
from lvmcore.errors import ArtifactError

from helpers.pipeline_layouts import (
    EVAL_LAYOUTS,
    build_id_of,
    sha256_of,
    write_eval_v2,
    write_eval_v3,
    write_payload_pickle,
    write_public_pipeline,
    write_sequences_v1,
    write_source_vectors,
)
from helpers.synthetic import smooth_walk_bank

pytestmark = pytest.mark.filterwarnings("ignore::lvmcore.artifacts.layout_payload.PickleWarning")


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> dict[str, Path]:
    return write_public_pipeline(tmp_path_factory.mktemp("public"), articles=12, dim=8)


@pytest.fixture
def bank() -> tuple[np.ndarray, np.ndarray]:
    return smooth_walk_bank(articles=4, dim=8)


def one_line_error(call, *fragments: str) -> str:
    with pytest.raises(ArtifactError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


class WritesAFile:  # a pickle that would write a file when unpickled
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def hostile_npy(path: Path, target: Path) -> Path:
    with path.open("wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(WritesAFile(target), out, protocol=2)
    return path


# ---- detection and mapping ------------------------------------------------------------------------

def test_each_layout_is_detected_by_its_arrays(public) -> None:
    assert detect_layout("payload", npz_members(public["source_vectors"])).name == "source vectors"
    for layout in EVAL_LAYOUTS:
        assert detect_layout("rows", npz_members(public[layout])).name == layout
    assert detect_layout("rows", npz_members(public["train"])).name == "sequences v1"


def test_field_mapping_parses_and_refuses_unknown_names() -> None:
    assert parse_field_mapping(["contexts=ctx", " # note", "", "provenance="]) == {"contexts": "ctx", "provenance": ""}
    with pytest.raises(FieldMappingError, match="NAME one of"):
        parse_field_mapping(["context=ctx"])
    with pytest.raises(FieldMappingError, match="required"):
        parse_field_mapping(["targets="])


def test_provenance_names_are_mapped_and_the_recorded_kept() -> None:
    build_id = "payload@sha256:" + "ab" * 8
    mapped = canonical_provenance({"embedder_id": "gtr", "payload_build_id": build_id, "norm": "l2_once"})
    assert mapped["embedder"] == "gtr" and mapped["payload_build_id"] == build_id and mapped["norm"] == "l2"
    assert mapped["recorded"]["norm"] == "l2_once" and "payload_sha256" not in mapped  # identities: lvmcore.plumbing.identity
    assert canonical_provenance({"embedder": "ours", "embedder_id": "theirs"})["embedder"] == "ours"


def test_measured_norm() -> None:
    assert measured_norm(np.eye(3, dtype=np.float32)) == "l2"
    assert measured_norm(np.eye(3, dtype=np.float32) * np.float32(2)) == "none (measured 2..2)"


# ---- source vectors ---------------------------------------------------------------------------------

def test_source_vectors_read_with_texts_and_measured_norm(public) -> None:
    payload = read_layout_payload(public["source_vectors"])
    assert payload.keys.dtype == np.int64 and payload.vectors.dtype == np.float32
    assert payload.texts[0].startswith("Article 0, passage 0") and payload.manifest["norm"] == "l2"
    assert payload.manifest["layout"] == "source vectors"


def test_source_vectors_converted_keep_texts_titles_and_source_sha256(public, tmp_path) -> None:
    out = import_public_payload(public["source_vectors"], tmp_path / "ours", embedder="gtr")
    converted = load_payload(out)
    first = json.loads((out / "texts.jsonl").read_text().splitlines()[0])
    assert first == {"text": converted.texts[0], "title": "Article number 0", "cpe_id": "cpe-00000-0000"}
    assert converted.manifest["norm"] == "l2" and converted.manifest["source_sha256"] == sha256_of(public["source_vectors"])


@pytest.mark.parametrize("change, fragments", [
    (lambda a: a.pop("chunk_indices"), ("missing array(s) chunk_indices", "--field NAME=ARRAY", "has: vectors")),
    (lambda a: a.update(vectors=a["vectors"].astype(np.float64)), ("'vectors' has dtype float64", "never cast")),
    (lambda a: a.update(article_indices=a["article_indices"][:-1]), ("'article_indices' has",)),
    (lambda a: a.update(chunk_indices=np.where(np.arange(len(a["chunk_indices"])) == 2, -1, a["chunk_indices"]).astype(np.int32)), ("negative key at row 2",)),
    (lambda a: a.update(concept_texts=a["concept_texts"][:-1]), ("'concept_texts' has shape", "one text per vector")),
    (lambda a: a.update(article_titles=np.arange(len(a["vectors"]))), ("'article_titles' has dtype", "expected unicode")),
    (lambda a: a.update(concept_texts=a["concept_texts"].astype(object)), ("'concept_texts' is an object array", "--allow-pickle", "--field texts=")),
    (lambda a: a.update(vectors=a["vectors"][:0], article_indices=a["article_indices"][:0], chunk_indices=a["chunk_indices"][:0],
                        concept_texts=a["concept_texts"][:0], article_titles=a["article_titles"][:0], cpe_ids=a["cpe_ids"][:0]), ("empty payload",)),
    (lambda a: a.update(article_indices=a["article_indices"].astype(bool)), ("'article_indices' has dtype bool", "expected an integer type")),
], ids=["missing-column", "float64", "short-column", "negative-key", "short-texts", "numeric-titles", "pickled-texts", "empty", "bool-keys"])
def test_malformed_source_vectors(public, tmp_path, change, fragments) -> None:
    with np.load(public["source_vectors"]) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    np.savez(tmp_path / "sv.npz", **arrays)
    one_line_error(lambda: read_layout_payload(tmp_path / "sv.npz"), "sv.npz", *fragments)


def test_truncated_source_vectors(public, tmp_path) -> None:
    data = public["source_vectors"].read_bytes()
    (tmp_path / "sv.npz").write_bytes(data[: len(data) // 2])
    one_line_error(lambda: read_layout_payload(tmp_path / "sv.npz"), "sv.npz", "cannot be read")


def test_unknown_payload_layout_reads_once_mapped(tmp_path, bank) -> None:
    vectors, keys = bank
    np.savez(tmp_path / "theirs.npz", embeddings=vectors, doc=keys[:, 0].astype(np.int32), pos=keys[:, 1].astype(np.int32))
    one_line_error(lambda: read_layout_payload(tmp_path / "theirs.npz"), "matches no known payload layout", "has: embeddings, doc, pos")
    mapping = parse_field_mapping(["vectors=embeddings", "article_indices=doc", "chunk_indices=pos"])
    payload = read_layout_payload(tmp_path / "theirs.npz", fields=mapping)
    np.testing.assert_array_equal(payload.keys, keys)
    assert payload.manifest["layout"] == "mapped"


# ---- payload pickle ---------------------------------------------------------------------------------

def test_payload_pickle_needs_the_flag_and_keeps_texts(public) -> None:
    one_line_error(lambda: read_layout_payload(public["payload_pickle"]), "payload.npy", "pickled", "--allow-pickle")
    with pytest.warns(PickleWarning, match="restricted unpickler under --allow-pickle") as caught:
        payload = read_layout_payload(public["payload_pickle"], allow_pickle=True)
    assert "python -m lvmcore.artifacts.importers payload" in str(caught[0].message)
    reference = read_layout_payload(public["source_vectors"])
    np.testing.assert_array_equal(np.asarray(payload.vectors), np.asarray(reference.vectors))
    np.testing.assert_array_equal(payload.keys, reference.keys)
    assert payload.texts == reference.texts


def test_converter_warning_does_not_tell_you_to_run_the_converter(public, tmp_path, capsys) -> None:
    with pytest.warns(PickleWarning) as caught:
        assert main(["payload", str(public["payload_pickle"]), str(tmp_path / "ours"), "--allow-pickle"]) == 0
    message = str(caught[0].message)
    assert "python -m lvmcore.artifacts.importers" not in message and "needs no --allow-pickle" in message
    converted = load_payload(tmp_path / "ours")
    assert converted.manifest["source_sha256"] == sha256_of(public["payload_pickle"]) and converted.texts is not None
    assert main(["payload", str(public["payload_pickle"]), str(tmp_path / "again")]) == 2
    assert "--allow-pickle" in capsys.readouterr().err


def pickled_dict(path: Path, value) -> Path:
    np.save(path, np.array(value, dtype=object) if not isinstance(value, dict) else value, allow_pickle=True)
    return path


def good_row(dim: int = 4):
    return ("text", {"article_index": 0, "chunk_index": 0, "cpe_id": "x"}, np.ones(dim, np.float32))


@pytest.mark.parametrize("value, fragments", [
    ({}, ("empty dict",)),
    ({0: ("text", {"article_index": 0}, np.ones(4, np.float32))}, ("row 0: metadata has no 'chunk_index'",)),
    ({0: ("only", "two")}, ("row 0: expected (text, metadata dict, vector)",)),
    ({0: good_row(), 1: ("t", {"article_index": 0, "chunk_index": 1}, np.ones(4, np.float64))}, ("row 1: vector has dtype float64", "never cast")),
    ({0: good_row(), 1: ("t", {"article_index": 0, "chunk_index": 1}, np.ones(5, np.float32))}, ("row 1: vector has dimension 5",)),
    ({"a": good_row()}, ("row id 'a'", "must be integers")),
    ({0: (7, {"article_index": 0, "chunk_index": 0}, np.ones(4, np.float32))}, ("row 0: text is 7",)),
    ({0: ("t", {"article_index": -1, "chunk_index": 0}, np.ones(4, np.float32))}, ("'article_index' is -1",)),
    ({0: ("t", {"article_index": 0, "chunk_index": 0}, [1.0, 2.0])}, ("row 0: vector is", "1-D numpy array")),
], ids=["empty", "no-chunk", "pair", "float64", "ragged", "string-row", "numeric-text", "negative", "list-vector"])
def test_malformed_payload_pickle(tmp_path, value, fragments) -> None:
    pickled_dict(tmp_path / "p.npy", value)
    one_line_error(lambda: read_layout_payload(tmp_path / "p.npy", allow_pickle=True), "p.npy", *fragments)


def test_payload_pickle_of_a_list_or_a_plain_array(tmp_path) -> None:
    np.save(tmp_path / "list.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    one_line_error(lambda: read_layout_payload(tmp_path / "list.npy", allow_pickle=True), "list.npy", "expected a dict")
    np.save(tmp_path / "plain.npy", np.zeros((3, 4), np.float32))
    one_line_error(lambda: read_layout_payload(tmp_path / "plain.npy", allow_pickle=True), "plain.npy", "plain .npy array")


@pytest.mark.parametrize("allow_pickle", [False, True], ids=["without-flag", "with-flag"])
def test_a_pickle_that_would_write_a_file_never_runs(tmp_path, allow_pickle) -> None:
    target = tmp_path / "pwned.txt"
    hostile_npy(tmp_path / "payload.npy", target)
    one_line_error(lambda: read_layout_payload(tmp_path / "payload.npy", allow_pickle=allow_pickle), "payload.npy")
    holder = np.empty(1, dtype=object)
    holder[0] = WritesAFile(target)
    np.savez(tmp_path / "eval.npz", contexts=np.zeros((2, 5, 4), np.float32), targets=np.zeros((2, 4), np.float32),
             truth_keys=np.zeros((2, 2), np.int64), provenance=holder)
    message = one_line_error(lambda: read_rows(tmp_path / "eval.npz", allow_pickle=allow_pickle), "eval.npz", "provenance")
    assert ("refuses to unpickle" in message) == allow_pickle
    assert not target.exists()


# ---- rows: sequences v1, eval v3, eval v2 ------------------------------------------------------------

@pytest.mark.parametrize("layout", EVAL_LAYOUTS)
def test_eval_layouts_read_with_widened_keys_and_mapped_provenance(public, layout) -> None:
    rows = read_rows(public[layout], allow_pickle=True)
    assert rows.truth_keys.dtype == np.int64 and rows.contexts.dtype == np.float32 and rows.context_keys is None
    assert rows.provenance["embedder"] == "sentence-transformers/gtr-t5-base" and rows.provenance["norm"] == "l2"
    assert rows.provenance["payload_build_id"] == build_id_of(public["payload_pickle"]) and rows.provenance["layout"] == layout


@pytest.mark.parametrize("layout", ["eval v3", "eval v2"])
def test_pickled_provenance_needs_the_flag_or_can_be_left_out(public, layout) -> None:
    one_line_error(lambda: read_rows(public[layout]), "'provenance' is an object array", "--allow-pickle", "--field provenance=")
    rows = read_rows(public[layout], fields=parse_field_mapping(["provenance="]))
    assert rows.provenance == {"layout": f"{layout}, mapped"} and rows.count > 0


def test_eval_v2_never_reads_last_meta_or_alignment_stats(public, tmp_path) -> None:
    target = tmp_path / "pwned.txt"
    with np.load(public["eval v2"], allow_pickle=True) as archive:  # our own test file
        arrays = {name: archive[name] for name in archive.files}
    hostile = np.empty(1, dtype=object)
    hostile[0] = WritesAFile(target)
    np.savez(tmp_path / "v2.npz", **{**arrays, "last_meta": hostile, "alignment_stats": hostile})
    rows = read_rows(tmp_path / "v2.npz", allow_pickle=True)
    assert rows.count == len(arrays["targets"]) and not target.exists()


def v1_arrays(public) -> dict[str, np.ndarray]:
    with np.load(public["sequences v1"]) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize("change, fragments", [
    (lambda a: a.update(context_length=np.array(4)), ("'context_length' says 4", "context length")),
    (lambda a: a.update(num_sequences=np.array(1)), ("'num_sequences' says 1", "rows")),
    (lambda a: a.update(vector_dim=np.array(768)), ("'vector_dim' says 768", "vector dimension")),
    (lambda a: a.update(vector_dim=np.array([8, 8])), ("'vector_dim' must be one integer",)),
    (lambda a: a.update(truth_keys=a["truth_keys"].astype(np.float32)), ("'truth_keys' has dtype float32", "integer")),
    (lambda a: a.update(context_sequences=a["context_sequences"].astype(np.float64)), ("'contexts' has dtype float64", "never cast")),
    (lambda a: a.update(target_vectors=a["target_vectors"][:-1]), ("'targets' has shape",)),
    (lambda a: a.update(provenance=np.array(["{not json"])), ("'provenance' is not JSON",)),
    (lambda a: a.update(provenance=np.array(["{}", "{}"])), ("'provenance' holds 2 elements",)),
    (lambda a: a.update(provenance=np.array(["[1, 2]"])), ("'provenance' must hold a JSON object",)),
    (lambda a: a.pop("target_vectors"), ("missing array(s) contexts, targets", "closest known layout: sequences v1, which also needs target_vectors",
                                          "--field NAME=ARRAY")),
    (lambda a: a.update(context_sequences=a["context_sequences"][:0], target_vectors=a["target_vectors"][:0], truth_keys=a["truth_keys"][:0],
                        num_sequences=np.array(0)), ("'contexts' has 0 rows", "pass on nothing")),
    (lambda a: a.update(context_sequences=a["context_sequences"][:, :0], context_length=np.array(0)), ("context length 0",)),
], ids=["context-length", "num-sequences", "vector-dim", "dim-array", "float-keys", "float64", "short-targets", "bad-json",
        "two-provenances", "json-list", "no-targets", "zero-rows", "zero-context"])
def test_malformed_sequences_v1(public, tmp_path, change, fragments) -> None:
    arrays = v1_arrays(public)
    change(arrays)
    np.savez(tmp_path / "v1.npz", **arrays)
    one_line_error(lambda: read_rows(tmp_path / "v1.npz"), "v1.npz", *fragments)


def test_rows_dimension_must_match_the_payload(public) -> None:
    one_line_error(lambda: read_rows(public["sequences v1"], expected_dim=768), "dimension 8", "768")


def test_unknown_rows_layout_reads_once_mapped(public, tmp_path) -> None:
    arrays = v1_arrays(public)
    np.savez(tmp_path / "theirs.npz", ctx=arrays["context_sequences"], nxt=arrays["target_vectors"], keys=arrays["truth_keys"])
    one_line_error(lambda: read_rows(tmp_path / "theirs.npz"), "matches no known rows layout", "has: ctx, nxt, keys")
    rows = read_rows(tmp_path / "theirs.npz", fields=parse_field_mapping(["contexts=ctx", "targets=nxt", "truth_keys=keys"]))
    assert rows.count == len(arrays["truth_keys"]) and rows.truth_keys.dtype == np.int64


def test_training_rows_without_context_keys_need_recovery(public) -> None:
    payload = read_layout_payload(public["source_vectors"])
    one_line_error(lambda: read_training_rows(public["train"], payload), "train.npz", "no 'context_keys'")
    seen = {}

    class Found:
        def __init__(self, keys):
            self.keys = keys

    def recover(contexts, truth_keys):
        seen["shape"] = contexts.shape
        return Found(np.zeros((*contexts.shape[:2], 2), np.int64))

    data = read_training_rows(public["train"], payload, recover=recover)
    assert seen["shape"][1] == 5 and data.recovered_context_keys is not None and data.context_keys.shape == (data.count, 5, 2)


def test_rows_converter_writes_our_layout(public, tmp_path) -> None:
    out = import_rows(public["eval v3"], tmp_path / "eval.npz", allow_pickle=True)
    with np.load(out) as archive:
        assert archive["truth_keys"].dtype == np.int64 and "context_keys" not in archive.files
        assert json.loads(str(archive["provenance"]))["payload_build_id"] == build_id_of(public["payload_pickle"])
    assert detect_layout("rows", npz_members(out)).name == "lvm-checks rows"
