"""Checkpoints: atomic writes, weights_only loads, and one-line errors for every way a file can be wrong."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from lvmcore.artifacts.checkpoint import (
    CHECKPOINT_FORMAT,
    TRAINING_CHECKPOINT_FIELDS,
    TrainingCheckpoint,
    estimate_parameters,
    load_checkpoint,
    save_checkpoint,
)
from lvmcore.errors import ArtifactError
from lvmcore.models import PRESETS, build_model

DIM = 16


class NotATensor:
    """A Python object: weights_only loading must refuse to unpickle it."""

    def __reduce__(self):
        return (print, ("this ran code from the checkpoint",))


def content(preset: str = "mamba-xs", dim: int = DIM) -> dict:
    torch.manual_seed(0)
    config = PRESETS[preset](dim=dim)
    model = build_model(config)
    return {
        "model_config": config.to_dict(),
        "model_state": model.state_dict(),
        "epoch": 2,
        "step": 40,
        "metrics": {"val_r_at_5": 0.5},
        "provenance": {"embedder": "synthetic", "dim": dim, "payload_hash": "abc"},
        "training_articles": [1, 2, 3],
        "validation_articles": [4],
        "negatives_per_positive": 1023,
        "train_config": {"batch_size": 256, "accumulation": 4},
    }


def test_round_trip_rebuilds_the_model_in_eval_mode(tmp_path: Path) -> None:
    stored = content()
    path = save_checkpoint(tmp_path / "ckpt.pt", stored)
    assert torch.load(path, weights_only=True)["format"] == CHECKPOINT_FORMAT
    checkpoint = load_checkpoint(path, expected_dim=DIM)
    assert not checkpoint.model.training
    for name, tensor in stored["model_state"].items():
        assert torch.equal(checkpoint.model.state_dict()[name], tensor), name
    assert (checkpoint.epoch, checkpoint.step, checkpoint.negatives_per_positive) == (2, 40, 1023)
    assert checkpoint.training_articles == [1, 2, 3] and checkpoint.validation_articles == [4]
    assert checkpoint.dim == DIM
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_the_training_layout_is_read_back_by_the_loader_field_by_field(tmp_path: Path) -> None:
    """The one writer of the training layout (`TrainingCheckpoint`) beside its reader: every field comes back."""
    stored = content()
    layout = TrainingCheckpoint(
        model_config=stored["model_config"], model_state=stored["model_state"], optimizer_state={"state": {}, "param_groups": []},
        scheduler_state={"step_count": 40}, rng_state={"torch": torch.get_rng_state()}, epoch=2, step=40, metrics={"val_r_at_5": 0.5},
        provenance=stored["provenance"], training_articles=[1, 2, 3], validation_articles=[4], negatives_per_positive=1023,
        bank_size=1024, masked_per_positive=0.0, loss="in_batch", bank_negatives=None, residual=False,
        train_config=stored["train_config"], resume={"progress": {"epoch": 2}, "best_r_at_5": 0.5},
    )
    path = save_checkpoint(tmp_path / "last.pt", layout.content())
    raw = torch.load(path, weights_only=True)
    assert list(raw) == list(TRAINING_CHECKPOINT_FIELDS)  # the layout's fields, in its order, and nothing else
    checkpoint = load_checkpoint(path, expected_dim=DIM)
    assert (checkpoint.epoch, checkpoint.step, checkpoint.negatives_per_positive) == (2, 40, 1023)
    assert checkpoint.training_articles == [1, 2, 3] and checkpoint.validation_articles == [4]
    assert checkpoint.provenance == stored["provenance"] and checkpoint.train_config == stored["train_config"]
    assert checkpoint.scheduler_state == {"step_count": 40} and torch.equal(checkpoint.rng_state["torch"], layout.rng_state["torch"])
    assert raw["resume"] == layout.resume and raw["loss"] == "in_batch" and raw["bank_size"] == 1024


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_pickled_objects_are_refused_without_running_them(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": {}, "model_state": {}, "payload": NotATensor()}, path)
    with pytest.raises(ArtifactError, match="not a checkpoint we can read safely: it holds pickled Python objects") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)
    assert "ran code" not in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_plain_pickle_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ArtifactError, match="is not a checkpoint"):
        load_checkpoint(path)


def test_a_dict_without_format_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(build_model(PRESETS["mamba-xs"](dim=DIM)).state_dict(), path)  # a bare state dict
    with pytest.raises(ArtifactError, match="is not a checkpoint: holds a dict without 'format'"):
        load_checkpoint(path)


def test_another_models_weights_name_the_first_mismatch(tmp_path: Path) -> None:
    stored = content("mamba-xs")
    stored["model_state"] = content("gru")["model_state"]  # config says mamba-xs, weights are a GRU's
    path = save_checkpoint(tmp_path / "mixed.pt", stored)
    with pytest.raises(ArtifactError, match="another model's weights.*parameter '") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_weights_of_another_dimension_name_the_shape(tmp_path: Path) -> None:
    stored = content("mamba-xs", dim=DIM)
    stored["model_state"] = content("mamba-xs", dim=DIM * 2)["model_state"]
    path = save_checkpoint(tmp_path / "wide.pt", stored)
    with pytest.raises(ArtifactError, match=r"has shape \("):
        load_checkpoint(path)


def test_expected_dim_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ckpt.pt", content())
    with pytest.raises(ArtifactError, match=f"trained on {DIM}-D vectors but the payload has dimension 384"):
        load_checkpoint(path, expected_dim=384)


def test_truncated_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ckpt.pt", content())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint(tmp_path / "last.pt", content())
    before = path.read_bytes()

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, content())
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


# --------------------------------------------------------------------------- model_config bounds, before any allocation

SMALL_CONFIGS = [
    ("mamba-xs", {}), ("mamba-xs", {"dt_rank": 5, "expand": 3, "d_conv": 2}), ("lstm", {"hidden": 24, "n_layers": 3}),
    ("gru", {"hidden": 8, "n_layers": 1}), ("transformer", {"d_model": 32, "n_layers": 2, "n_heads": 2, "max_context": 7}),
    ("two-tower", {"query_hidden": 12, "query_layers": 2, "payload_hidden": 20}),
]


@pytest.mark.parametrize("preset, overrides", SMALL_CONFIGS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(SMALL_CONFIGS)])
def test_the_parameter_estimate_is_exact_for_every_kind(preset: str, overrides: dict) -> None:
    config = PRESETS[preset](dim=DIM, **overrides)
    built = sum(p.numel() for p in build_model(config).parameters())
    assert estimate_parameters(config.to_dict()) == built


@pytest.mark.parametrize("changes, fragment", [
    ({"kind": "gru", "hidden": 30_000, "n_layers": 3}, "asks for about 13,"),  # moderate widths, 13e9 parameters: 52 GiB if built
    ({"kind": "mamba", "d_model": 1 << 20, "n_layers": 1_024}, "over the limit of 2,000,000,000"),
    ({"kind": "gru", "hidden": (1 << 20) + 1}, "model_config.hidden is 1048577, more than the 1,048,576"),
    ({"kind": "gru", "n_layers": 5_000}, "model_config.n_layers is 5000, more than the 1,024"),
    ({"kind": "gru", "hidden": "512"}, "model_config.hidden is '512' (str), expected an integer"),
    ({"kind": "gru", "hidden": 0}, "model_config.hidden is 0, expected an integer >= 1"),
    ({"kind": "gru", "dropout": 2.0}, "model_config.dropout is 2.0, expected a probability"),
    ({"kind": "gru", "hidden": True}, "model_config.hidden is True (bool), expected an integer"),
    ({"kind": "capsule"}, "model_config has unknown kind 'capsule'"),
], ids=["moderate-over-limit", "absurd", "width-over-bound", "layers-over-bound", "string-width", "zero-width", "dropout", "bool-width", "unknown-kind"])
def test_a_model_config_that_cannot_be_built_is_refused_before_any_allocation(tmp_path: Path, changes: dict, fragment: str) -> None:
    import resource

    stored = content("mamba-xs" if changes["kind"] == "mamba" else "gru")
    stored["model_config"] = {**stored["model_config"], **changes}
    path = save_checkpoint(tmp_path / "ckpt.pt", stored)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ArtifactError) as error:
        load_checkpoint(path, expected_dim=DIM)
    message = str(error.value)
    assert fragment in message and "\n" not in message and message.startswith(str(path)), message
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f"refusing the config raised peak memory by {grown_mib:.0f} MiB"
