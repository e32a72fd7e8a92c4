"""Korean-aware metrics: morpheme ROUGE-L, token F1, exact match, chrF, keyword F1, accuracy, macro-F1.

Why morphemes: Korean attaches particles and endings to words (서울은, 서울이, 서울의), so whitespace
tokens almost never match between a prediction and a reference that mean the same thing, and
`rouge-score`'s default tokenizer drops every Hangul character (every Korean pair scores 0). We
tokenize with Kiwi (`kiwipiepy`) into morphemes, drop punctuation, and feed those tokens to the
real `rouge-score` implementation through its `tokenizer=` hook.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

# Kiwi's symbol tags: sentence-final marks, commas, brackets, ellipses, other symbols. They carry no
# content, so a missing full stop must not cost a point. Foreign words (SL), numbers (SN) and hanja
# (SH) stay.
_PUNCT_TAGS = frozenset({"SF", "SP", "SS", "SSO", "SSC", "SE", "SO", "SW", "SB", "W_EMOJI"})
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


def normalize(text: str) -> str:
    """NFC, collapse whitespace, strip, and drop surrounding quotes and a final full stop."""
    text = unicodedata.normalize("NFC", text or "")
    text = _SPACES.sub(" ", text).strip()
    text = text.strip("\"'“”‘’「」『』`")
    return text.rstrip(".。 ").strip()


@lru_cache(maxsize=65536)
def _morphemes_cached(text: str) -> tuple[str, ...]:
    tokens = _kiwi().tokenize(text)
    return tuple(t.form.lower() for t in tokens if t.tag not in _PUNCT_TAGS)


def morphemes(text: str) -> list[str]:
    """Kiwi morphemes of `text` (lower-cased, punctuation removed)."""
    text = unicodedata.normalize("NFC", text or "").strip()
    return list(_morphemes_cached(text)) if text else []


class KiwiTokenizer:
    """The `tokenizer=` object `rouge_score.RougeScorer` accepts: anything with `tokenize(text)`."""

    def tokenize(self, text: str) -> list[str]:
        return morphemes(text)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=KiwiTokenizer())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure over Kiwi morphemes (rouge-score's LCS implementation)."""
    if not morphemes(prediction) or not morphemes(reference):
        return 0.0
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def chrf(prediction: str, reference: str) -> float:
    """Sentence chrF (sacrebleu, character 6-grams, beta 2) on a 0-100 scale."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(prediction or "", [reference or ""]).score)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized strings are equal, ignoring spaces (띄어쓰기 varies freely in Korean)."""
    return float(normalize(prediction).replace(" ", "") == normalize(reference).replace(" ", ""))


def _f1_counts(pred_tokens: Sequence[str], ref_tokens: Sequence[str]) -> float:
    if not pred_tokens and not ref_tokens:
        return 1.0
    if not pred_tokens or not ref_tokens:
        return 0.0
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style bag-of-tokens F1, with Kiwi morphemes as the tokens (KorQuAD uses characters)."""
    return _f1_counts(morphemes(prediction), morphemes(reference))


def split_keywords(text: str) -> list[str]:
    """Keywords from a comma/semicolon/newline separated list, normalized and de-duplicated in order."""
    parts = re.split(r"[,;\n、，·]|\s-\s", text or "")
    seen: dict[str, None] = {}
    for part in parts:
        key = normalize(part.strip().lstrip("#-*•").strip()).replace(" ", "").lower()
        if key:
            seen.setdefault(key)
    return list(seen)


def keyword_f1(prediction: str, reference: str) -> float:
    """F1 between the predicted and gold keyword sets (a keyword matches when equal ignoring spaces)."""
    pred, gold = set(split_keywords(prediction)), set(split_keywords(reference))
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    common = len(pred & gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def accuracy(golds: Sequence, preds: Sequence) -> float:
    if len(golds) != len(preds):
        raise ValueError("golds and preds differ in length")
    return sum(g == p for g, p in zip(golds, preds, strict=True)) / len(golds) if golds else 0.0


def macro_f1(golds: Sequence, preds: Sequence, labels: Sequence | None = None) -> float:
    """Unweighted mean of per-class F1 (scikit-learn's `average="macro"`, zero_division=0).

    `labels` fixes the classes averaged over. Pass the gold label set to score invalid outputs as
    wrong: an invalid prediction is then a miss for its gold class (lower recall) and never a class
    of its own. Without `labels`, the classes are every label seen in golds or preds.
    """
    if len(golds) != len(preds):
        raise ValueError("golds and preds differ in length")
    if not golds:
        return 0.0
    classes = list(labels) if labels is not None else sorted(set(golds) | set(preds), key=str)
    scores = []
    for cls in classes:
        tp = sum(g == cls and p == cls for g, p in zip(golds, preds, strict=True))
        fp = sum(g != cls and p == cls for g, p in zip(golds, preds, strict=True))
        fn = sum(g == cls and p != cls for g, p in zip(golds, preds, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
