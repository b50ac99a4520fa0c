"""Every loader rejects bad input with one line naming the file and the problem; nothing is fixed silently."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from lvmcore.errors import ArtifactError
from lvmcore.artifacts.evalset import load_eval_set, write_eval_set
from lvmcore.artifacts.importers import PickleWarning, import_public_payload, read_public_payload
from lvmcore.artifacts.payload import load_payload, write_payload
from lvmcore.artifacts.training_data import load_training_data, write_windows_spec

from helpers.synthetic import smooth_walk_bank, write_healthy_bank


@pytest.fixture
def bank(tmp_path: Path) -> dict[str, Path]:
    return write_healthy_bank(tmp_path / "bank", articles=12, dim=8)


def one_line_error(call, *fragments: str) -> ArtifactError:
    with pytest.raises(ArtifactError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_healthy_bank_loads(bank) -> None:
    payload = load_payload(bank["payload"])
    rows = load_eval_set(bank["eval"], expected_dim=payload.dim)
    data = load_training_data(bank["train"], payload)
    assert isinstance(payload.vectors, np.memmap)
    assert rows.context_keys is not None and data.count > 0


def test_missing_payload_directory(tmp_path) -> None:
    one_line_error(lambda: load_payload(tmp_path / "nope"), "nope", "not found")


def test_missing_manifest(bank) -> None:
    (bank["payload"] / "manifest.json").unlink()
    one_line_error(lambda: load_payload(bank["payload"]), "manifest.json", "not found")


def test_manifest_missing_field(bank) -> None:
    path = bank["payload"] / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["embedder"]
    path.write_text(json.dumps(manifest))
    one_line_error(lambda: load_payload(bank["payload"]), "manifest.json", "embedder")


def test_wrong_dtype_is_not_cast(bank) -> None:
    vectors = np.load(bank["payload"] / "vectors.npy")
    np.save(bank["payload"] / "vectors.npy", vectors.astype(np.float64))
    one_line_error(lambda: load_payload(bank["payload"]), "vectors.npy", "float64", "expected float32")


def test_wrong_rank(bank) -> None:
    np.save(bank["payload"] / "keys.npy", np.zeros((3, 2, 2), np.int64))
    one_line_error(lambda: load_payload(bank["payload"]), "keys.npy", "rank 3")


def test_keys_count_mismatch(bank) -> None:
    keys = np.load(bank["payload"] / "keys.npy")
    np.save(bank["payload"] / "keys.npy", keys[:-1])
    one_line_error(lambda: load_payload(bank["payload"]), "keys.npy", "keys for")


def test_negative_keys(bank) -> None:
    keys = np.load(bank["payload"] / "keys.npy")
    keys[4, 0] = -1
    np.save(bank["payload"] / "keys.npy", keys)
    one_line_error(lambda: load_payload(bank["payload"]), "keys.npy", "negative key at row 4")


def test_nan_rows_rejected_by_default(bank) -> None:
    vectors = np.load(bank["payload"] / "vectors.npy")
    vectors[7] = np.nan
    np.save(bank["payload"] / "vectors.npy", vectors)
    one_line_error(lambda: load_payload(bank["payload"]), "vectors.npy", "1 row(s) with NaN or inf", "first: 7")
    assert np.isnan(load_payload(bank["payload"], check_finite=False).vectors[7]).all()  # left for a check to count


def test_truncated_vectors(bank) -> None:
    path = bank["payload"] / "vectors.npy"
    path.write_bytes(path.read_bytes()[:-100])
    one_line_error(lambda: load_payload(bank["payload"]), "vectors.npy", "cannot be read")


def test_manifest_dim_disagrees(bank) -> None:
    path = bank["payload"] / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["dim"] = 768
    path.write_text(json.dumps(manifest))
    one_line_error(lambda: load_payload(bank["payload"]), "manifest.json", "dim 768")


def test_pickled_object_array_refused(bank) -> None:
    np.save(bank["payload"] / "keys.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    one_line_error(lambda: load_payload(bank["payload"]), "keys.npy", "pickled")


def test_eval_missing_array(tmp_path) -> None:
    np.savez(tmp_path / "e.npz", contexts=np.zeros((2, 5, 4), np.float32))
    one_line_error(lambda: load_eval_set(tmp_path / "e.npz"), "e.npz", "missing array(s) targets, truth_keys")


def test_eval_dimension_mismatch_with_payload(bank) -> None:
    one_line_error(lambda: load_eval_set(bank["eval"], expected_dim=768), "eval.npz", "dimension 8", "768")


def test_eval_truncated(bank) -> None:
    data = bank["eval"].read_bytes()
    bank["eval"].write_bytes(data[: len(data) // 2])
    one_line_error(lambda: load_eval_set(bank["eval"]), "eval.npz", "cannot be read")


def test_eval_context_keys_shape(tmp_path) -> None:
    write_eval_set(tmp_path / "e.npz", np.zeros((2, 5, 4)), np.zeros((2, 4)), np.zeros((2, 2)), np.zeros((2, 4, 2)), {})
    one_line_error(lambda: load_eval_set(tmp_path / "e.npz"), "context_keys", "expected (2, 5, 2)")


def test_eval_nan_rejected(tmp_path) -> None:
    targets = np.zeros((2, 4), np.float32)
    targets[1, 2] = np.inf
    write_eval_set(tmp_path / "e.npz", np.zeros((2, 5, 4)), targets, np.zeros((2, 2)), None, {})
    one_line_error(lambda: load_eval_set(tmp_path / "e.npz"), "e.npz", "targets", "NaN or inf")


def test_public_eval_without_context_keys_loads(tmp_path) -> None:
    np.savez(tmp_path / "e.npz", contexts=np.zeros((2, 5, 4), np.float32), targets=np.ones((2, 4), np.float32), truth_keys=np.zeros((2, 2), np.int64))
    rows = load_eval_set(tmp_path / "e.npz")
    assert rows.context_keys is None and rows.provenance == {}


def test_training_spec_names_unknown_article(bank) -> None:
    payload = load_payload(bank["payload"])
    write_windows_spec(bank["train"], np.array([0, 999]), 5, {})
    one_line_error(lambda: load_training_data(bank["train"], payload), "train.json", "absent from the payload", "999")


def test_training_spec_not_json(bank) -> None:
    payload = load_payload(bank["payload"])
    bank["train"].write_text("{oops")
    one_line_error(lambda: load_training_data(bank["train"], payload), "train.json", "valid JSON")


def test_public_payload_npz_imports(tmp_path) -> None:
    vectors, keys = smooth_walk_bank(articles=5, dim=8)
    np.savez(tmp_path / "public.npz", vectors=vectors, article_indices=keys[:, 0], chunk_indices=keys[:, 1])
    payload = read_public_payload(tmp_path / "public.npz")
    np.testing.assert_array_equal(payload.keys, keys)
    out = import_public_payload(tmp_path / "public.npz", tmp_path / "ours", embedder="x/y")
    converted = load_payload(out)
    np.testing.assert_array_equal(np.asarray(converted.vectors), vectors)
    assert converted.manifest["embedder"] == "x/y" and converted.manifest["norm"] == "l2"  # measured, not "unknown"


def test_public_payload_missing_column(tmp_path) -> None:
    np.savez(tmp_path / "public.npz", vectors=np.zeros((3, 4), np.float32), article_indices=np.zeros(3, np.int64))
    one_line_error(lambda: read_public_payload(tmp_path / "public.npz"), "public.npz", "chunk_indices")


def test_legacy_pickle_needs_the_flag_and_warns(tmp_path) -> None:
    vectors, keys = smooth_walk_bank(articles=3, dim=4)
    legacy = {"vectors": vectors, "article_indices": keys[:, 0], "chunk_indices": keys[:, 1]}
    np.save(tmp_path / "legacy.npy", np.array(legacy, dtype=object), allow_pickle=True)
    one_line_error(lambda: read_public_payload(tmp_path / "legacy.npy"), "legacy.npy", "--allow-pickle")
    with pytest.warns(PickleWarning, match="restricted unpickler under --allow-pickle"):
        payload = read_public_payload(tmp_path / "legacy.npy", allow_pickle=True)
    assert payload.count == len(vectors)


def test_loader_never_renormalizes(tmp_path) -> None:
    vectors = (np.eye(4, dtype=np.float32) * 3.0)
    write_payload(tmp_path / "p", vectors, np.array([[0, i] for i in range(4)]), embedder="e")
    np.testing.assert_array_equal(np.asarray(load_payload(tmp_path / "p").vectors), vectors)


def test_importer_cli_prints_one_line_error(tmp_path, capsys) -> None:
    from lvmcore.artifacts.importers import main

    assert main(["payload", str(tmp_path / "missing.npz"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.npz" in err
    warnings.resetwarnings()


def test_exception_reason_is_the_first_line_cut_or_the_type_name() -> None:
    from lvmcore.errors import exception_reason

    assert exception_reason(ValueError("  bad header\nat line 2\n")) == "bad header"
    assert exception_reason(ValueError("x" * 500)) == "x" * 200 and exception_reason(ValueError("x" * 500), limit=None) == "x" * 500
    assert exception_reason(EOFError()) == "EOFError" and exception_reason(EOFError(), fallback="") == ""
