"""Bring your own pipeline: the public pipeline's files, in its own layouts, through `pytest checks/ -m plumbing`
with no converter. The healthy set passes; its row-2 failure (eval contexts from another encoder, targets
re-aligned), which passed the public team's own checks with exit 0, fails with the context-alignment figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from lvmcore.artifacts.importers import PickleWarning, import_public_payload
from helpers.pipeline_layouts import (
    EVAL_FILES,
    EVAL_LAYOUTS,
    HARDCODED_BUILD_ID,
    another_encoder,
    build_id_of,
    sha256_of,
    write_hardcoded_build_id,
    write_public_pipeline,
    write_row2_failure,
    write_sequences_v1,
)

CHECKS = REPO / "checks"
ROW2 = "*eval_context_aligned_fraction = 0.00%, required >= 100.00% (minimum). * keys recovered from the payload (the file has no context_keys): " \
       "matched exactly 0.0%, approximately 0.0%, mean cosine of the unmatched 0.*context vectors come from another encoder*"


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> dict[str, Path]:
    """A healthy set at D = 768, with enough eval rows (>= 153) for the eval-size check."""
    return write_public_pipeline(tmp_path_factory.mktemp("public"), articles=110, dim=768)


def run_checks(pytester: pytest.Pytester, tmp_path: Path, *args: str, ini: Path | None = None) -> pytest.RunResult:
    return pytester.runpytest_inprocess(
        str(CHECKS), "-m", "plumbing", "-c", str(ini or REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
        "--index-cache", str(tmp_path / "cache"), "--report-dir", str(tmp_path / "reports"), "--run-name", "t", *args,
    )


def pipeline_args(public: dict[str, Path], eval_layout: str, payload: str = "payload_pickle") -> list[str]:
    return ["--payload", str(public[payload]), "--allow-pickle", "--eval-set", str(public[eval_layout]),
            "--train-data", str(public["train"]), "--build-index"]


@pytest.mark.parametrize("eval_layout", EVAL_LAYOUTS)
def test_healthy_public_pipeline_passes_in_its_own_layouts(pytester, tmp_path, public, eval_layout) -> None:
    result = run_checks(pytester, tmp_path, *pipeline_args(public, eval_layout))
    outcomes = result.parseoutcomes()
    assert result.ret == 0 and outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes["passed"] >= 28 and outcomes.get("skipped", 0) == 1
    result.stdout.fnmatch_lines([
        "*eval_context_aligned_fraction*100.00%*PASS*",  # measured on recovered keys, not skipped (the table is alphabetical)
        "*provenance_payload_hash_matches*1*PASS*",  # payload_build_id "payload@sha256:<16 digits>" of payload.npy
        "*training_context_aligned_fraction*100.00%*PASS*",
        "*1 SKIPPED GUARD(S)*",
        "SKIPPED checks/test_payload.py::test_payload_manifest_hash_matches_content: *records no content_hash*",
    ])


@pytest.mark.parametrize("eval_layout", EVAL_LAYOUTS)
def test_row2_failure_in_its_own_layout_fails_with_the_context_figure(pytester, tmp_path, public, eval_layout) -> None:
    broken = write_row2_failure(public, eval_layout, tmp_path / EVAL_FILES[eval_layout])
    args = pipeline_args(public, eval_layout)
    args[args.index("--eval-set") + 1] = str(broken)
    result = run_checks(pytester, tmp_path, *args)
    assert result.ret == 1
    result.stdout.fnmatch_lines([ROW2])
    failed = {line.split("::")[-1].split(" ")[0] for line in result.stdout.lines if line.startswith("FAILED ")}
    assert failed == {"test_every_eval_context_vector_matches_payload", "test_context_keys_are_covered_by_payload"}, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["SKIPPED checks/test_eval_alignment.py::test_context_keys_are_consecutive_within_one_document: *matched exactly 0.0%*"])


@pytest.mark.parametrize("eval_layout", EVAL_LAYOUTS)
def test_identity_check_passes_on_their_build_id_and_fails_on_their_hardcoded_one(pytester, tmp_path, public, eval_layout) -> None:
    """Their writers record `payload@sha256:<first 16 hex digits>`: compared with payload.npy's sha256 it passes; their eval
    builder's constant build id fails, naming both values and the digits compared."""
    args = [*pipeline_args(public, eval_layout), "-k", "name_this_payload"]
    result = run_checks(pytester, tmp_path, *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*provenance_payload_hash_matches*1*PASS*"])
    broken = write_hardcoded_build_id(public, eval_layout, tmp_path / EVAL_FILES[eval_layout])
    args[args.index("--eval-set") + 1] = str(broken)
    result = run_checks(pytester, tmp_path, *args)
    result.assert_outcomes(failed=1)
    sha = sha256_of(public["payload_pickle"])
    result.stdout.fnmatch_lines([f"*provenance_payload_hash_matches = 0*built from another payload*eval set records payload_build_id "
                                 f"'{HARDCODED_BUILD_ID}' (a sha256 prefix, 16 hex digits), but the sha256 of payload.npy is {sha} "
                                 f"(compared on the first 16 hex digits: {sha[:16]})*"])
    assert build_id_of(public["payload_pickle"]) != HARDCODED_BUILD_ID


def test_a_build_id_we_cannot_read_is_named_not_called_unrecorded(pytester, tmp_path, public) -> None:
    broken = write_hardcoded_build_id(public, "eval v3", tmp_path / "eval_v3.npz", build_id="build-7")
    args = [*pipeline_args(public, "eval v3"), "--train-data", "none", "-k", "name_this_payload"]
    args[args.index("--eval-set") + 1] = str(broken)
    result = run_checks(pytester, tmp_path, *args)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*eval set records payload_build_id 'build-7', a form we cannot read: not NAME@sha256:PREFIX*"])
    assert "no payload identity" not in result.stdout.str()


def test_training_contexts_from_another_encoder_in_sequences_v1_fail(pytester, tmp_path, public) -> None:
    with np.load(public["train"]) as archive:
        arrays = {name: archive[name] for name in archive.files}
    write_sequences_v1(tmp_path / "train.npz", another_encoder(arrays["context_sequences"]), arrays["target_vectors"], arrays["truth_keys"],
                       json.loads(str(arrays["provenance"][0])))
    args = pipeline_args(public, "sequences v1")
    args[args.index("--train-data") + 1] = str(tmp_path / "train.npz")
    result = run_checks(pytester, tmp_path, *args, "-k", "training")
    result.stdout.fnmatch_lines(["*training_context_aligned_fraction = 0.00%*matched exactly 0.0%, approximately 0.0%*training context vectors come from another encoder*"])


def test_pickled_files_are_never_read_without_the_flag(pytester, tmp_path, public) -> None:
    args = [a for a in pipeline_args(public, "eval v3") if a != "--allow-pickle"]
    result = run_checks(pytester, tmp_path, *args, "-k", "test_payload_keys_are_unique or test_every_eval_target_matches_payload")
    assert result.ret != 0 and result.parseoutcomes().get("passed", 0) == 0
    result.stdout.fnmatch_lines(["*payload.npy: holds a pickled Python object (a payload dict)*read only with --allow-pickle*"])
    args = pipeline_args(public, "eval v3", payload="source_vectors")
    args.remove("--allow-pickle")
    result = run_checks(pytester, tmp_path, *args, "-k", "test_every_eval_target_matches_payload")
    result.stdout.fnmatch_lines(["*eval_v3.npz: 'provenance' is an object array*read only with --allow-pickle*or leave it out with --field provenance=*"])
    result = run_checks(pytester, tmp_path, *args, "--field", "provenance=", "-k", "test_every_eval_target_matches_payload")
    result.assert_outcomes(passed=1)


def test_source_vectors_as_the_payload_are_read_and_named_honestly(pytester, tmp_path, public) -> None:
    """The eval set names payload.npy by sha256; given the source vectors, every content check passes and the identity
    check says the recorded file is another one, and which to pass."""
    result = run_checks(pytester, tmp_path, *pipeline_args(public, "sequences v1", payload="source_vectors"))
    failed = [line.split("::")[-1].split(" ")[0] for line in result.stdout.lines if line.startswith("FAILED ")]
    assert failed == ["test_eval_and_training_data_name_this_payload"], result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*records payload_build_id*(a sha256 prefix, 16 hex digits), but the sha256 of source_vectors.npz is *"
                                 "pass that file (with --allow-pickle) or a directory converted from it*"])


def test_converted_payload_passes_with_no_flag_and_no_skip(pytester, tmp_path, public) -> None:
    out = import_public_payload(public["source_vectors"], tmp_path / "payload", embedder="sentence-transformers/gtr-t5-base")
    with pytest.warns(PickleWarning, match="needs no --allow-pickle"):
        pickle_out = import_public_payload(public["payload_pickle"], tmp_path / "from_pickle", allow_pickle=True)
    assert (out / "texts.jsonl").is_file() and (pickle_out / "manifest.json").is_file()
    result = run_checks(pytester, tmp_path, "--payload", str(pickle_out), "--eval-set", str(public["sequences v1"]),
                        "--train-data", str(public["train"]), "--build-index")
    outcomes = result.parseoutcomes()
    assert result.ret == 0 and outcomes.get("skipped", 0) == 0 and outcomes.get("failed", 0) == 0, result.stdout.str()[-3000:]


def test_an_unknown_layout_mapped_in_pytest_ini(pytester, tmp_path, public) -> None:
    with np.load(public["sequences v1"]) as archive:
        np.savez(tmp_path / "theirs.npz", windows=archive["context_sequences"], next_vectors=archive["target_vectors"],
                 next_keys=archive["truth_keys"], provenance=archive["provenance"])
    ini = tmp_path / "pytest.ini"
    ini.write_text((REPO / "pytest.ini").read_text() + "lvm_fields =\n    contexts=windows\n    targets=next_vectors\n    truth_keys=next_keys\n")
    args = pipeline_args(public, "sequences v1")
    args[args.index("--eval-set") + 1] = str(tmp_path / "theirs.npz")
    result = run_checks(pytester, tmp_path, *args, "-k", "eval_alignment", ini=ini)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0 and outcomes["passed"] >= 10, result.stdout.str()[-3000:]
    bad = run_checks(pytester, tmp_path, *args, "--field", "context=windows", "-k", "eval_alignment")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
