"""Split a document into chunks of about N characters at sentence boundaries.

Chunks are what the payload bank holds, one vector each, so they should be whole sentences (an
encoder reads a cut sentence badly) and of similar length (so one chunk is one "step" of a
document). Greedy packing: sentences are appended to the current chunk while it stays within
`limit` characters. A sentence longer than `limit` becomes a chunk of its own; only one longer
than `2 * limit` is hard-split, at spaces where possible. Whitespace runs become one space; no
other character is added, dropped or reordered.
"""

from __future__ import annotations

import re

DEFAULT_CHUNK_CHARS = 600

# A sentence ends at . ! or ? (with any closing quotes or brackets) followed by whitespace and
# then something that can start a sentence. A newline always ends a sentence (paragraphs, list items).
SENTENCE_END = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr vs etc gen sen rep gov col lt capt prof rev hon no fig vol ca approx u.s e.g i.e".split()
)


def normalize_whitespace(text: str) -> str:
    """Collapse every whitespace run to one space and strip the ends."""
    return " ".join(text.split())


def ends_with_abbreviation(sentence: str) -> bool:
    """True when the text ends in a known abbreviation ("Mr.", "U.S.") or a single initial ("J.")."""
    last = sentence.rsplit(" ", 1)[-1].rstrip(".").lstrip("(\"'").lower()
    return last in ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace-normalised; newlines are boundaries too."""
    sentences: list[str] = []
    for line in text.splitlines():
        line = normalize_whitespace(line)
        start = 0
        for match in SENTENCE_END.finditer(line):
            end = match.end(1)
            candidate = line[start:end]
            if ends_with_abbreviation(candidate):
                continue
            sentences.append(candidate.strip())
            start = match.end()
        tail = line[start:].strip()
        if tail:
            sentences.append(tail)
    return [s for s in sentences if s]


def hard_split(sentence: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at the last space before the limit when there is one."""
    pieces: list[str] = []
    rest = sentence
    while len(rest) > limit:
        cut = rest.rfind(" ", 1, limit + 1)
        if cut <= 0:
            pieces.append(rest[:limit])
            rest = rest[limit:]
        else:
            pieces.append(rest[:cut])
            rest = rest[cut + 1 :]
    if rest:
        pieces.append(rest)
    return pieces


def chunk_text(text: str, limit: int = DEFAULT_CHUNK_CHARS) -> list[str]:
    """Greedy sentence packing into chunks of at most `limit` characters (2 * limit for one long sentence).

    Joining the chunks with single spaces gives back `normalize_whitespace(text)`, except where a
    word longer than `limit` had to be cut (then only a space is added inside it).
    """
    if limit < 1:
        raise ValueError(f"chunk limit must be positive, got {limit}")
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        if len(sentence) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.extend(hard_split(sentence, limit) if len(sentence) > 2 * limit else [sentence])
        elif not current:
            current = sentence
        elif len(current) + 1 + len(sentence) <= limit:
            current = f"{current} {sentence}"
        else:
            chunks.append(current)
            current = sentence
    if current:
        chunks.append(current)
    return chunks
