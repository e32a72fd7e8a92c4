"""Every relative link in the README and docs/ points at a file that exists (moved experiment folders included)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code blocks are not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_relative_links_resolve():
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken = [f"{page.relative_to(REPO)}: {target}" for page in pages for target in _relative_links(page)
              if not (page.parent / target.split("#")[0]).exists()]
    assert len(pages) > 10 and not broken, broken
