"""Predictions files (`lvmcore/artifacts/predictions.py`): the fingerprint tool on every eval layout, and every
recorded field of a predictions file (or a foreign checkpoint) validated in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lvmcore.artifacts.checkpoint import read_foreign_record
from lvmcore.artifacts.layout_rows import read_rows
from lvmcore.artifacts.layouts import parse_field_mapping
from lvmcore.artifacts.predictions import eval_set_fingerprint, fingerprint_of_file, load_predictions, main, write_predictions
from lvmcore.errors import ArtifactError
from lvmcore.gate.routes import from_predictions

from conftest import REPO
from helpers.pipeline_layouts import EVAL_LAYOUTS, write_public_pipeline
from helpers.synthetic import write_healthy_bank

DIM = 16


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predictions")
    public = write_public_pipeline(root / "public", articles=12, dim=DIM)
    bank = write_healthy_bank(root / "bank", articles=12, dim=DIM)
    with np.load(public["sequences v1"]) as archive:  # a layout we do not know, mapped with --field
        np.savez(root / "theirs.npz", windows=archive["context_sequences"], next_vectors=archive["target_vectors"], next_keys=archive["truth_keys"])
    return {**public, "ours": bank["eval"], "unknown": root / "theirs.npz"}


UNKNOWN_FIELDS = ["contexts=windows", "targets=next_vectors", "truth_keys=next_keys"]


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["fingerprint", *argv])
    captured = capsys.readouterr()
    return code, captured.out.strip(), captured.err.strip()


def suite_fingerprint(path: Path, fields: list[str]) -> str:
    """The fingerprint the suite compares `eval_set_hash` with: the eval set as `fixtures/artifacts.py::eval_set` reads it."""
    return eval_set_fingerprint(read_rows(path, expected_dim=DIM, check_finite=False, fields=parse_field_mapping(fields), allow_pickle=True))


@pytest.mark.parametrize("layout", [*EVAL_LAYOUTS, "ours", "unknown"])
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_the_fingerprint_tool_reads_every_eval_layout_and_equals_the_suites(files, capsys, tmp_path, layout: str, allow_pickle: bool) -> None:
    fields = UNKNOWN_FIELDS if layout == "unknown" else []
    argv = [str(files[layout]), *(["--allow-pickle"] if allow_pickle else []), *[f"--field={f}" for f in fields]]
    code, out, err = cli(capsys, *argv)
    assert code == 0 and err == "", err
    assert out == suite_fingerprint(files[layout], fields)
    eval_set = read_rows(files[layout], expected_dim=DIM, check_finite=False, fields=parse_field_mapping(fields), allow_pickle=True)
    np.savez(tmp_path / "numpy_alone.npz", eval_predictions=eval_set.targets, eval_set_hash=np.array(out))  # no helper of ours
    assert load_predictions(tmp_path / "numpy_alone.npz", eval_set).eval_predictions.shape == (eval_set.count, DIM)


def test_their_layouts_of_the_same_rows_share_one_fingerprint(files) -> None:
    """sequences v1 stores truth keys as int32, eval v2/v3 as int64: the same rows, the same fingerprint."""
    assert len({fingerprint_of_file(files[layout]) for layout in EVAL_LAYOUTS}) == 1


@pytest.mark.parametrize("argv, message", [
    (["--field", "context=windows"], "error: --field: field mapping 'context=windows': expected NAME=ARRAY"),
    ([], "is missing array(s) contexts, targets, truth_keys and matches no known rows layout"),
])
def test_the_fingerprint_tool_refuses_in_one_line(files, capsys, argv: list[str], message: str) -> None:
    code, out, err = cli(capsys, str(files["unknown"]), *argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err, err


def test_a_pickled_provenance_is_read_only_under_the_flag_and_then_through_the_restricted_unpickler(files, capsys, tmp_path) -> None:
    class Hostile:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    holder = np.empty(1, dtype=object)
    holder[0] = Hostile()
    with np.load(files["eval v3"], allow_pickle=True) as archive:
        np.savez(tmp_path / "eval_v3.npz", contexts=archive["contexts"], targets=archive["targets"], truth_keys=archive["truth_keys"], provenance=holder)
    code, out, _ = cli(capsys, str(tmp_path / "eval_v3.npz"))
    assert code == 0 and out == fingerprint_of_file(files["eval v3"])  # not needed, not read
    code, _, err = cli(capsys, str(tmp_path / "eval_v3.npz"), "--allow-pickle")
    assert code == 2 and "refuses to unpickle" in err and not (tmp_path / "ran").exists()


# ---- every recorded field of a predictions file ------------------------------------------------------

@pytest.fixture(scope="module")
def bank_eval(files):
    return read_rows(files["ours"], expected_dim=DIM)


def predictions_with(tmp_path: Path, eval_set, provenance: Any) -> Path:
    path = tmp_path / "predictions.npz"
    np.savez(path, eval_predictions=eval_set.targets, eval_set_hash=np.array(eval_set_fingerprint(eval_set)),
             provenance=np.array(json.dumps(provenance)))
    return path


@pytest.mark.parametrize("provenance, message", [
    ({"training_articles": ["enwiki-12", "enwiki-13"]}, "provenance.training_articles[0] is 'enwiki-12' (str): a document id? expected an article index"),
    ({"training_articles": 7}, "provenance.training_articles is 7 (int), expected a list of article indices"),
    ({"training_articles": "1,2,3"}, "provenance.training_articles is '1,2,3' (str), expected a list of article indices"),
    ({"training_articles": [1, None]}, "provenance.training_articles[1] is None (NoneType)"),
    ({"training_articles": [1.0]}, "provenance.training_articles[0] is 1.0 (float)"),
    ({"training_articles": [-1]}, "provenance.training_articles[0] is -1 (int)"),
    ({"training_articles": [2**40]}, "in [0, 2**31)"),
    ({"training_articles": [True]}, "provenance.training_articles[0] is True (bool)"),
    ({"dim": "16"}, "provenance.dim is '16' (str), expected an integer"),
    ({"dim": 0}, "provenance.dim is 0, expected an integer >= 1"),
    ({"embedder": 7}, "provenance.embedder is 7 (int), expected a string"),
    ({"norm": ["l2"]}, "provenance.norm is ['l2'] (list), expected a string"),
    ({"metric": {"ip": 1}}, "provenance.metric is {'ip': 1} (dict), expected a string"),
    ({"payload_hash": 5}, "provenance.payload_hash is 5 (int), expected a string"),
    ({"payload_build_id": 1.5}, "provenance.payload_build_id is 1.5 (float), expected a string"),
    (["embedder", "x"], "'provenance' is JSON list, expected a JSON object"),
])
def test_each_malformed_provenance_field_is_one_line(tmp_path, bank_eval, provenance, message: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        from_predictions(predictions_with(tmp_path, bank_eval, provenance), bank_eval)
    text = str(caught.value)
    assert message in text and "\n" not in text and text.startswith(str(tmp_path / "predictions.npz")), text


def test_null_is_not_recorded_and_healthy_fields_reach_the_record(tmp_path, bank_eval) -> None:
    subject = from_predictions(predictions_with(tmp_path, bank_eval, {"training_articles": None, "embedder": None, "dim": DIM}), bank_eval)
    assert subject.record.training_articles == [] and subject.record.provenance == {"dim": DIM}
    subject = from_predictions(predictions_with(tmp_path, bank_eval, {"training_articles": [3, 1], "embedder": "e", "norm": "l2"}), bank_eval)
    assert subject.record.training_articles == [3, 1] and subject.record.provenance == {"embedder": "e", "norm": "l2"}


def test_eval_set_hash_must_be_one_string(tmp_path, bank_eval) -> None:
    np.savez(tmp_path / "p.npz", eval_predictions=bank_eval.targets, eval_set_hash=np.arange(3))
    with pytest.raises(ArtifactError, match=r"'eval_set_hash' holds dtype int64 shape \(3,\), expected one string"):
        load_predictions(tmp_path / "p.npz", bank_eval)
    written = write_predictions(tmp_path / "ok.npz", bank_eval, bank_eval.targets, provenance={"embedder": "e"})
    assert load_predictions(written, bank_eval).provenance == {"embedder": "e"}


@pytest.mark.parametrize("articles", [["doc-1", "doc-2"], 7], ids=["document ids", "a number"])
def test_the_gate_reports_malformed_training_articles_once_in_one_line(pytester, files, tmp_path, bank_eval, articles) -> None:
    """The issue's case: the gate on such a file gave 21 tracebacks; now one artifact error, the other checks not run."""
    path = predictions_with(tmp_path, bank_eval, {"embedder": "e", "training_articles": articles})
    bank = files["ours"].parent
    result = pytester.runpytest_inprocess(
        str(REPO / "checks"), "-m", "gate", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
        "--payload", str(bank / "payload"), "--eval-set", str(files["ours"]), "--train-data", str(bank / "train.json"), "--nlist", "4",
        "--index-cache", str(tmp_path / "cache"), "--report-dir", str(tmp_path / "reports"), "--predictions", str(path),
    )
    out = result.stdout.str()
    assert "Traceback" not in out and out.count("provenance.training_articles") >= 1 and "1 ARTIFACT ERROR(S)" in out, out[-3000:]
    outcomes = result.parseoutcomes()  # checks of the data alone may pass; none that reads the model runs
    assert outcomes.get("errors", 0) == 1 and outcomes.get("failed", 0) == 0 and outcomes.get("skipped", 0) > 0
    result.stdout.fnmatch_lines(["SKIPPED*not run: the same artifact error: *predictions.npz: provenance.training_articles*"])


# ---- every field a foreign checkpoint's record is read from ---------------------------------------------

def foreign(tmp_path: Path, **fields: Any) -> Path:
    content = {"epoch": 3, "global_step": 120, "model_state_dict": {"w": torch.zeros(2)}, "val_cosine": 0.36,
               "provenance": {"embedder": "e", "dim": DIM}, "training_articles": [1, 2]}
    torch.save({**content, **fields}, tmp_path / "foreign.pt")
    return tmp_path / "foreign.pt"


def test_a_foreign_checkpoint_record_is_read(tmp_path) -> None:
    record = read_foreign_record(foreign(tmp_path))
    assert (record.epoch, record.step, record.training_articles) == (3, 120, [1, 2])
    assert record.provenance == {"embedder": "e", "dim": DIM} and record.metrics == {"val_cosine": 0.36}
    record = read_foreign_record(foreign(tmp_path, epoch=None, training_articles=None, provenance=None))
    assert (record.epoch, record.training_articles, record.provenance) == (None, [], {})


@pytest.mark.parametrize("fields, message", [
    ({"training_articles": ["doc-1"]}, "training_articles[0] is 'doc-1' (str): a document id?"),
    ({"training_articles": 4}, "training_articles is 4 (int), expected a list of article indices"),
    ({"provenance": "gtr"}, "provenance is 'gtr' (str), expected a JSON object"),
    ({"provenance": {"dim": "768"}}, "provenance.dim is '768' (str), expected an integer"),
    ({"provenance": {"training_articles": ["a"]}}, "provenance.training_articles[0] is 'a' (str)"),
    ({"epoch": "3"}, "epoch is '3' (str), expected an integer"),
    ({"epoch": -1}, "epoch is -1, expected an integer >= 0"),
    ({"global_step": 1.5}, "global_step is 1.5 (float), expected an integer"),
    ({"step": "10"}, "step is '10' (str), expected an integer"),
])
def test_each_malformed_foreign_checkpoint_field_is_one_line(tmp_path, fields: dict, message: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        read_foreign_record(foreign(tmp_path, **fields))
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
