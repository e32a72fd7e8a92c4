"""Chat templates: the one source of truth for training, export, serving and evaluation.

A model is trained, exported, served and evaluated with the same `ChatFormat`. Training needs
`{% generation %}` markers so that only assistant tokens (including the end-of-turn token) carry
loss; serving and export need the end-of-turn token ids so generation stops where training taught
it to. Both come from here.

Resolution order (`resolve_chat_format`):
1. an explicit name (`chatml`, `gemma`) wins;
2. a template the tokenizer already has is recognised by its markers and replaced by our
   marked copy of the same family (identical text, plus generation markers);
3. a foreign template that already has generation markers is used as is;
4. otherwise ChatML.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from kositp.errors import KositpError

CHAT_FORMAT_FILE = "kositp_chat.json"

# ChatML, as Qwen and many Korean fine-tunes use it. `{% generation %}` wraps the assistant text
# and its <|im_end|>, so the model learns to stop.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

# Gemma 3's own template (system text is prefixed to the first user turn; the assistant role is
# called "model"), with generation markers around the model turn and its <end_of_turn>.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<start_of_turn>model\n' }}{% generation %}{{ message['content'] | trim }}{{ '<end_of_turn>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + message['role'] + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class ChatFormat:
    """A named chat template plus the tokens that end an assistant turn."""

    name: str
    template: str
    end_of_turn: tuple[str, ...]  # every token that ends a reply; the first is the turn delimiter
    markers: tuple[str, ...]  # substrings that identify this family in a foreign template
    special_tokens: tuple[str, ...] = ()  # turn markers that must tokenize as one id, never as text

    @property
    def has_generation_markers(self) -> bool:
        return "{% generation %}" in self.template


CHATML = ChatFormat(
    "chatml", CHATML_TEMPLATE, ("<|im_end|>", "<|endoftext|>"), ("<|im_start|>",), ("<|im_start|>", "<|im_end|>")
)
GEMMA = ChatFormat(
    "gemma", GEMMA_TEMPLATE, ("<end_of_turn>", "<eos>"), ("<start_of_turn>",), ("<start_of_turn>", "<end_of_turn>")
)
FORMATS: dict[str, ChatFormat] = {f.name: f for f in (CHATML, GEMMA)}


def _family_of_vocab(tokenizer) -> ChatFormat | None:
    vocab = tokenizer.get_vocab()
    for fmt in FORMATS.values():
        if all(marker in vocab for marker in fmt.markers):
            return fmt
    return None


def resolve_chat_format(tokenizer, name: str = "auto") -> ChatFormat:
    """Pick the chat format for `tokenizer` (see the module docstring for the order)."""
    if name != "auto":
        if name not in FORMATS:
            raise KositpError(f"unknown chat format '{name}'; choose one of: auto, {', '.join(FORMATS)}")
        return FORMATS[name]
    native = getattr(tokenizer, "chat_template", None)
    if isinstance(native, str) and native:
        for fmt in FORMATS.values():
            if all(marker in native for marker in fmt.markers):
                return fmt
        if "{% generation %}" in native or "{%- generation %}" in native:
            return ChatFormat("native", native, tuple(t for t in [tokenizer.eos_token] if t), ())
    # No template (e.g. a GGUF-converted base model): the vocabulary still tells the family.
    return _family_of_vocab(tokenizer) or CHATML


def apply_chat_format(tokenizer, fmt: ChatFormat) -> ChatFormat:
    """Install `fmt` on `tokenizer`: template, atomic turn tokens, and a pad token distinct from eos.

    A GGUF-converted Gemma tokenizer has <start_of_turn> in its vocabulary but splits the text
    "<start_of_turn>" into characters; registering it as special (same id) makes it atomic.
    """
    already_special = set(tokenizer.all_special_tokens)
    needed = [t for t in fmt.special_tokens if t not in already_special]
    if needed:
        tokenizer.add_special_tokens({"additional_special_tokens": needed}, replace_extra_special_tokens=False)
    tokenizer.chat_template = fmt.template
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # pad == eos would mask every end token out of the loss: the model would never learn to stop.
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return fmt


def end_of_turn_ids(tokenizer, fmt: ChatFormat) -> list[int]:
    """Token ids that end a reply: the format's end-of-turn tokens that exist, then eos."""
    vocab = tokenizer.get_vocab()
    ids = [vocab[t] for t in fmt.end_of_turn if t in vocab]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise KositpError(f"tokenizer has none of the end-of-turn tokens of chat format '{fmt.name}'")
    return ids


class ChatFormatRecord(BaseModel):
    """kositp_chat.json, written beside every saved tokenizer (training, export, the built-in models)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    template: str
    end_of_turn: list[str]
    markers: list[str]
    special_tokens: list[str] = []  # absent in older records: a known family's tokens are implied
    end_of_turn_ids: list[int] = []

    def chat_format(self) -> ChatFormat:
        special = self.special_tokens or list(getattr(FORMATS.get(self.name), "special_tokens", ()))
        return ChatFormat(self.name, self.template, tuple(self.end_of_turn), tuple(self.markers), tuple(special))


def save_chat_format(tokenizer, fmt: ChatFormat, directory: str | Path) -> None:
    """Record the format beside a saved tokenizer so every later stage uses the same one."""
    record = ChatFormatRecord(**asdict(fmt), end_of_turn_ids=end_of_turn_ids(tokenizer, fmt))
    Path(directory, CHAT_FORMAT_FILE).write_text(record.model_dump_json(indent=2), encoding="utf-8")


def load_chat_format(directory: str | Path, tokenizer) -> ChatFormat:
    """The format a model directory was trained with, else what its tokenizer implies."""
    path = Path(directory, CHAT_FORMAT_FILE)
    if not path.is_file():
        return resolve_chat_format(tokenizer)
    try:
        return ChatFormatRecord.model_validate_json(path.read_bytes()).chat_format()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(record)"
        raise KositpError(f"{path} is not a valid chat format record: {where}: {first['msg']}") from None


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The prompt text for `messages`, exactly as training formatted it."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


# --------------------------------------------------------------------------- control tokens in content

# Strings that are control tokens in every chat format kositp knows, whatever the tokenizer: the
# data build refuses records that contain them (a tokenizer-independent check, before any model).
KNOWN_CONTROL_STRINGS: tuple[str, ...] = tuple(sorted(
    {t for f in FORMATS.values() for t in (*f.special_tokens, *f.end_of_turn)}
    | {"<bos>", "<pad>", "<|pad|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
       "<|end_header_id|>"},
    key=lambda t: (-len(t), t)))

_control_patterns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def control_strings(tokenizer) -> list[str]:
    """Every string this tokenizer turns into one special token (turn markers, BOS, EOS, pad, ...)."""
    found = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    found |= {t for t in getattr(tokenizer, "all_special_tokens", []) if t}
    return sorted(found, key=lambda t: (-len(t), t))


def _control_pattern(tokenizer) -> re.Pattern | None:
    """One regex matching any control string (longest first), cached per tokenizer object."""
    try:
        return _control_patterns[tokenizer]
    except (KeyError, TypeError):
        pass
    strings = control_strings(tokenizer)
    pattern = re.compile("|".join(map(re.escape, strings))) if strings else None
    with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced: recompute next time
        _control_patterns[tokenizer] = pattern
    return pattern


@functools.lru_cache(maxsize=8)
def _alternation(strings: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, sorted(strings, key=len, reverse=True))))


def find_control_strings(text: str, strings: tuple[str, ...] = KNOWN_CONTROL_STRINGS) -> list[str]:
    """The control strings that occur in `text` (each once, in `strings` order)."""
    if not strings:
        return []
    found = set(_alternation(strings).findall(text))
    return [s for s in strings if s in found]


def encode_prompt(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of `messages` in the tokenizer's chat template, with message content always read as text.

    The template's own markers (`<|im_start|>`, `<end_of_turn>`, BOS, ...) are control tokens; the same
    strings inside a message are tokenized as plain text, so a user cannot forge a turn boundary. For
    content without such strings the ids are exactly those of the rendered prompt tokenized as a
    whole, which is what training does. Every path that turns messages into prompt ids (serving,
    evaluation) goes through here.
    """
    pattern = _control_pattern(tokenizer)
    forged: dict[str, str] = {}
    nonce = secrets.token_hex(8)

    def hide(match: re.Match) -> str:
        # A placeholder the template passes through untouched (no whitespace at its ends, no markup).
        key = f"\u27e6{nonce}.{len(forged)}\u27e7"
        forged[key] = match.group(0)
        return key

    safe = []
    for message in messages:
        content = message.get("content")
        if pattern is not None and isinstance(content, str):
            message = {**message, "content": pattern.sub(hide, content)}
        safe.append(message)
    text = tokenizer.apply_chat_template(safe, tokenize=False, add_generation_prompt=add_generation_prompt)
    if not forged:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    # Cut the prompt at the template's markers (only those remain as control strings), put the
    # content's strings back into the text between them, and tokenize that text with special
    # tokens disabled. The tokenizer itself splits text at special tokens before its pre-tokenizer,
    # so the text around the markers tokenizes exactly as it would in the whole prompt.
    restore = re.compile("|".join(map(re.escape, forged)))
    ids: list[int] = []
    position = 0
    for marker in pattern.finditer(text):
        ids += _text_ids(tokenizer, text[position:marker.start()], restore, forged)
        ids.append(tokenizer.convert_tokens_to_ids(marker.group(0)))
        position = marker.end()
    ids += _text_ids(tokenizer, text[position:], restore, forged)
    return ids


def _text_ids(tokenizer, text: str, restore: re.Pattern, forged: dict[str, str]) -> list[int]:
    if not text:
        return []
    text = restore.sub(lambda m: forged[m.group(0)], text)
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
