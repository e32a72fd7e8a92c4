"""Token ids -> text pieces that are safe to send: whole UTF-8 characters, stop sequences cut out.

Byte-level BPE splits a Hangul syllable (3 UTF-8 bytes) across tokens, so decoding token by token
yields U+FFFD halves. `IncrementalDecoder` decodes a short window of the id list and emits only
text that no later token can change (vLLM's prefix/read offset scheme). `StopMatcher` holds back
a tail that could still become a stop sequence, so a streamed reply never shows part of one.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Feed token ids one at a time; get back only the newly stable text."""

    def __init__(self, tokenizer, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0  # start of the window decoded for context
        self.read_offset = 0  # ids before this are already emitted

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(
            ids, skip_special_tokens=self.skip_special_tokens, clean_up_tokenization_spaces=False
        )

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full_text = self._decode(self.ids[self.prefix_offset :])
        if len(full_text) > len(prefix_text) and not full_text.endswith(REPLACEMENT):
            new_text = full_text[len(prefix_text) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return new_text
        return ""  # an incomplete character: wait for the token that completes it

    def flush(self) -> str:
        """What is left at the end. Generation cut off inside a character (max_tokens) leaves incomplete
        bytes: those are dropped, never sent as U+FFFD. Invalid bytes in the middle stay visible."""
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full_text = self._decode(self.ids[self.prefix_offset :]).rstrip(REPLACEMENT)
        self.prefix_offset = self.read_offset = len(self.ids)
        return full_text[len(prefix_text) :] if len(full_text) > len(prefix_text) else ""


class StopMatcher:
    """Cuts the output at the first stop sequence; in streams, holds back a possible partial match."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""  # everything produced so far
        self.sent = 0  # characters of `text` already released
        self.stopped = False

    def _held_back(self) -> int:
        """Length of the longest tail of `text` that is a proper prefix of some stop sequence."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def push(self, piece: str) -> str:
        """Add decoded text; return what may be released now. Sets `stopped` when a stop matched."""
        if self.stopped or not piece:
            return ""
        start = max(0, self.sent - max((len(s) for s in self.stops), default=0))
        self.text += piece
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            cut = min(hits)
            self.text = self.text[:cut]
            out = self.text[self.sent :]
            self.sent = len(self.text)
            return out
        release_to = len(self.text) - self._held_back()
        out = self.text[self.sent : release_to] if release_to > self.sent else ""
        self.sent = max(self.sent, release_to)
        return out

    def flush(self) -> str:
        """At the end of generation the held-back tail was not a stop after all: release it."""
        out = self.text[self.sent :]
        self.sent = len(self.text)
        return out
