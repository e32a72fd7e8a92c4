"""Korean text helpers: sentence splitting, HTML table handling, answer normalisation, checks."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

from kositp.data.task_names import NO, YES

# A sentence ends at . ? ! (or their full-width forms) followed by space, or at a newline.
# A period after a digit ("2. 국가는 ...", "제3항 1. ...") numbers a clause; it does not end a sentence.
_SENT_END = re.compile(r"(?<=[.?!。？！])(?<![0-9]\.)\s+|\n+")
_WS = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]+>")


def _already_clean(text: str) -> bool:
    """True when `" ".join(text.split()) == text`, checked without building the pieces.

    `isprintable()` is False for every whitespace character except the ASCII space (they are all
    Unicode "Other" or "Separator"), so a printable string's only whitespace is " "; with no double,
    leading or trailing space there is nothing to collapse. Cheaper than split/join on an already
    clean Korean paragraph, which is most of what the readers clean.
    """
    return text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "


def clean(text: object) -> str:
    """Unicode-normalised (NFC), whitespace-collapsed string; '' for None and non-strings."""
    if not isinstance(text, str):
        return "" if text is None or isinstance(text, (dict, list)) else str(text)
    if text.isascii():  # O(1); ids and codes: split/join is cheaper than the checks below
        return " ".join(text.split())
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text if _already_clean(text) else " ".join(text.split())


def clean_keep_lines(text: object) -> str:
    """Like `clean`, line by line: non-empty lines, each whitespace-collapsed, joined by newlines."""
    if not isinstance(text, str):
        return ""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if _already_clean(text):  # printable: no line breaks either, so one clean line
        return text
    # Pieces of an NFC string cut at line breaks are NFC, so each line needs only the whitespace collapse.
    raw_lines = text.splitlines()
    if len(raw_lines) == 1:  # a single paragraph: no generator, no second join
        return " ".join(raw_lines[0].split())
    lines = (" ".join(line.split()) for line in raw_lines)
    return "\n".join(line for line in lines if line)


def split_sentences(text: str) -> list[str]:
    """Split Korean prose into sentences (periods, question marks, newlines); empty pieces dropped."""
    return [s for s in (clean(p) for p in _SENT_END.split(text or "")) if s]


def split_clean_sentences(text: str) -> list[str]:
    """`split_sentences` for text that is already `clean_keep_lines` output (an MRC context).

    Such text has single spaces, no blank or space-padded lines and is NFC, so every piece the
    splitter cuts at whitespace is already clean: the per-sentence `clean` is skipped. The result
    equals `split_sentences(text)` (tested).
    """
    return [s for s in _SENT_END.split(text) if s]


def is_null(value: object) -> bool:
    """JSON null, an empty string, or the literal string "null" (D8 summary2/3)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none"))


def normalize_yes_no(text: str) -> str | None:
    """Map the raw Yes/No vocabularies ("Yes", "No", "예", "아니오", "O", ...) to 예/아니요."""
    key = clean(text).lower().rstrip(".")
    if key in {"yes", "y", "예", "네", "o", "true", "참", "맞음", "맞다"}:
        return YES
    if key in {"no", "n", "아니요", "아니오", "아니", "x", "false", "거짓", "틀림", "아니다"}:
        return NO
    return None


_HTML_TAG = re.compile(r"<\s*(table|tr|td|th|tbody|br|p|div)\b", re.I)


def looks_html(text: str) -> bool:
    return "<" in (text or "") and _HTML_TAG.search(text) is not None


class _TableParser(HTMLParser):
    """Collects table rows as lists of cell texts, plus text outside tables; tracks tag balance."""

    VOID = {"br", "img", "hr", "meta", "input", "col"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.outside: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._stack: list[str] = []
        self.balanced = True

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            if tag == "br" and self._cell is None:
                self.outside.append("\n")
            return
        self._stack.append(tag)
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self._stack or self._stack[-1] != tag:
            self.balanced = False
            if tag in self._stack:
                while self._stack and self._stack.pop() != tag:
                    pass
        else:
            self._stack.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(clean(" ".join(self._cell)))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        elif self._row is None:
            self.outside.append(data)


def parse_table(html: str) -> tuple[list[list[str]], str, bool]:
    """(rows of cell texts, text outside the table, tags balanced?) of an HTML context."""
    parser = _TableParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; a truly broken string still must not crash a build
        return [], clean(_TAG.sub(" ", html)), False
    balanced = parser.balanced and not parser._stack
    return parser.rows, clean("".join(parser.outside)), balanced


def linearize_table(html: str) -> str:
    """Cell-aware plain text of an HTML context (rows on lines, cells joined by ' | '), not get_text(), which glues cells together."""
    rows, outside, _ = parse_table(html)
    lines = [outside] if outside else []
    lines += [" | ".join(row) for row in rows if any(row)]
    return "\n".join(lines)


def table_cells(html: str) -> list[str]:
    rows, _, _ = parse_table(html)
    return [cell for row in rows for cell in row]


def locate(context: str, answer: str, hint: int | None) -> int | None:
    """The offset of `answer` in `context`: the given one if it matches, else the nearest occurrence."""
    if not answer:
        return None
    if isinstance(hint, int) and hint >= 0 and context[hint: hint + len(answer)] == answer:
        return hint
    first = context.find(answer)
    if first < 0:
        return None
    starts = [first]
    while (nxt := context.find(answer, starts[-1] + 1)) >= 0:
        starts.append(nxt)
    if not starts:
        return None
    ref = hint if isinstance(hint, int) and hint >= 0 else 0
    return min(starts, key=lambda s: abs(s - ref))


def to_int(value: object) -> int | None:
    """Offsets arrive as int, str ("43"), None or -1."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if value >= 0 else None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
        return number if number >= 0 else None
    return None


# Deictic or document-bound wording that makes a question unanswerable without its passage.
_DEICTIC = re.compile(
    r"(^|\s)(이|위|아래|해당|본|다음|상기|그)\s?(글|사업|표|기사|문서|자료|연구|논문|법|조항|내용|기관|제도|정책|사람|단체|회사|지역|책|장)"
    r"|위의|윗글|본문|지문|이번|올해|작년|지난해|내년|이달|지난달|다음 달|어제|오늘|내일|현재|최근"
)


def is_self_contained(question: str) -> bool:
    """Heuristic for closed-book QA: no deictic or time-relative reference to an unseen passage."""
    return not _DEICTIC.search(question)


def masked_ratio(text: str) -> float:
    """Share of '*' characters: the masks a corpus put over its own personal data (the build's
    `masked_pii` check; personal data the build finds itself is `kositp.data.pii`'s job)."""
    return text.count("*") / max(1, len(text))


def dedup_key(text: str) -> str:
    """Exact-duplicate key: NFC, case-folded, whitespace and punctuation removed."""
    text = unicodedata.normalize("NFC", text).casefold()
    return re.sub(r"[\s\W_]+", "", text)
