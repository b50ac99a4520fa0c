"""`python -m train` (`train/__main__.py`, options from `train/config.py`): it trains, and each user error is one line,
exit 2, nothing written (the fault-driven tests are in test_train_faults.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from train.__main__ import main
from helpers.training_runs import bank, cli_args, one_line_error  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cli_trains_and_reports_user_errors_in_one_line(bank: Path, tmp_path: Path, capsys) -> None:
    common = ["--payload", str(bank / "payload"), "--train-data", str(bank / "train.json"), "--validation-data", str(bank / "validation.json")]
    code = main(["--preset", "mamba-xs", "--epochs", "1", "--out", str(tmp_path / "run"), "--batch-size", "32", "--no-progress", *common])
    assert code == 0
    assert "best epoch 1 by validation R@5" in capsys.readouterr().out
    code = main(["--out", str(tmp_path / "bad"), "--payload", str(tmp_path / "absent"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "payload directory not found" in err


CLI_FAULTS = [  # (option=value, what the one line says): each numeric option out of range, and values argparse cannot read
    ("--epochs=0", "--epochs must be >= 1"), ("--epochs=x", "invalid int value: 'x'"), ("--epochs=--", "--epochs: expected one value"),
    ("--batch-size=-1", "--batch-size and --accumulation must be >= 1"), ("--accumulation=0", "--batch-size and --accumulation must be >= 1"),
    ("--lr=nan", "--lr must be a finite number > 0"), ("--lr=0", "--lr must be a finite number > 0"), ("--lr=-inf", "--lr must be"),
    ("--lr=--", "--lr: expected one value"), ("--min-lr=1", "--min-lr must be a finite number in [0, --lr"), ("--min-lr=-1e-9", "--min-lr must be"),
    ("--warmup-steps=-1", "--warmup-steps must be >= 0"), ("--weight-decay=nan", "--weight-decay must be"), ("--grad-clip=0", "--grad-clip must be"),
    ("--temperature=inf", "--temperature must be a finite number > 0"), ("--temperature=0", "--temperature must be"),
    ("--seed=-1", "--seed must be in [0, 2**63 - 1]"), ("--seed=9223372036854775808", "--seed must be"), ("--seed=1.5", "invalid int value"),
    ("--validation-fraction=0", "--validation-fraction must be in (0, 1)"), ("--validation-fraction=nan", "--validation-fraction must be"),
    ("--article-dropout=1.5", "--article-dropout is a probability"), ("--span-corruption=nan", "--span-corruption is a probability"),
    ("--bank-negatives=-1", "--bank-negatives must be >= 0"), ("--hard-negatives=2", "--hard-negatives is for --loss in_batch"),
    ("--hard-negatives=100000", "--hard-negatives must be <= 1024"),
    ("--checkpoint-every-steps=-2", "--checkpoint-every-steps must be >= 0"), ("--max-validation-windows=-1", "--max-validation-windows must be >= 0"),
    ("--max-steps-per-epoch=-1", "--max-steps-per-epoch must be >= 0"), ("--threads=-1", "--threads must be >= 0"),
    ("--preset=gpt", "--preset must be one of"), ("--loss=triplet", "argument --loss: invalid choice"), ("--device=tpu", "argument --device: invalid choice"),
    ("--payload=", "--payload is empty"), ("--train-data=", "--train-data is empty"), ("--resume=", "--resume was given an empty name"),
    ("--no-such-option", "unrecognized arguments: --no-such-option"),
]  # fmt: skip


@pytest.mark.parametrize("argument, expected", CLI_FAULTS, ids=[a for a, _ in CLI_FAULTS])
def test_each_bad_option_value_is_one_line_exit_2_and_writes_nothing(bank: Path, tmp_path: Path, capsys, argument: str, expected: str) -> None:
    assert main(cli_args(bank, tmp_path / "run", argument)) == 2
    line = one_line_error(capsys)
    assert expected in line, line
    assert not (tmp_path / "run").exists()


def test_out_missing_is_one_line(capsys) -> None:
    assert main(["--epochs", "1"]) == 2
    assert "the following arguments are required: --out" in one_line_error(capsys)


@pytest.mark.parametrize("option", ["--payload", "--train-data", "--validation-data", "--eval-set"])
def test_each_input_file_option_names_a_missing_or_wrong_kind_of_file_in_one_line(bank: Path, tmp_path: Path, capsys, option: str) -> None:
    """Every option that reads a file, given a path that does not exist and then a path of the wrong kind (a directory, a text file)."""
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "notes.txt").write_text("not data")
    gate = ["--gate-every-epoch"] if option == "--eval-set" else []  # the eval set is read only for the gate, and then before training
    wrong_kind = tmp_path / ("notes.txt" if option in ("--payload", "--eval-set") else "a_dir")
    for path, expected in ((tmp_path / "absent", "not found"), (wrong_kind, str(wrong_kind))):
        assert main(cli_args(bank, tmp_path / "run", option, str(path), *gate)) == 2
        line = one_line_error(capsys)
        assert expected in line, line
        assert not (tmp_path / "run").exists()


def test_device_cuda_without_a_gpu_is_one_line(bank: Path, tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(cli_args(bank, tmp_path / "run", "--device", "cuda")) == 2
    assert "--device cuda" in one_line_error(capsys)


def test_cli_sets_loss_bank_negatives_and_residual(bank: Path, tmp_path: Path) -> None:
    common = ["--payload", str(bank / "payload"), "--train-data", str(bank / "train.json"), "--validation-data", str(bank / "validation.json")]
    assert main(["--preset", "gru", "--epochs", "1", "--out", str(tmp_path), "--batch-size", "32", "--no-progress",
                 "--loss", "bank", "--bank-negatives", "40", "--no-residual", "--temperature", "0.03", *common]) == 0
    settings = json.loads((tmp_path / "history.json").read_text())["config"]
    assert (settings["loss"], settings["bank_negatives"], settings["residual"], settings["temperature"]) == ("bank", 40, False, 0.03)
