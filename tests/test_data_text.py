"""DATA stage: the reader's fast text paths give exactly what the straightforward definitions give."""

from __future__ import annotations

import random
import unicodedata

from kositp.data.schema import Document, Passage
from kositp.data.text import clean, clean_keep_lines, split_clean_sentences, split_sentences

# Whitespace of every kind the raw corpora carry (tabs, NBSP, ideographic space, CR, form feed,
# Unicode line/paragraph separators), decomposed Hangul jamo and combining marks, sentence enders.
ALPHABET = ["가", "나", "한", "글", "a", "Z", "1", ".", "?", "!", "。", "？", " ", " ", "  ", "\t", "\n", "\r\n",
            "\r", "\xa0", "\u3000", "\x0c", "\u2028", "\u2029", "\x85", "\x1e", "\u1100\u1161", "e\u0301", "\u0301",
            "\u200b", "다.", "요?"]


def _reference_clean_keep_lines(text: str) -> str:
    """The definition: NFC the whole text, then `clean` each line, drop empty lines."""
    lines = (clean(line) for line in unicodedata.normalize("NFC", text).splitlines())
    return "\n".join(line for line in lines if line)


PRINTABLE = [t for t in ALPHABET if (t.replace(" ", "") or "a").isprintable()]  # spaces but no other whitespace


def _random_texts(n: int, seed: int = 0) -> list[str]:
    """Half from every token, half from printable tokens and spaces only (the fast paths' domain)."""
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET if i % 2 else PRINTABLE) for _ in range(rng.randint(0, 40)))
            for i in range(n)]


def test_clean_matches_its_definition():
    for text in _random_texts(3000, seed=2):
        assert clean(text) == " ".join(unicodedata.normalize("NFC", text).split()), repr(text)
    assert clean(None) == "" and clean(3) == "3" and clean({"a": 1}) == ""


def test_clean_keep_lines_matches_its_definition():
    for text in _random_texts(3000):
        assert clean_keep_lines(text) == _reference_clean_keep_lines(text), repr(text)
    assert clean_keep_lines(None) == "" and clean_keep_lines("  \n\t ") == ""


def test_split_clean_sentences_equals_split_sentences_on_cleaned_text():
    for text in _random_texts(3000, seed=1):
        cleaned = clean_keep_lines(text)
        assert split_clean_sentences(cleaned) == split_sentences(cleaned), repr(text)


def test_document_sentences_are_split_lazily_from_text_passages_only():
    doc = Document("s", "d", "ref", passages=[Passage("첫 문장이다. 둘째 문장이다!\n셋째 줄"),
                                              Passage("<table><tr><td>1</td></tr></table>", "html")])
    assert "_sentences" in doc.__dict__ and doc.__dict__["_sentences"] is None  # nothing split yet
    assert doc.sentences == ["첫 문장이다.", "둘째 문장이다!", "셋째 줄"]
    assert doc.text == "첫 문장이다. 둘째 문장이다! 셋째 줄"
    explicit = Document("s", "d", "ref", sentences=["하나.", "둘."], passages=[Passage("무시된다.")])
    assert explicit.sentences == ["하나.", "둘."]
    assert Document("s", "d", "ref").sentences == []
