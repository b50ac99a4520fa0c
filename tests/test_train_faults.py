"""`python -m train` fed generated faults, and killed at random moments.

Faults (hypothesis): a windows spec (train.json or validation.json) truncated, with non-UTF-8 bytes
spliced in, or with a field of the wrong JSON type, value or missing; a run's history.json the
same ways at `--resume`; a truncated last.pt; and out-of-range or non-numeric values of every
numeric option. Each fault is one the CLI must refuse: `main(argv)` returns 2, stderr is exactly
one `error:` line, nothing prints a traceback, and nothing is written (a fresh --out is not
created; a resumed run's directory is left as it was).

Kills: the loop stopped after seeded random optimizer steps (a hook that raises, as a crash
would), resumed each time, and a real `python -m train` process SIGKILLed at a random moment and
resumed; both end with exactly the weights of a run never interrupted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvmcore.artifacts.history import LOOP_ROW_FIELDS, NUMBER_FIELDS
from lvmcore.artifacts.training_data import WINDOWS_FORMAT
from conftest import REPO
from helpers.training_runs import ARTICLES, CHUNKS, Killed, assert_same_weights, bank, cli_args, config  # noqa: F401  (bank: the fixture)
from train.__main__ import main
from train.config import config_from_args
from train.loop import TrainHooks, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAULT_SETTINGS = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TALLY: Counter[str] = Counter()  # examples run per category; asserted, never printed
NON_UTF8 = (b"\xff", b"\xfe\xfe", b"\xc3(", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80")


def run_cli(argv: list[str]) -> tuple[int, str]:
    """main(argv) with stdout and stderr captured; asserts the refusal contract and returns (code, the error line)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    lines = err.getvalue().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err.getvalue())
    return code, lines[0]


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file in a run directory with its size and modification time: what "left as it was" compares."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


# --------------------------------------------------------------------------- generated faults

NOT_INTEGERS = st.one_of(st.floats(allow_nan=True), st.text(max_size=6), st.booleans(), st.none(), st.lists(st.integers(), max_size=2), st.just({}))
NOT_NUMBERS = st.one_of(st.text(max_size=6), st.booleans(), st.none(), st.lists(st.integers(), max_size=2), st.just({}))
NOT_OBJECTS = st.one_of(st.integers(), st.text(max_size=6), st.booleans(), st.lists(st.integers(), max_size=2))
NOT_LISTS = st.one_of(st.integers(), st.text(max_size=6), st.booleans(), st.none(), st.just({}))
NOT_STRINGS = st.one_of(st.integers(), st.booleans(), st.none(), st.lists(st.integers(), max_size=2), st.just({}))


def truncated(original: bytes) -> st.SearchStrategy[bytes]:
    """Every prefix that cuts the JSON object before its closing brace: never valid JSON (the empty file included)."""
    return st.integers(0, len(original.rstrip()) - 1).map(lambda n: original[:n])


def spliced(original: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(original)), st.sampled_from(NON_UTF8)).map(lambda t: original[: t[0]] + t[1] + original[t[0] :])


def spec_faults(spec: dict) -> st.SearchStrategy[dict | list | int | str | None]:
    """A windows spec every reader must refuse: one field of the wrong type or value, a required field missing, or no object."""
    bad_articles = st.one_of(
        NOT_LISTS,
        st.just([]),
        st.tuples(st.integers(0, len(spec["articles"])), st.one_of(st.integers(max_value=-1), st.integers(ARTICLES, 2**40), NOT_INTEGERS)).map(
            lambda t: spec["articles"][: t[0]] + [t[1]] + spec["articles"][t[0] :]
        ),
    )
    bad = {
        "format": st.one_of(st.text(max_size=12).filter(lambda t: t != WINDOWS_FORMAT), NOT_STRINGS),
        "context_length": st.one_of(st.integers(max_value=0), st.integers(CHUNKS, 2**40), NOT_INTEGERS),  # >= CHUNKS: no window fits
        "articles": bad_articles,
        "provenance": NOT_OBJECTS,
    }
    field = st.sampled_from(sorted(bad)).flatmap(lambda name: bad[name].map(lambda value: {**spec, name: value}))
    return st.one_of(
        field,
        field,  # twice: a wrong field is the common fault, a missing one or a document that is no object the rarer
        st.sampled_from(["format", "context_length", "articles"]).map(lambda name: {k: v for k, v in spec.items() if k != name}),
        st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=6), st.none()),
    )


def history_faults(history: dict) -> st.SearchStrategy[object]:
    """A history --resume must refuse: a row, field or the root of the wrong type or value, a row field missing, rows out of order."""
    rows = history["epochs"]
    row_bad = {
        "epoch": st.one_of(st.integers(max_value=0), st.integers(len(rows) + 1, 2**40), NOT_INTEGERS),
        **{name: NOT_NUMBERS for name in NUMBER_FIELDS},
        "negatives_per_positive": st.one_of(st.integers(max_value=-1), NOT_INTEGERS),
        "checkpoint": NOT_STRINGS,
        "lr_trace": st.one_of(
            NOT_LISTS,
            st.lists(st.one_of(NOT_LISTS, st.lists(st.integers(), max_size=1), st.tuples(NOT_NUMBERS, NOT_NUMBERS).map(list)), min_size=1, max_size=2),
        ),
    }

    def with_row(position: int, row: object) -> dict:
        return {**history, "epochs": rows[:position] + [row] + rows[position + 1 :]}

    position = st.integers(0, len(rows) - 1)
    return st.one_of(
        st.tuples(position, st.sampled_from(sorted(row_bad))).flatmap(lambda t: row_bad[t[1]].map(lambda v: with_row(t[0], {**rows[t[0]], t[1]: v}))),
        st.tuples(position, st.sampled_from(LOOP_ROW_FIELDS)).map(lambda t: with_row(t[0], {k: v for k, v in rows[t[0]].items() if k != t[1]})),
        st.tuples(position, st.one_of(NOT_OBJECTS, st.none())).map(lambda t: with_row(*t)),
        st.one_of(st.text(max_size=12).filter(lambda t: t != "lvm-history/1"), NOT_STRINGS).map(lambda v: {**history, "format": v}),
        st.one_of(NOT_OBJECTS, st.none()).map(lambda v: {**history, "config": v}),
        NOT_LISTS.map(lambda v: {**history, "epochs": v}),
        st.one_of(st.integers(max_value=0), NOT_INTEGERS).map(lambda v: {**history, "config": {**history["config"], "batch_size": v}}),
        st.just({**history, "epochs": rows[::-1]}),
        st.one_of(st.lists(st.just({}), max_size=2), st.integers(), st.text(max_size=6), st.none()),
    )


NUMERIC_FAULTS = {  # option -> values it must refuse (an int option also refuses text that is not an integer)
    "--epochs": st.integers(-(2**40), 0),
    "--batch-size": st.integers(-(2**40), 0),
    "--accumulation": st.integers(-(2**40), 0),
    "--lr": st.one_of(st.floats(max_value=0), st.sampled_from(["nan", "inf", "-inf"])),
    "--min-lr": st.one_of(st.floats(max_value=-1e-12), st.floats(min_value=3e-3, exclude_min=True), st.sampled_from(["nan", "inf"])),
    "--temperature": st.one_of(st.floats(max_value=0), st.sampled_from(["nan", "inf"])),
    "--grad-clip": st.one_of(st.floats(max_value=0), st.sampled_from(["nan", "inf"])),
    "--weight-decay": st.one_of(st.floats(max_value=-1e-12), st.sampled_from(["nan", "inf"])),
    "--seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63)),
    "--validation-fraction": st.one_of(st.floats(max_value=0), st.floats(min_value=1), st.just("nan")),
    "--article-dropout": st.one_of(st.floats(max_value=0, exclude_max=True), st.floats(min_value=1, exclude_min=True), st.just("nan")),
    "--span-corruption": st.one_of(st.floats(max_value=0, exclude_max=True), st.floats(min_value=1, exclude_min=True), st.just("nan")),
    **{name: st.integers(-(2**40), -1) for name in ("--warmup-steps", "--checkpoint-every-steps", "--max-validation-windows",
                                                    "--max-steps-per-epoch", "--threads", "--bank-negatives", "--hard-negatives")},
}  # fmt: skip
INT_OPTIONS = {"--epochs", "--batch-size", "--accumulation", "--seed", "--warmup-steps", "--checkpoint-every-steps",
               "--max-validation-windows", "--max-steps-per-epoch", "--threads", "--bank-negatives", "--hard-negatives"}  # fmt: skip
NOT_INT_TEXT = st.one_of(
    st.sampled_from(["x", "1.5", "1e3", "", " ", "0x10", "nan", "inf", "∞", "--"]), st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)).map(repr)
)
NOT_FLOAT_TEXT = st.sampled_from(["x", "", "1,5", "one", "0.1.2", "--"])


@st.composite
def numeric_fault(draw) -> tuple[str, str]:
    option = draw(st.sampled_from(sorted(NUMERIC_FAULTS)))
    text = NOT_INT_TEXT if option in INT_OPTIONS else NOT_FLOAT_TEXT
    value = draw(st.one_of(NUMERIC_FAULTS[option].map(str), text))
    return option, value


@pytest.fixture(scope="module")
def faults_run(bank: Path, tmp_path_factory) -> Path:
    """A finished short run (two epochs of two steps) whose history.json and last.pt the faults break, in copies."""
    out = tmp_path_factory.mktemp("faults") / "run"
    train(config(bank, out, max_steps_per_epoch=2))
    return out


def linked_copy(run: Path, into: Path) -> Path:
    """A copy of the run directory whose checkpoints are hard links (cheap; the loop replaces files, never writes into them)."""
    copy = into / "run"
    copy.mkdir()
    for path in run.iterdir():
        if path.suffix == ".pt":
            os.link(path, copy / path.name)
        else:
            (copy / path.name).write_bytes(path.read_bytes())
    return copy


def spec_case(bank: Path, scratch: Path, which: str, data: bytes) -> str:
    """Write the broken spec, run the CLI on it with a fresh --out, and check it refused without writing anything."""
    broken = scratch / f"{which}.json"
    broken.write_bytes(data)
    fresh = scratch / "fresh" / "run"
    _, line = run_cli(cli_args(bank, fresh, SPEC_OPTIONS[which], str(broken)))
    assert not (scratch / "fresh").exists(), f"{line}: something was written to the fresh --out"
    return line


def history_case(bank: Path, run: Path, scratch: Path, data: bytes) -> str:
    """Break history.json in a copy of the run, resume it, and check the refusal names history.json and left the run alone."""
    copy = linked_copy(run, scratch)
    (copy / "history.json").write_bytes(data)
    before = tree(copy)
    _, line = run_cli(cli_args(bank, copy, "--max-steps-per-epoch", "2", "--resume"))
    assert line.startswith(f"error: {copy / 'history.json'}: ") and "--resume stops here" in line, line
    assert tree(copy) == before and (copy / "history.json").read_bytes() == data
    return line


SPEC_FILES = st.sampled_from(["train", "validation"])
SPEC_OPTIONS = {"train": "--train-data", "validation": "--validation-data"}


@pytest.mark.parametrize("kind", ["truncated", "non-UTF-8", "wrong JSON"])
def test_a_broken_windows_spec_is_refused_in_one_line_before_anything_is_written(bank: Path, tmp_path_factory, kind: str) -> None:
    originals = {which: (bank / f"{which}.json").read_bytes() for which in ("train", "validation")}
    if kind == "truncated":
        faults = SPEC_FILES.flatmap(lambda which: truncated(originals[which]).map(lambda data: (which, data)))
    elif kind == "non-UTF-8":
        faults = SPEC_FILES.flatmap(lambda which: spliced(originals[which]).map(lambda data: (which, data)))
    else:
        faults = SPEC_FILES.flatmap(lambda which: spec_faults(json.loads(originals[which])).map(lambda doc: (which, json.dumps(doc).encode())))

    @FAULT_SETTINGS
    @given(faults)
    def case(fault: tuple[str, bytes]) -> None:
        which, data = fault
        line = spec_case(bank, tmp_path_factory.mktemp("spec"), which, data)
        assert f"{which}.json" in line, line
        TALLY[f"spec {kind}"] += 1

    case()
    assert TALLY[f"spec {kind}"] > 0


@pytest.mark.parametrize("kind", ["truncated", "non-UTF-8", "wrong JSON"])
def test_a_broken_history_stops_resume_in_one_line_and_changes_nothing(bank: Path, faults_run: Path, tmp_path_factory, kind: str) -> None:
    original = (faults_run / "history.json").read_bytes()
    if kind == "truncated":
        faults = truncated(original)
    elif kind == "non-UTF-8":
        faults = spliced(original)
    else:
        faults = history_faults(json.loads(original)).map(lambda doc: json.dumps(doc).encode())

    @FAULT_SETTINGS
    @given(faults)
    def case(data: bytes) -> None:
        history_case(bank, faults_run, tmp_path_factory.mktemp("history"), data)
        TALLY[f"history {kind}"] += 1

    case()
    assert TALLY[f"history {kind}"] > 0


def test_a_truncated_last_checkpoint_stops_resume_in_one_line(bank: Path, faults_run: Path, tmp_path_factory) -> None:
    size = (faults_run / "last.pt").stat().st_size

    @settings(FAULT_SETTINGS, max_examples=10)
    @given(st.integers(0, size - 1))
    def case(keep: int) -> None:
        copy = linked_copy(faults_run, tmp_path_factory.mktemp("checkpoint"))
        with (faults_run / "last.pt").open("rb") as handle:
            data = handle.read(keep)
        (copy / "last.pt").unlink()
        (copy / "last.pt").write_bytes(data)
        before = tree(copy)
        _, line = run_cli(cli_args(bank, copy, "--max-steps-per-epoch", "2", "--resume"))
        assert line.startswith(f"error: {copy / 'last.pt'}: "), line
        assert tree(copy) == before
        TALLY["checkpoint truncated"] += 1

    case()
    assert TALLY["checkpoint truncated"] > 0


def test_a_bad_numeric_option_is_refused_in_one_line_before_anything_is_written(bank: Path, tmp_path_factory) -> None:
    @settings(FAULT_SETTINGS, max_examples=80)
    @given(numeric_fault())
    def case(fault: tuple[str, str]) -> None:
        option, value = fault
        fresh = tmp_path_factory.mktemp("numbers") / "run"
        _, line = run_cli(cli_args(bank, fresh, f"{option}={value}", "--loss", "in_batch" if option == "--hard-negatives" else "bank"))
        assert option in line, line
        assert not fresh.exists()
        TALLY["numeric option"] += 1

    case()
    assert TALLY["numeric option"] > 0


# --------------------------------------------------------------------------- kills and resumes

KILL_SETTINGS = dict(epochs=2, checkpoint_every_steps=2, article_dropout=0.3, span_corruption=0.3)


@pytest.fixture(scope="module")
def uninterrupted(bank: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The run never interrupted, and its history: what every killed and resumed run must end as."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    return out, train(config(bank, out, **KILL_SETTINGS))


@pytest.mark.parametrize("seed", [0, 1])
def test_killed_after_random_steps_and_resumed_each_time_ends_with_the_same_weights(bank: Path, uninterrupted, tmp_path: Path, seed: int) -> None:
    """Three kills in one run: the last step of epoch 1 (before its validation and checkpoints) and two seeded random steps."""
    reference, history = uninterrupted
    steps = history["config"]["steps_per_epoch"]
    total = 2 * steps
    kills = sorted({steps - 1, *random.Random(seed).sample(range(total - 1), 2)})
    out = tmp_path / "run"
    for kill_at in kills:

        def kill(step: int, at: int = kill_at) -> None:
            if step == at:
                raise Killed(f"killed after step {step}")

        with pytest.raises(Killed):  # killed before its first checkpoint: start again, as the refusal to resume says
            train(config(bank, out, resume=(out / "last.pt").exists(), **KILL_SETTINGS), TrainHooks(after_step=kill))
    resumed = train(config(bank, out, resume=True, **KILL_SETTINGS))
    assert_same_weights(reference / "last.pt", out / "last.pt")
    assert [row["lr_trace"] for row in resumed["epochs"]] == [row["lr_trace"] for row in history["epochs"]]
    assert [row["val_r_at_5"] for row in resumed["epochs"]] == [row["val_r_at_5"] for row in history["epochs"]]


@pytest.mark.slow  # a real `python -m train` process (imports torch, about 5 s) killed and resumed
def test_a_sigkilled_training_process_resumes_to_the_same_weights(bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = cli_args(bank, out, "--epochs", "3", "--checkpoint-every-steps", "1", "--threads", "1", "--article-dropout", "0.3")
    reference = tmp_path / "reference"
    started = time.perf_counter()
    train(config_from_args([*argv, "--out", str(reference)]))
    seconds = time.perf_counter() - started
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rng = random.Random(7)
    for attempt in range(3):  # a kill that lands after the run finished tells nothing: kill sooner and try again
        shutil.rmtree(out, ignore_errors=True)
        log = (tmp_path / f"attempt{attempt}.log").open("w")
        process = subprocess.Popen([sys.executable, "-m", "train", *argv], stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)  # `python -m train` runs in the checkout; elsewhere `lvm-checks train`
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.6) * seconds / 2**attempt)  # a random moment: mid step, mid checkpoint, mid validation
        process.send_signal(signal.SIGKILL)
        code = process.wait()
        log.close()
        if code == -signal.SIGKILL:
            break
        assert code == 0, (tmp_path / f"attempt{attempt}.log").read_text()
    else:
        pytest.fail("the training process finished before every kill; it ran faster than the in-process reference")
    train(config_from_args([*argv, "--resume"]))
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "a killed writer's temp file was left behind"
    assert_same_weights(reference / "last.pt", out / "last.pt")
    rows = [json.loads((d / "history.json").read_text())["epochs"] for d in (reference, out)]
    assert [r["lr_trace"] for r in rows[0]] == [r["lr_trace"] for r in rows[1]]
