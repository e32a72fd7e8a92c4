"""Plain Korean text (.txt files, or konlpy's bundled kolaw/kobill corpora) -> `Document`s.

Used for the text-only tasks (text completion, text composition). A file is cut into documents
of `chunk_sentences` sentences at paragraph boundaries, so one long law text gives many documents
that can land in different splits without sharing sentences.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from kositp.data.io import decode_text, iter_input_files
from kositp.data.schema import Document, Reject
from kositp.data.text import split_sentences
from kositp.errors import KositpError

KONLPY_PREFIX = "konlpy:"


def _konlpy_files(name: str) -> list[tuple[str, bytes]]:
    try:
        root = resources.files("konlpy") / "data" / "corpus" / name
        entries = sorted((e for e in root.iterdir() if e.name.endswith(".txt")), key=lambda e: e.name)
    except (ModuleNotFoundError, FileNotFoundError):
        raise KositpError(f"konlpy corpus '{name}' not found (is konlpy installed?)") from None
    return [(f"{KONLPY_PREFIX}{name}/{e.name}", e.read_bytes()) for e in entries]


def _files(path: str) -> Iterator[tuple[str, bytes] | Reject]:
    if path.startswith(KONLPY_PREFIX):
        for name in path[len(KONLPY_PREFIX):].split(","):
            yield from _konlpy_files(name.strip())
        return
    for file in iter_input_files(path):
        if isinstance(file, Reject):
            yield file
        elif file.name.lower().endswith(".txt"):
            with file.open() as fh:
                yield file.ref, fh.read()


def read_text(path: str, source: str, chunk_sentences: int = 8, **_: Any) -> Iterator[Document | Reject]:
    for entry in _files(path):
        if isinstance(entry, Reject):
            entry.source = source
            yield entry
            continue
        ref, data = entry
        text, reason = decode_text(data)
        if text is None:
            yield Reject(source, ref, reason or "bad_encoding")
            continue
        chunk: list[str] = []
        part = 0
        paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
        for k, para in enumerate(paragraphs):
            chunk.extend(split_sentences(para))
            if len(chunk) >= chunk_sentences or k == len(paragraphs) - 1:
                if chunk:
                    stem = Path(ref).stem
                    yield Document(source=source, doc_id=f"{stem}-{part}", ref=f"{ref}#chunk{part}",
                                   sentences=chunk, kind="text")
                    part += 1
                chunk = []
