"""The fault suite: every loader and CLI, fed generated malformed artifacts, gives one line or reads correctly.

For each artifact a user hands us (payload directory files, eval and training rows in every
layout, windows specs, checkpoints, predictions, history.json, index files), hypothesis draws
faults from `tests/helpers/faults.py` (bytes, encodings, JSON types and numbers, array dtypes, shapes and
values) and applies one to a scratch copy. The loader must then either return, or raise
`ArtifactError` whose message is one line naming the file; anything else (a traceback) fails.
No example may run code from a file (a sentinel pickle would create a file) or write beside it.
The CLIs (`python -m lvmcore.artifacts.importers`, `python -m lvmcore.artifacts.predictions`)
must exit 2 with one `error:` line on stderr and write nothing.

Set LVM_FAULT_EXAMPLES to draw more examples per target (default 30), and LVM_FAULT_TALLY to a
path to get the tally (target, category, kind, outcome) as JSON when the module finishes.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.faults import Fault, byte_faults, json_faults, jsonl_dump, npy_bytes, npy_faults, npz_faults, npz_json_faults, npz_members_of, text_faults
from helpers.pipeline_layouts import write_public_pipeline
from helpers.synthetic import write_healthy_bank
from lvmcore.artifacts.checkpoint import read_foreign_record, save_checkpoint
from lvmcore.artifacts.history import read_history
from lvmcore.artifacts.importers import main as importers_main
from lvmcore.artifacts.layout_payload import read_layout_payload
from lvmcore.artifacts.layout_rows import read_rows, read_training_rows
from lvmcore.artifacts.payload import Payload, load_payload
from lvmcore.artifacts.predictions import main as predictions_main
from lvmcore.artifacts.predictions import write_predictions
from lvmcore.errors import ArtifactError
from lvmcore.gate.routes import from_checkpoint, from_model_file, from_predictions
from lvmcore.models import PRESETS, build_model
from lvmcore.search.ivf import load_index

EXAMPLES = int(os.environ.get("LVM_FAULT_EXAMPLES", "30"))
FAULT_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
TALLY: Counter[tuple[str, str, str, str]] = Counter()
DIM = 16


class WritesAFile:
    """Unpickling this would create `target`: the proof that no code from a file ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


# ---- the healthy workspace -------------------------------------------------------------------------

@dataclass
class Workspace:
    root: Path
    bank: dict[str, Path]
    public: dict[str, Path]
    payload: Payload
    files: dict[str, Path]  # checkpoint, foreign checkpoint, predictions, history, index, program
    checkpoint_content: dict[str, Any]

    def __repr__(self) -> str:
        return f"Workspace({self.root})"

    @property
    def eval_set(self):
        return read_rows(self.bank["eval"], expected_dim=DIM)


def checkpoint_content(dim: int) -> dict[str, Any]:
    torch.manual_seed(0)
    config = PRESETS["gru"](dim=dim, hidden=16, n_layers=1)
    return {
        "model_config": config.to_dict(),
        "model_state": build_model(config).state_dict(),
        "epoch": 2, "step": 40, "metrics": {"val_r_at_5": 0.5},
        "provenance": {"embedder": "synthetic", "dim": dim, "payload_hash": "abc"},
        "training_articles": [1, 2, 3], "validation_articles": [4], "negatives_per_positive": 15,
        "train_config": {"batch_size": 16, "accumulation": 1},
    }


PREDICTIONS_PROVENANCE = {"embedder": "synthetic", "dim": DIM, "norm": "l2", "metric": "ip", "payload_hash": "abc",
                          "payload_build_id": "payload@sha256:0123456789abcdef", "training_articles": [1, 2, 3]}


def foreign_checkpoint_content(dim: int) -> dict[str, Any]:
    """Another codebase's checkpoint dict, with the fields `read_foreign_record` reads."""
    torch.manual_seed(0)
    return {"epoch": 3, "global_step": 120, "model_state_dict": torch.nn.Linear(dim, dim).state_dict(), "val_cosine": 0.36,
            "provenance": {"embedder": "synthetic", "dim": dim, "payload_hash": "abc"}, "training_articles": [1, 2, 3]}


def history_document() -> dict[str, Any]:
    row = {"epoch": 1, "train_loss": 2.0, "val_loss": 2.1, "val_cosine": 0.5, "val_r_at_1": 0.1, "val_r_at_5": 0.3,
           "lr_trace": [[1, 0.001], [2, 0.0009]], "negatives_per_positive": 15, "checkpoint": "epoch_001.pt"}
    return {"format": "lvm-history/1", "config": {"batch_size": 16, "accumulation": 1, "world_size": 1, "effective_batch": 16,
            "lr": 0.001, "min_lr": 0.0, "warmup_steps": 1, "total_steps": 2, "schedule": "cosine"}, "epochs": [row, {**row, "epoch": 2}]}


def exported_program(path: Path, example: np.ndarray) -> Path:
    """A tiny torch.export program (B, C, D) -> (B, C, D), as another codebase would hand it to --model-file."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(DIM, DIM), torch.nn.Tanh(), torch.nn.Linear(DIM, DIM)).eval()
    program = torch.export.export(model, (torch.from_numpy(np.ascontiguousarray(example)),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


def run_program(path: Path, workspace: "Workspace") -> np.ndarray:
    """Load an exported program the way the gate does and predict a few eval rows with it."""
    return from_model_file(path).predict_fn(workspace.eval_set.contexts[:3])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("faults")
    bank = write_healthy_bank(root / "bank", articles=24, dim=DIM)
    public = write_public_pipeline(root / "public", articles=10, dim=8)
    payload = load_payload(bank["payload"])
    texts = "".join(json.dumps({"text": f"article {a}, chunk {c}"}) + "\n" for a, c in payload.keys.tolist())
    (bank["payload"] / "texts.jsonl").write_text(texts)
    payload = load_payload(bank["payload"])
    eval_set = read_rows(bank["eval"], expected_dim=DIM)
    content = checkpoint_content(DIM)
    files = {
        "checkpoint": save_checkpoint(root / "epoch_002.pt", content),
        "predictions": write_predictions(root / "predictions.npz", eval_set, eval_set.targets.copy(), train_predictions=eval_set.targets[:4].copy(),
                                         train_rows=np.arange(4), provenance=PREDICTIONS_PROVENANCE),
        "foreign checkpoint": root / "foreign.pt",
        "history": root / "history.json",
        "index": root / "index.faiss",
    }
    files["history"].write_text(json.dumps(history_document()))
    torch.save(foreign_checkpoint_content(DIM), files["foreign checkpoint"])
    files["program"] = exported_program(root / "model.pt2", eval_set.contexts[:4])
    index = faiss.IndexFlatIP(DIM)
    index.add(np.ascontiguousarray(payload.vectors))
    faiss.write_index(index, str(files["index"]))
    yield Workspace(root, bank, public, payload, files, content)
    tally_path = os.environ.get("LVM_FAULT_TALLY")
    if tally_path:
        rows = [{"target": t, "category": c, "kind": k, "outcome": o, "count": n} for (t, c, k, o), n in sorted(TALLY.items())]
        Path(tally_path).write_text(json.dumps(rows, indent=1) + "\n")


# ---- the targets: an artifact, the file in it to break, what reads it, and how to break it ----------

@dataclass(frozen=True)
class Target:
    name: str
    artifact: Callable[[Workspace], Path]  # the file or directory handed to the loader
    member: str | None  # the file inside a directory artifact that is broken (None: the artifact itself)
    load: Callable[[Path, Workspace], Any]
    faults: Callable[[Path], st.SearchStrategy[Fault]]  # from the healthy file

    def broken_file(self, artifact: Path) -> Path:
        return artifact / self.member if self.member else artifact


def binary(path: Path) -> st.SearchStrategy[Fault]:
    return byte_faults(path.read_bytes())


def textual(path: Path) -> st.SearchStrategy[Fault]:
    return st.one_of(byte_faults(path.read_bytes()), text_faults(path.read_bytes()))


def json_file(path: Path) -> st.SearchStrategy[Fault]:
    return st.one_of(textual(path), json_faults(json.loads(path.read_text())))


def jsonl_file(path: Path) -> st.SearchStrategy[Fault]:
    records = [json.loads(line) for line in path.read_text().splitlines()[:3]]
    rest = path.read_text().splitlines()[3:]
    dump = jsonl_dump(records)
    return st.one_of(textual(path), json_faults(records, lambda doc: dump(doc) + "".join(r + "\n" for r in rest).encode()))


def npy_file(path: Path) -> st.SearchStrategy[Fault]:
    return st.one_of(binary(path), npy_faults(np.load(path)))


def npz_file(path: Path) -> st.SearchStrategy[Fault]:
    return st.one_of(binary(path), npz_faults(npz_members_of(path)))


def predictions_provenance(path: Path) -> st.SearchStrategy[Fault]:
    return npz_json_faults(npz_members_of(path), "provenance")


def foreign_checkpoint(path: Path) -> st.SearchStrategy[Fault]:
    """Bytes of the file, or any field but the weights of any type (or deleted), saved as another codebase saves it."""
    content = foreign_checkpoint_content(DIM)
    record = {k: v for k, v in content.items() if k != "model_state_dict"}

    def saved(doc: Any) -> bytes:
        out = io.BytesIO()
        torch.save({**doc, "model_state_dict": content["model_state_dict"]} if isinstance(doc, dict) else doc, out)
        return out.getvalue()

    return st.one_of(binary(path), json_faults(record, saved))


def checkpoint_faults(content: dict[str, Any]) -> Callable[[Path], st.SearchStrategy[Fault]]:
    """Bytes of the file, any non-tensor field (model_config included) of any type, a weight dropped, reshaped or NaN."""
    record = {k: v for k, v in content.items() if k != "model_state"}

    def saved(doc: Any, state: dict[str, torch.Tensor] | None = None) -> bytes:
        out = io.BytesIO()
        body = {**doc, "model_state": content["model_state"] if state is None else state} if isinstance(doc, dict) else doc
        torch.save({"format": "lvm-checkpoint/1", **body} if isinstance(body, dict) else body, out)
        return out.getvalue()

    def weights(name: str, how: str) -> Fault:
        state = dict(content["model_state"])
        if how == "dropped":
            del state[name]
        elif how == "reshaped":
            state[name] = torch.zeros(*state[name].shape[:-1], state[name].shape[-1] + 1)
        else:
            state[name] = torch.full_like(state[name], float("nan"))
        data = saved(record, state)
        return Fault("weights", f"weight {how}", lambda p: p.write_bytes(data))

    def strategy(path: Path) -> st.SearchStrategy[Fault]:
        return st.one_of(
            binary(path),
            json_faults(record, saved),
            st.tuples(st.sampled_from(sorted(content["model_state"])), st.sampled_from(["dropped", "reshaped", "NaN"])).map(lambda t: weights(*t)),
        )

    return strategy


TARGETS = [
    Target("payload manifest.json", lambda w: w.bank["payload"], "manifest.json", lambda p, w: load_payload(p, check_finite=False), json_file),
    Target("payload texts.jsonl", lambda w: w.bank["payload"], "texts.jsonl", lambda p, w: load_payload(p, check_finite=False), jsonl_file),
    Target("payload vectors.npy", lambda w: w.bank["payload"], "vectors.npy", lambda p, w: load_payload(p, check_finite=False), npy_file),
    Target("payload keys.npy", lambda w: w.bank["payload"], "keys.npy", lambda p, w: load_payload(p, check_finite=False), npy_file),
    Target("eval set (ours)", lambda w: w.bank["eval"], None, lambda p, w: read_rows(p, expected_dim=DIM, check_finite=False), npz_file),
    Target("windows spec", lambda w: w.bank["train"], None, lambda p, w: read_training_rows(p, w.payload), json_file),
    Target("source vectors .npz", lambda w: w.public["source_vectors"], None, lambda p, w: read_layout_payload(p, check_finite=False), npz_file),
    Target("payload pickle .npy", lambda w: w.public["payload_pickle"], None, lambda p, w: read_layout_payload(p, allow_pickle=True, check_finite=False), binary),
    Target("sequences v1", lambda w: w.public["sequences v1"], None, lambda p, w: read_rows(p, allow_pickle=True, check_finite=False), npz_file),
    Target("eval v3", lambda w: w.public["eval v3"], None, lambda p, w: read_rows(p, allow_pickle=True, check_finite=False), npz_file),
    Target("eval v2", lambda w: w.public["eval v2"], None, lambda p, w: read_rows(p, allow_pickle=True, check_finite=False), npz_file),
    Target("checkpoint", lambda w: w.files["checkpoint"], None, lambda p, w: from_checkpoint(p, DIM), None),  # faults from the workspace
    Target("predictions", lambda w: w.files["predictions"], None, lambda p, w: from_predictions(p, w.eval_set), npz_file),
    Target("predictions provenance", lambda w: w.files["predictions"], None, lambda p, w: from_predictions(p, w.eval_set), predictions_provenance),
    Target("foreign checkpoint record", lambda w: w.files["foreign checkpoint"], None, lambda p, w: read_foreign_record(p), foreign_checkpoint),
    Target("history.json (gate)", lambda w: w.files["history"], None, lambda p, w: read_history(p), json_file),
    Target("history.json (resume)", lambda w: w.files["history"], None, lambda p, w: read_history(p, complete=True), json_file),
    Target("FAISS index", lambda w: w.files["index"], None, lambda p, w: load_index(p, expected_dim=DIM), binary),
    Target("exported program (.pt2)", lambda w: w.files["program"], None, run_program, binary),
]


def scratch_copy(artifact: Path, into: Path) -> Path:
    target = into / artifact.name
    if artifact.is_dir():
        shutil.copytree(artifact, target)
    else:
        shutil.copy2(artifact, target)
    return target


def assert_one_line(error: ArtifactError, broken: Path, artifact: Path) -> None:
    message = str(error)
    assert "\n" not in message and "Traceback" not in message, message
    assert error.path is not None and (Path(error.path) == broken or Path(error.path) == artifact or artifact in Path(error.path).parents), \
        f"the error names {error.path}, not the broken file {broken}: {message}"


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@FAULT_SETTINGS
@given(data=st.data())
def test_every_loader_gives_one_line_or_loads(workspace: Workspace, target: Target, data: st.DataObject) -> None:
    healthy = target.broken_file(target.artifact(workspace))
    strategy = target.faults or checkpoint_faults(workspace.checkpoint_content)
    fault = data.draw(strategy(healthy), label="fault")
    with tempfile.TemporaryDirectory() as scratch:
        artifact = scratch_copy(target.artifact(workspace), Path(scratch))
        broken = target.broken_file(artifact)
        fault.apply(broken)
        before = listing(Path(scratch))
        try:
            target.load(artifact, workspace)
            outcome = "loaded"
        except ArtifactError as error:
            assert_one_line(error, broken, artifact)
            outcome = "one-line error"
        assert listing(Path(scratch)) == before, "a loader wrote beside the artifact"
    TALLY[(target.name, fault.category, fault.kind, outcome)] += 1


# ---- code in a pickle never runs ---------------------------------------------------------------------

def hostile_pickle(sentinel: Path, how: str) -> bytes:
    """A pickle whose loading would create `sentinel`, by one of several routes."""
    if how == "os.system":
        class System:
            def __reduce__(self):
                return (os.system, (f"touch {sentinel}",))
        return pickle.dumps(System(), protocol=2)
    if how == "exec":
        class Exec:
            def __reduce__(self):
                return (exec, (f"open({str(sentinel)!r}, 'w')",))
        return pickle.dumps(Exec(), protocol=4)
    if how == "nested":
        inner = pickle.dumps(WritesAFile(str(sentinel)))
        class Nested:
            def __reduce__(self):
                return (pickle.loads, (inner,))
        return pickle.dumps(Nested(), protocol=3)
    return pickle.dumps(WritesAFile(str(sentinel)), protocol=5)


def object_npy(path: Path, body: bytes) -> None:
    path.write_bytes(npy_header_bytes({"descr": "|O", "fortran_order": False, "shape": ()}) + body)


@pytest.mark.parametrize("how", ["os.system", "exec", "nested", "open"])
def test_no_pickle_runs_code_even_with_allow_pickle(tmp_path: Path, workspace: Workspace, how: str) -> None:
    sentinel = tmp_path / "ran"
    body = hostile_pickle(sentinel, how)
    object_npy(tmp_path / "payload.npy", body)
    with pytest.raises(ArtifactError, match="refuses to unpickle") as error:
        read_layout_payload(tmp_path / "payload.npy", allow_pickle=True)
    assert "\n" not in str(error.value)
    members = npz_members_of(workspace.public["eval v3"])
    with zipfile.ZipFile(tmp_path / "eval.npz", "w") as archive:
        for name, value in members.items():
            if name != "provenance":
                archive.writestr(f"{name}.npy", npy_bytes(value))
        archive.writestr("provenance.npy", npy_header_bytes({"descr": "|O", "fortran_order": False, "shape": (1,)}) + body)
    with pytest.raises(ArtifactError, match="refuses to unpickle"):
        read_rows(tmp_path / "eval.npz", allow_pickle=True)
    code = importers_main(["payload", str(tmp_path / "payload.npy"), str(tmp_path / "out"), "--allow-pickle"])
    assert code == 2 and not (tmp_path / "out").exists()
    assert not sentinel.exists(), f"code from the pickle ran ({how})"


def test_os_system_named_in_a_legacy_payload_is_refused_and_a_benign_one_loads_with_its_texts(tmp_path: Path, workspace: Workspace) -> None:
    benign = read_layout_payload(workspace.public["payload_pickle"], allow_pickle=True)
    assert benign.count > 0 and benign.texts is not None and len(benign.texts) == benign.count and benign.texts[0]
    sentinel = tmp_path / "ran"
    object_npy(tmp_path / "payload.npy", hostile_pickle(sentinel, "os.system"))
    with pytest.raises(ArtifactError, match=r"refuses to unpickle (posix|os|nt)\.system"):
        read_layout_payload(tmp_path / "payload.npy", allow_pickle=True)
    assert not sentinel.exists()


def npy_header_bytes(header: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue()


# ---- the CLIs: exit 2, one line, nothing written ------------------------------------------------------

CLI_TARGETS = [
    ("importers payload (source vectors)", "source_vectors", lambda src, out: ["payload", str(src), str(out)]),
    ("importers payload (pickle)", "payload_pickle", lambda src, out: ["payload", str(src), str(out), "--allow-pickle"]),
    ("importers rows (eval v3)", "eval v3", lambda src, out: ["rows", str(src), str(out / "eval.npz"), "--allow-pickle"]),
    ("importers rows (sequences v1)", "sequences v1", lambda src, out: ["rows", str(src), str(out / "eval.npz")]),
]


@pytest.mark.parametrize("name, source, argv", CLI_TARGETS, ids=[c[0] for c in CLI_TARGETS])
@FAULT_SETTINGS
@given(data=st.data())
def test_importer_cli_refuses_in_one_line_and_writes_nothing(workspace: Workspace, capsys, name: str, source: str, argv, data) -> None:
    healthy = workspace.public[source]
    strategy = binary(healthy) if healthy.suffix == ".npy" else npz_file(healthy)
    fault = data.draw(strategy, label="fault")
    with tempfile.TemporaryDirectory() as scratch:
        broken = scratch_copy(healthy, Path(scratch))
        fault.apply(broken)
        out = Path(scratch) / "out"
        capsys.readouterr()
        code = importers_main(argv(broken, out))
        captured = capsys.readouterr()
        if code == 0:
            outcome = "converted"
        else:
            assert code == 2, captured.err
            lines = captured.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
            assert not out.exists() or not any(out.iterdir()), f"a refused import wrote {sorted(listing(out))}"
            outcome = "one-line error"
    TALLY[(name, fault.category, fault.kind, outcome)] += 1


@FAULT_SETTINGS
@given(data=st.data())
def test_fingerprint_cli_refuses_a_broken_eval_set_in_one_line(workspace: Workspace, capsys, data) -> None:
    fault = data.draw(npz_file(workspace.bank["eval"]), label="fault")
    with tempfile.TemporaryDirectory() as scratch:
        broken = scratch_copy(workspace.bank["eval"], Path(scratch))
        fault.apply(broken)
        capsys.readouterr()
        code = predictions_main(["fingerprint", str(broken)])
        captured = capsys.readouterr()
    if code != 0:
        assert code == 2 and len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("error: "), captured.err
    TALLY[("predictions fingerprint CLI", fault.category, fault.kind, "printed" if code == 0 else "one-line error")] += 1


# ---- not a file at all: a directory, a symlink loop, a dangling link ---------------------------------

SPECIAL = {
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "symlink loop": (lambda p: p.symlink_to(p), "symlink loop"),
    "dangling symlink": (lambda p: p.symlink_to(p.with_name("gone")), "dangling symlink"),
    "fifo": (lambda p: os.mkfifo(p), "not a regular file"),
}


@pytest.mark.parametrize("special", sorted(SPECIAL))
@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_a_path_that_is_not_a_file_is_named_for_what_it_is(workspace: Workspace, tmp_path: Path, target: Target, special: str) -> None:
    make, words = SPECIAL[special]
    artifact = scratch_copy(target.artifact(workspace), tmp_path)
    broken = target.broken_file(artifact)
    broken.unlink()
    make(broken)
    try:
        target.load(artifact, workspace)
    except ArtifactError as error:
        assert_one_line(error, broken, artifact)
        assert words in str(error), str(error)
        TALLY[(target.name, "not a file", special, "one-line error")] += 1
        return
    pytest.fail(f"{target.name}: a {special} where {broken.name} belongs was read without an error")


# ---- the ingest CLI: inputs and options that cannot work, one line, nothing written -------------------

def ingest_files(root: Path) -> dict[str, Path]:
    """The inputs the ingest cases point at, written under `root` (none reaches the encoder)."""
    folder, one_doc = root / "docs", root / "one"
    folder.mkdir()
    one_doc.mkdir()
    (folder / "a.txt").write_text("A sentence. " * 40)
    (folder / "b.txt").write_bytes(b"bad \xff\xfe bytes")
    (one_doc / "a.txt").write_text("Only one short document.")
    (root / "bad.jsonl").write_bytes(b'{"text": "ok"}\nnot json\n')
    (root / "list.jsonl").write_text('["a list"]\n')
    (root / "binary.jsonl").write_bytes(b"\xff\xfe\x00\x01")
    (root / "loop").symlink_to(root / "loop")
    (root / "a-file").write_text("x")
    return {"root": root, "folder": folder, "one_doc": one_doc}


def good(f: dict[str, Path]) -> list[str]:
    return ["--source", "folder", "--input", str(f["one_doc"])]


# each way an ingest input can be wrong: argv (from the files of `ingest_files`) and the expected words; the one table the test runs
INGEST_CASES: dict[str, tuple[Callable[[dict[str, Path]], list[str]], str]] = {
    "folder with a non-UTF-8 file": (lambda f: ["--source", "folder", "--input", str(f["folder"])], "b.txt: is not UTF-8 text"),
    "missing folder": (lambda f: ["--source", "folder", "--input", str(f["root"] / "nope")], "input folder not found"),
    "a file as the folder": (lambda f: ["--source", "folder", "--input", str(f["root"] / "bad.jsonl")], "is a file, expected a folder"),
    "a symlink loop as the folder": (lambda f: ["--source", "folder", "--input", str(f["root"] / "loop")], "symlink loop"),
    "jsonl line not JSON": (lambda f: ["--source", "jsonl", "--input", str(f["root"] / "bad.jsonl")], "line 2 is not valid JSON"),
    "jsonl line not an object": (lambda f: ["--source", "jsonl", "--input", str(f["root"] / "list.jsonl")], "line 1 is not a JSON object"),
    "jsonl not UTF-8": (lambda f: ["--source", "jsonl", "--input", str(f["root"] / "binary.jsonl")], "is not UTF-8 text"),
    "a directory as the jsonl": (lambda f: ["--source", "jsonl", "--input", str(f["folder"])], "is a directory"),
    "too few documents for a split": (good, "give no window of 5 chunks"),
    "context 0": (lambda f: [*good(f), "--context", "0"], "--context 0: expected a context length from 1"),
    "context huge": (lambda f: [*good(f), "--context", "100000"], "--context 100000"),
    "chunk chars 0": (lambda f: [*good(f), "--chunk-chars", "0"], "--chunk-chars 0"),
    "budget NaN": (lambda f: [*good(f), "--budget-mib", "nan"], "--budget-mib nan"),
    "seed negative": (lambda f: [*good(f), "--seed", "-1"], "--seed -1"),
    "benchmark negative": (lambda f: [*good(f), "--benchmark", "-2"], "--benchmark -2"),
    "out is a file": (lambda f: [*good(f), "--out", str(f["root"] / "a-file")], "is a file, expected the output directory"),
}


@pytest.mark.parametrize("case", list(INGEST_CASES))
def test_ingest_cli_refuses_in_one_line_and_writes_nothing(tmp_path: Path, capsys, case: str) -> None:
    from lvmcore.ingest.__main__ import main as ingest_main

    make_argv, words = INGEST_CASES[case]
    argv = make_argv(ingest_files(tmp_path))
    out = tmp_path / "out"
    if "--out" not in argv:
        argv = [*argv, "--out", str(out)]
    try:
        code = ingest_main([*argv, "--no-progress"])
    except SystemExit as exit_:  # argparse-level refusals exit through parser.exit
        code = exit_.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], captured.err
    assert "Traceback" not in captured.out + captured.err and not out.exists()
    TALLY[("ingest CLI", "inputs and options", case, "one-line error")] += 1
