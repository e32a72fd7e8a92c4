"""Pick a Hangul-capable font for matplotlib when one is installed (fonts-nanum, Noto CJK, UnDotum).

Chart labels are ASCII task ids, so charts stay readable without one; with one, Korean labels that
users add (model names, run names) render instead of showing empty boxes.
"""

from __future__ import annotations

from functools import lru_cache

HANGUL_FONTS = ("NanumGothic", "NanumBarunGothic", "Noto Sans CJK KR", "Noto Sans KR", "UnDotum", "Malgun Gothic")


@lru_cache(maxsize=1)
def use_hangul_font() -> str | None:
    import matplotlib
    from matplotlib import font_manager

    available = {f.name for f in font_manager.fontManager.ttflist}
    for name in HANGUL_FONTS:
        if name in available:
            matplotlib.rcParams["font.family"] = [name, "DejaVu Sans"]
            matplotlib.rcParams["axes.unicode_minus"] = False  # Hangul fonts often lack U+2212
            return name
    return None
