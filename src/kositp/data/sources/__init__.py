"""Source adapters, one per raw format; `FORMATS` is the registry `kositp data formats` lists.

Every reader has the signature `read(path, source, **options)` and yields `Document`s (raw corpora
that the task builders turn into instructions), ready `InstructionRecord`s / `PreferenceRecord`s
(instruction and preference sets), and `Reject`s (with a reason) for anything unusable.
`register_format` adds a reader of one's own (a house format) beside the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial


@dataclass(frozen=True)
class SourceFormat:
    name: str
    description: str
    reader: Callable
    emits: str  # "documents" | "instructions" | "preferences"


def _formats() -> dict[str, SourceFormat]:
    from kositp.data.sources.aihub_mrc import read_mrc, read_table
    from kositp.data.sources.aihub_summary import read_summary
    from kositp.data.sources.chat_sets import read_chat_set
    from kositp.data.sources.kisti import read_kisti
    from kositp.data.sources.korquad import read_korquad
    from kositp.data.sources.plain_text import read_text
    from kositp.data.sources.seed import read_seed

    entries = [
        SourceFormat("aihub-mrc", "AIHub MRC family: 기계독해, 뉴스/행정/도서/기술과학 기계독해 (span, how, multiple "
                     "choice, yes/no, table, unanswerable; answers as list or object); reads KorQuAD/SQuAD "
                     "files as plain span QA", read_mrc, "documents"),
        SourceFormat("korquad", "KorQuAD 1.0 / SQuAD v1 (data[{title, paragraphs}]), read by the aihub-mrc parser, "
                     "plus evidence sentences, multiple choice from the article's other answers, unanswerable "
                     "questions asked of another article, titles without '(...)'", read_korquad, "documents"),
        SourceFormat("aihub-table", "AIHub 표 정보 질의응답 (HTML tables, table_title, singular answer)", read_table,
                     "documents"),
        SourceFormat("aihub-summary", "AIHub 문서요약 텍스트, 요약문 및 레포트 생성, 도서자료 요약, 논문자료 요약, "
                     "한국어 대화 요약 (one speaker turn per line)", read_summary, "documents"),
        SourceFormat("kisti", "KISTI 국내 논문 전문 텍스트 and 국내 논문 QA", read_kisti, "documents"),
        SourceFormat("text", "plain Korean .txt files, or konlpy:kolaw / konlpy:kobill", read_text, "documents"),
        SourceFormat("kositp", 'seed format {"input", "output", "Task_name"} (22 task names, any spelling)',
                     read_seed, "instructions"),
        SourceFormat("alpaca", "instruction/input/output rows (JSON, JSONL, Parquet or hf:ID)",
                     partial(read_chat_set, fmt="alpaca"), "instructions"),
        SourceFormat("sharegpt", "conversations [{from, value}] rows", partial(read_chat_set, fmt="sharegpt"),
                     "instructions"),
        SourceFormat("messages", "messages [{role, content}] rows", partial(read_chat_set, fmt="messages"),
                     "instructions"),
        SourceFormat("preference", "prompt/chosen/rejected rows (strings or message lists)",
                     partial(read_chat_set, fmt="preference"), "preferences"),
    ]
    return {f.name: f for f in entries} | _REGISTERED


FORMAT_NAMES = ("aihub-mrc", "korquad", "aihub-table", "aihub-summary", "kisti", "text", "kositp", "alpaca", "sharegpt",
                "messages", "preference")
EMITS = ("documents", "instructions", "preferences")
_REGISTERED: dict[str, SourceFormat] = {}


def register_format(name: str, reader: Callable, emits: str = "documents", description: str = "") -> SourceFormat:
    """Make `format: NAME` in a build's sources read with `reader(path, source, **options)`."""
    from kositp.errors import KositpError

    if name in FORMAT_NAMES:
        raise KositpError(f"source format '{name}' is built in; register yours under another name")
    if emits not in EMITS:
        raise KositpError(f"emits must be one of {', '.join(EMITS)}, not '{emits}'")
    _REGISTERED[name] = SourceFormat(name, description or (reader.__doc__ or name).strip().splitlines()[0], reader, emits)
    return _REGISTERED[name]


def format_names() -> tuple[str, ...]:
    """The built-in formats, then the registered ones."""
    return FORMAT_NAMES + tuple(_REGISTERED)


def get_format(name: str) -> SourceFormat:
    from kositp.errors import KositpError

    formats = _formats()
    if name not in formats:
        raise KositpError(f"unknown source format '{name}'; choose one of: {', '.join(format_names())}")
    return formats[name]


def all_formats() -> dict[str, SourceFormat]:
    return _formats()
