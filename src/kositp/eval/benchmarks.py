"""Readers for the public Korean benchmark files, in the layouts their authors publish.

The files are never copied into the project: `--benchmarks DIR` (or `$KOSITP_BENCHMARKS`) points at
a folder laid out like `../shared/data/benchmarks/` (see docs/evaluation.md for the expected paths).
Readers accept UTF-8 with or without BOM, CRLF line ends and trailing empty columns (the Question
Pair CSV ends every line with a comma), and name the file and line of anything they cannot read.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

from kositp.errors import KositpError

DEFAULT_BENCHMARKS = Path("../shared/data/benchmarks")

csv.field_size_limit(1 << 24)


def benchmarks_root(given: str | Path | None) -> Path:
    root = Path(given) if given else Path(os.environ.get("KOSITP_BENCHMARKS") or DEFAULT_BENCHMARKS)
    if not root.is_dir():
        raise KositpError(
            f"benchmark folder not found: {root} (pass --benchmarks DIR or set KOSITP_BENCHMARKS; "
            "see docs/evaluation.md for the layout)"
        )
    return root


def read_table(path: Path, required: list[str], delimiter: str | None = None) -> list[dict[str, str]]:
    """Rows of a TSV/CSV file as dicts keyed by its header; checks that `required` columns exist."""
    if not path.is_file():
        raise KositpError(f"benchmark file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KositpError(f"{path} is not UTF-8 text (byte {exc.start}); convert it with iconv") from None
    lines = text.splitlines()
    if not lines:
        raise KositpError(f"{path} is empty")
    if delimiter is None:
        delimiter = "\t" if "\t" in lines[0] else ","
    # The TSVs hold unbalanced quotes inside text (e.g. 10" 화면): read them literally.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(lines, delimiter=delimiter, quoting=quoting)
    header = [h.strip() for h in next(reader)]
    missing = [c for c in required if c not in header]
    if missing:
        raise KositpError(f"{path}: missing column(s) {', '.join(missing)}; the header is {header}")
    rows = []
    for number, cells in enumerate(reader, 2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) < len([h for h in header if h]):
            raise KositpError(f"{path}:{number}: {len(cells)} columns, expected {len(header)}")
        row = {name: cells[i] for i, name in enumerate(header) if name and i < len(cells)}
        row["_line"] = str(number)
        rows.append(row)
    return rows


def sample(items: list, limit: int | None, seed: int, key: str) -> list:
    """At most `limit` items: a seeded sample (the same for every model), kept in file order."""
    if not limit or len(items) <= limit:
        return items
    chosen = sorted(random.Random(f"{seed}:{key}").sample(range(len(items)), limit))
    return [items[i] for i in chosen]
