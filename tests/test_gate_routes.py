"""Gate any model: a model class we do not know, gated through the adapter, an exported program and a
predictions file, gives the same figures by every route, equal to brute force from its predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from helpers.foreign_model import DriftExtrapolator, save_foreign_checkpoint
from lvmcore.artifacts.evalset import load_eval_set
from lvmcore.artifacts.payload import load_payload
from lvmcore.artifacts.predictions import eval_set_fingerprint, load_predictions, write_predictions
from lvmcore.errors import ArtifactError
from lvmcore.keys import pack_keys
from lvmcore.vectors import l2_normalize
from helpers.synthetic import write_healthy_bank

CHECKS = REPO / "checks"
DIM = 32


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("routes")
    bank = write_healthy_bank(root / "bank", articles=80, dim=DIM)
    torch.manual_seed(0)
    model = DriftExtrapolator(DIM).eval()
    with torch.no_grad():
        model.mix.weight.add_(0.05 * torch.randn(DIM, DIM))  # not the identity: weights that matter
    checkpoint = save_foreign_checkpoint(root / "foreign.pt", model)
    eval_set = load_eval_set(bank["eval"])
    with torch.no_grad():
        preds = model(torch.from_numpy(np.ascontiguousarray(eval_set.contexts))).numpy()
    predictions = write_predictions(root / "foreign_predictions.npz", eval_set, preds, provenance={"embedder": "synthetic/smooth-walk", "dim": DIM})
    exported = torch.export.export(model, (torch.from_numpy(np.ascontiguousarray(eval_set.contexts[:4])),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    program = root / "foreign.pt2"
    torch.export.save(exported, str(program))
    return {"bank": bank, "checkpoint": checkpoint, "predictions": predictions, "program": program, "preds": preds, "root": root}


def run_gate(pytester: pytest.Pytester, routes: dict, run: str, *route_args: str) -> tuple[pytest.RunResult, dict]:
    bank = routes["bank"]
    reports = pytester.path / "reports"
    result = pytester.runpytest_inprocess(
        str(CHECKS), "-m", "gate", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
        "--payload", str(bank["payload"]), "--eval-set", str(bank["eval"]), "--train-data", str(bank["train"]),
        "--nlist", "8", "--nprobe", "8", "--index-cache", str(routes["root"] / "cache"), "--report-dir", str(reports), "--run-name", run, *route_args,
    )
    found = list((reports / run).glob("*/report.json"))
    assert len(found) == 1, result.stdout.str()[-3000:]
    return result, json.loads(found[0].read_text())


def model_figures(report: dict) -> dict:
    return next(r for r in report["records"] if r["check"] == "gate_figures")["details"]["query_sets"]["model"]


def brute_force(routes: dict) -> tuple[float, float]:
    """R@5 and Contain@50 of the stored predictions by a full sort over the payload, hits by key."""
    payload, eval_set = load_payload(routes["bank"]["payload"]), load_eval_set(routes["bank"]["eval"])
    scores = l2_normalize(routes["preds"]) @ np.asarray(payload.vectors).T  # (M, N)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :50]
    hits = pack_keys(payload.keys[order]) == pack_keys(eval_set.truth_keys)[:, None]
    return float(hits[:, :5].any(axis=1).mean()), float(hits.any(axis=1).mean())


def test_three_routes_give_the_same_figures_as_brute_force(pytester, routes) -> None:
    sys_path = str(Path(__file__).parent)  # where the adapter module lives, as a user's PYTHONPATH would say
    runs = {
        "adapter": run_gate(pytester, routes, "adapter", "--checkpoint", str(routes["checkpoint"]), "--model-adapter", "helpers.foreign_model:load_predictor"),
        "model_file": run_gate(pytester, routes, "program", "--model-file", str(routes["program"])),
        "predictions": run_gate(pytester, routes, "predictions", "--predictions", str(routes["predictions"])),
    }
    assert sys_path  # tests/ is on sys.path in this session, so the adapter module imports
    r_at_5, contain_at_50 = brute_force(routes)
    assert r_at_5 > 0.2, r_at_5  # a real model, so agreement is not agreement on zero
    for route, (result, report) in runs.items():
        figures = model_figures(report)
        assert figures["exact_r_at_5"] == pytest.approx(r_at_5, abs=1e-12), (route, figures["exact_r_at_5"], r_at_5)
        assert figures["exact_contain_at_50"] == pytest.approx(contain_at_50, abs=1e-12), (route, figures["exact_contain_at_50"], contain_at_50)
        outcomes = result.parseoutcomes()
        assert outcomes.get("errors", 0) == 0, (route, result.stdout.str()[-3000:])
    # every gate runs on every route except the training record, which says why it is absent
    skipped = {route: result.stdout.str() for route, (result, _) in runs.items()}
    assert "route carries no training record" in skipped["predictions"] and "route carries no training record" in skipped["model_file"]
    assert "no history.json beside the checkpoint" in skipped["adapter"]
    adapter_report = runs["adapter"][1]
    checkpoint = next(r for r in adapter_report["records"] if r["check"] == "gate_figures")["details"]["checkpoint"]
    assert checkpoint["epoch"] == 3 and checkpoint["metrics"]["val_cosine"] == 0.36  # read from the foreign dict without running code
    # each report says how it was made: the route, the adapter that ran, the file and its hash, what is known of the model
    subjects = {route: report["options"]["measured"]["subject"] for route, (_, report) in runs.items()}
    assert subjects["adapter"]["adapter"] == "helpers.foreign_model:load_predictor" and subjects["adapter"]["checkpoint"]["step"] is None
    assert subjects["adapter"]["model"]["config"] == {"out_dir": "/runs/mamba_s", "lr": 1e-3, "dim": DIM} and subjects["adapter"]["model"]["config_from"] == "args"
    assert subjects["model_file"]["route"] == "model_file" and subjects["model_file"]["file"]["path"] == str(routes["program"])
    assert subjects["model_file"]["model"]["known"] is False and "torch.export program" in subjects["model_file"]["model"]["architecture"]
    assert subjects["predictions"]["file"]["sha256"] and subjects["predictions"]["model"]["known"] is False
    assert "step not recorded" in (pytester.path / "reports" / "adapter" / "foreign" / "report.md").read_text()


def test_a_foreign_checkpoint_without_an_adapter_says_the_way_out(pytester, routes) -> None:
    bank = routes["bank"]
    result = pytester.runpytest_inprocess(
        str(CHECKS), "-m", "gate", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
        "--payload", str(bank["payload"]), "--eval-set", str(bank["eval"]), "--train-data", str(bank["train"]),
        "--nlist", "8", "--nprobe", "8", "--index-cache", str(routes["root"] / "cache"), "--report-dir", str(pytester.path / "r"),
        "--checkpoint", str(routes["checkpoint"]),
    )
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "is not a checkpoint we can read safely" in out or "training checkpoint of another codebase" in out
    assert "--model-adapter module:function" in out


def test_predictions_of_another_eval_set_or_shape_are_refused(routes, tmp_path) -> None:
    eval_set = load_eval_set(routes["bank"]["eval"])
    stored = load_predictions(routes["predictions"], eval_set)
    assert stored.eval_predictions.shape == (eval_set.count, DIM) and stored.provenance["dim"] == DIM
    fewer = write_predictions(tmp_path / "fewer.npz", eval_set, routes["preds"])
    with np.load(fewer) as archive:
        arrays = dict(archive)
    np.savez(tmp_path / "short.npz", **{**arrays, "eval_predictions": arrays["eval_predictions"][:-1]})
    with pytest.raises(ArtifactError, match="eval predictions, the eval set"):
        load_predictions(tmp_path / "short.npz", eval_set)
    np.savez(tmp_path / "other.npz", **{**arrays, "eval_set_hash": np.array("0" * 32)})
    with pytest.raises(ArtifactError, match="was made for another eval set"):
        load_predictions(tmp_path / "other.npz", eval_set)
    np.savez(tmp_path / "wide.npz", **{**arrays, "eval_predictions": arrays["eval_predictions"].astype(np.float64)})
    with pytest.raises(ArtifactError, match="dtype float64"):
        load_predictions(tmp_path / "wide.npz", eval_set)
    np.savez(tmp_path / "pickled.npz", eval_predictions=np.array([object()], dtype=object), eval_set_hash=np.array(eval_set_fingerprint(eval_set)))
    with pytest.raises(ArtifactError, match="pickled Python objects"):
        load_predictions(tmp_path / "pickled.npz", eval_set)
    with pytest.raises(ArtifactError, match="not found"):
        load_predictions(tmp_path / "missing.npz", eval_set)


@pytest.mark.parametrize("args, message", [
    (["--predictions", "missing.npz"], "--predictions missing.npz: no such file or directory"),
    (["--model-file", "missing.pt2"], "--model-file missing.pt2: no such file or directory"),
    (["--checkpoint", "missing_run"], "--checkpoint missing_run: no such file or directory"),
    (["--predictions", "p.npz", "--model-file", "m.pt2"], "give one of --checkpoint, --model-file, --predictions"),
    (["--model-adapter", "pkg:load"], "--model-adapter loads the files --checkpoint names"),
])
def test_a_bad_route_is_one_usage_error_line_before_collection(pytester, args, message) -> None:
    result = pytester.runpytest_subprocess(str(CHECKS), "-m", "gate", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
    err = result.stderr.str()
    assert message in err and "Traceback" not in err + result.stdout.str() and "errors during collection" not in result.stdout.str(), err


def test_a_file_that_is_not_a_program_is_one_line(pytester, routes, tmp_path) -> None:
    (tmp_path / "garbage.pt2").write_bytes(b"not a program")
    bank = routes["bank"]
    result = pytester.runpytest_subprocess(
        str(CHECKS), "-m", "gate", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO), "-p", "no:cacheprovider",
        "--payload", str(bank["payload"]), "--eval-set", str(bank["eval"]), "--train-data", str(bank["train"]), "--nlist", "8",
        "--index-cache", str(routes["root"] / "cache"), "--report-dir", str(tmp_path / "r"), "--model-file", str(tmp_path / "garbage.pt2"),
    )
    out = result.stdout.str() + result.stderr.str()
    assert "garbage.pt2: cannot be loaded as a torch.export (.pt2) or TorchScript program" in out
    assert "Traceback" not in out and "Ran into the following error" not in out
