"""`python -m train` on the public pipeline's own files (`tests/helpers/pipeline_layouts.py`): the suite's reader
(`lvmcore.plumbing.user_files`), its `--allow-pickle` and `--field`, and the same options handed to the gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lvmcore.artifacts.evalset import write_eval_set
from lvmcore.artifacts.importers import main as importers_main
from helpers.pipeline_layouts import EVAL_LAYOUTS, another_encoder, read_eval_arrays, write_public_pipeline, write_sequences_v1
from train.__main__ import main
from train.config import TrainConfig
from train.loop import TrainHooks, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAKE_GATE = """
import json, pathlib, sys
args = sys.argv[1:]
checkpoint = pathlib.Path(args[args.index("--checkpoint") + 1])
report = pathlib.Path(args[args.index("--report-dir") + 1]) / args[args.index("--run-name") + 1] / checkpoint.stem / "report.json"
report.parent.mkdir(parents=True, exist_ok=True)
report.write_text(json.dumps({"decision": "PASS", "argv": args}))
"""


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> dict[str, Path]:
    return write_public_pipeline(tmp_path_factory.mktemp("public"), articles=40, dim=64)


def quick(out: Path, public: dict[str, Path], **overrides) -> TrainConfig:
    settings = dict(out=str(out), preset="gru", epochs=1, payload=str(public["source_vectors"]), train_data=str(public["train"]),
                    validation_data=str(public["val"]), eval_set=None, batch_size=16, max_steps_per_epoch=3, progress=False, device="cpu")
    settings.update(overrides)
    return TrainConfig(**settings)


def fake_gate(tmp_path: Path) -> TrainHooks:
    fake = tmp_path / "fake_pytest.py"
    fake.write_text(FAKE_GATE)
    return TrainHooks(pytest_command=(sys.executable, str(fake)))


def gate_argv(out: Path, row: dict) -> list[str]:
    return json.loads((out / row["gate"]["report"]).read_text())["argv"]


@pytest.mark.parametrize("payload", ["source_vectors", "payload_pickle"])
@pytest.mark.parametrize("eval_layout", EVAL_LAYOUTS)
def test_trains_on_their_files_and_hands_the_gate_the_same_options(public, tmp_path, payload, eval_layout) -> None:
    out = tmp_path / "run"
    rows = train(quick(out, public, payload=str(public[payload]), eval_set=str(public[eval_layout]), allow_pickle=True, gate_every_epoch=True),
                 fake_gate(tmp_path))["epochs"]
    assert len(rows) == 1 and np.isfinite(rows[0]["train_loss"])
    argv = gate_argv(out, rows[0])
    assert "--allow-pickle" in argv
    assert argv[argv.index("--payload") + 1] == str(public[payload].resolve())
    assert argv[argv.index("--eval-set") + 1] == str(public[eval_layout].resolve())


def test_their_pickled_eval_set_is_refused_before_training_without_the_flag(public, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["--out", str(out), "--payload", str(public["source_vectors"]), "--train-data", str(public["train"]), "--validation-data",
                 str(public["val"]), "--eval-set", str(public["eval v3"]), "--gate-every-epoch", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "'provenance' is an object array" in err and "--allow-pickle" in err and "--field provenance=" in err
    assert not (out / "history.json").exists()  # refused before a step was taken


def test_leaving_their_pickled_provenance_out_with_field_reaches_the_gate(public, tmp_path) -> None:
    out = tmp_path / "run"
    rows = train(quick(out, public, eval_set=str(public["eval v2"]), field_mapping=["provenance="], gate_every_epoch=True), fake_gate(tmp_path))["epochs"]
    argv = gate_argv(out, rows[0])
    assert "--allow-pickle" not in argv and argv[argv.index("--field") + 1] == "provenance="


def test_the_importers_converted_copy_without_context_keys_trains(public, tmp_path) -> None:
    converted = tmp_path / "converted"
    for name in ("train", "val"):
        assert importers_main(["rows", str(public[name]), str(converted / f"{name}.npz")]) == 0
    with np.load(converted / "train.npz") as archive:
        assert "context_keys" not in archive.files  # the case the trainer used to refuse with no next step
    rows = train(quick(tmp_path / "run", public, train_data=str(converted / "train.npz"), validation_data=str(converted / "val.npz")))["epochs"]
    assert len(rows) == 1 and np.isfinite(rows[0]["val_loss"])


def test_a_mapped_layout_trains_with_field(public, tmp_path) -> None:
    contexts, targets, truth_keys, provenance = read_eval_arrays(public["train"])
    mapped = tmp_path / "theirs.npz"
    np.savez(mapped, windows=contexts, next_vectors=targets, next_keys=truth_keys.astype(np.int64))
    fields = ["contexts=windows", "targets=next_vectors", "truth_keys=next_keys"]
    rows = train(quick(tmp_path / "run", public, train_data=str(mapped), field_mapping=fields))["epochs"]
    assert len(rows) == 1


def test_training_contexts_from_another_encoder_are_refused_with_the_recovery_figures(public, tmp_path, capsys) -> None:
    contexts, targets, truth_keys, provenance = read_eval_arrays(public["train"])
    foreign = write_sequences_v1(tmp_path / "train_row1.npz", another_encoder(contexts), targets, truth_keys, provenance)
    code = main(["--out", str(tmp_path / "run"), "--payload", str(public["source_vectors"]), "--train-data", str(foreign),
                 "--validation-data", str(public["val"]), "--eval-set", "", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {foreign}: has no 'context_keys'") and "match no row of the payload" in err
    assert "matched exactly 0.0%, approximately 0.0%" in err and "another encoder" in err


def test_ours_without_context_keys_is_recovered_and_a_near_miss_is_refused(public, tmp_path, capsys) -> None:
    """Re-encoded vectors (near the payload, not equal) are not the payload's: no key is guessed for them."""
    contexts, targets, truth_keys, provenance = read_eval_arrays(public["train"])
    noisy = contexts + np.random.default_rng(0).normal(scale=0.02, size=contexts.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=-1, keepdims=True)
    path = write_eval_set(tmp_path / "train_noisy.npz", noisy.astype(np.float32), targets, truth_keys, None, provenance)
    code = main(["--out", str(tmp_path / "run"), "--payload", str(public["source_vectors"]), "--train-data", str(path),
                 "--validation-data", str(public["val"]), "--eval-set", "", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "match no row of the payload" in err and "near payload vectors but not equal" in err


def test_a_malformed_field_is_one_line_exit_2(public, tmp_path, capsys) -> None:
    code = main(["--out", str(tmp_path / "run"), "--payload", str(public["source_vectors"]), "--field", "windows", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--field" in err and "expected NAME=ARRAY" in err


def test_python_m_train_epochs_1_trains_on_their_training_file_and_gates_with_their_eval_file(public, tmp_path, capsys) -> None:
    """Issue 18's closing command, with the real gate: their v1 training and validation files, their source-vectors
    payload and their eval v3 (pickled provenance, so --allow-pickle, which the gate receives too)."""
    out = tmp_path / "run"
    code = main(["--out", str(out), "--epochs", "1", "--payload", str(public["source_vectors"]), "--train-data", str(public["train"]),
                 "--validation-data", str(public["val"]), "--eval-set", str(public["eval v3"]), "--allow-pickle", "--gate-every-epoch",
                 "--batch-size", "32", "--no-progress", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    gate = json.loads((out / "history.json").read_text())["epochs"][0]["gate"]
    report = json.loads((out / gate["report"]).read_text())
    assert isinstance(gate["decision"], dict) and gate["decision"]["action"] == report["decision"]["action"]
    assert not any(r["check"] == "artifact_error" for r in report["records"])  # every file was read, as the suite reads it
    assert report["options"]["--eval-set"] == str(public["eval v3"].resolve())
    assert_report_says_how_it_was_made(report, out / gate["report"], public)


def assert_report_says_how_it_was_made(report: dict, report_json: Path, public: dict[str, Path]) -> None:
    """Issue 18 item 6: route, checkpoint, model architecture and config, every file with its sha256, --allow-pickle, version."""
    import hashlib
    import importlib.metadata

    options = report["options"]
    measured = options["measured"]
    assert options["--allow-pickle"] is True and options["--field"] == {} and options["--index"] is None
    assert measured["suite_version"] == importlib.metadata.version("lvm-checks") and measured["level"] == "minimum"
    for name, key in (("payload", "source_vectors"), ("eval_set", "eval v3"), ("train_data", "train")):
        assert measured["artifacts"][name] == {"path": str(public[key].resolve()), "sha256": hashlib.sha256(public[key].read_bytes()).hexdigest()}
    subject = measured["subject"]
    assert subject["route"] == "checkpoint" and subject["adapter"] is None and subject["checkpoint"]["epoch"] == 1
    assert subject["file"]["sha256"] == hashlib.sha256(Path(subject["checkpoint"]["path"]).read_bytes()).hexdigest()
    assert subject["model"]["architecture"] == "gru" and subject["model"]["config"]["dim"] == 64 and subject["model"]["parameters"] > 0
    text = (report_json.parent / "report.md").read_text()
    section = text[text.index("## How this was measured"):]
    assert "route: checkpoint" in section and "model: gru" in section and "--allow-pickle: yes" in section and "step None" not in text
