"""`kositp data build`: raw sources -> instruction (+ preference) JSONL, rejects and a dataset card.

Pipeline (one streaming pass, then a cheap second pass over a spool file):
1. every source adapter yields Documents / ready records / rejects;
2. Documents go through the 22 task builders; examples are rendered with a template chosen by a
   stable hash of (seed, task, record key);
3. each candidate is checked (empty answer, chat-template control tokens in content, target
   quality by task: `kositp.data.quality`), has its personal data masked, dropped or counted
   (`kositp.data.pii`), is rejected when the source had already masked too much of it with '*',
   de-duplicated (exact, then near within task), length-filtered with the configured tokenizer on
   the rendered chat, and spooled;
4. caps per task / per source keep a seeded, order-independent subset;
5. documents are assigned to splits per source (seeded, exact proportions), so no document is in
   two splits; the spool is routed into train/validation/test.jsonl, written temp-then-rename.

Accounting is exact: read = written + rejected + duplicates, where "read" counts every candidate
record (and every raw item that could not be parsed at all).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kositp.chat import KNOWN_CONTROL_STRINGS, control_strings, find_control_strings
from kositp.config import Config
from kositp.data import pii, quality
from kositp.data.dedup import Deduplicator
from kositp.data.schema import Document, InstructionRecord, PreferenceRecord, Reject
from kositp.data.sources import FORMAT_NAMES, format_names, get_format
from kositp.data.sources.presets import PRESET_PREFIX, PRESETS, apply_preset
from kositp.data.task_names import TASKS
from kositp.data.tasks import BUILDERS, Example, TaskOptions
from kositp.data.tasks.templates import render_prompt, stable_hash
from kositp.data.text import masked_ratio
from kositp.errors import KositpError

SPLITS = ("train", "validation", "test")
# Preference pairs are split by document (prompt) like instructions; `preference.jsonl` keeps its
# meaning (the pairs to train on), the held-out pairs get their own files.
PREFERENCE_FILES = {"train": "preference.jsonl", "validation": "preference_validation.jsonl",
                    "test": "preference_test.jsonl"}
CONTEXT_FIELDS = ("context", "table")
UNANSWERABLE_STRATUM = "holds unanswerable questions"


class SourceConfig(Config):
    """One input: a raw corpus, an instruction set or a preference set."""

    format: str = Field(description=f"Source format: one of {', '.join(FORMAT_NAMES)}; or `preset:NAME` for a "
                        f"named public set ({', '.join(PRESETS)}), whose format, hf id and columns become this "
                        "source's defaults (path/columns/name given here override them).")
    path: str = Field(description="File, folder, .zip, .zip.part<offset> chunk, `package:samples/...` for the "
                                   "bundled samples, `konlpy:kolaw` (text format), or `hf:owner/name` for a "
                                   "Hugging Face dataset (instruction/preference formats).")
    name: str | None = Field(None, description="Label written to each record's `source`; default: the format.")
    columns: dict[str, str] = Field(default_factory=dict, description="Column mapping for instruction/preference "
                                    "sets, e.g. {prompt: instruction} when the set calls its prompt 'instruction'.")
    task: str | None = Field(None, description="`task` value for records of instruction/preference sets "
                             "(default 'instruction' / 'preference').")
    hf_split: str = Field("train", description="Split to load for `hf:` ids.")
    hf_config: str | None = Field(None, description="Configuration name for `hf:` ids.")
    tasks: list[str] | None = Field(None, description="Only build these tasks from this source (default: all).")
    ratio: float = Field(1.0, gt=0, le=1, description="Keep this share of the source's documents (seeded).")
    max_records: int | None = Field(None, ge=0, description="Cap on records written from this source (seeded).")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, values: Any) -> Any:
        return apply_preset(values) if isinstance(values, dict) else values

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in format_names():
            raise ValueError(f"unknown source format '{value}'; choose one of: {', '.join(format_names())}")
        return value

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str] | None) -> list[str] | None:
        return _check_tasks(value)

    @property
    def label(self) -> str:
        return self.name or self.format


def _check_tasks(value: list[str] | None) -> list[str] | None:
    unknown = [t for t in value or [] if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task id(s) {unknown}; see kositp.data.task_names.TASKS")
    return value


class SplitConfig(Config):
    """Shares of documents (not records) held out; the rest is train."""

    validation: float = Field(0.1, ge=0, lt=1, description="Share of each source's documents for validation.")
    test: float = Field(0.1, ge=0, lt=1, description="Share of each source's documents for test.")

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave some documents for train")
        return self


class DedupConfig(Config):
    """Duplicate removal; the first occurrence (in source order) is kept."""

    exact: bool = Field(True, description="Drop records whose normalised fields and answer repeat within a task.")
    near: bool = Field(True, description="Also drop near duplicates (MinHash over character 5-grams).")
    near_threshold: float = Field(0.85, gt=0, le=1, description="Estimated Jaccard similarity that counts as near.")


class TaskOptionsConfig(Config):
    """Thresholds the task builders use."""

    long_answer_min_chars: int = Field(20, ge=1, description="Answers at least this long make *_long tasks.")
    completion_prefix_ratio: float = Field(0.5, gt=0, lt=1, description="Text completion: share given as prefix.")
    completion_max_sentences: int = Field(12, ge=4, description="Text completion: sentences used per document.")
    min_keywords: int = Field(2, ge=1, description="Keyword tagging needs at least this many keywords.")
    max_title_chars: int = Field(80, ge=5, description="Longer titles are rejected for title tasks.")


class BuildConfig(Config):
    """Recipe for `kositp data build`: sources, mixing, filtering and splitting."""

    sources: list[SourceConfig] = Field(default_factory=list, description="Inputs, read in this order.")
    out: str | None = Field(None, description="Output directory (the CLI's --out overrides it).")
    seed: int = Field(0, description="Seed for template choice, option order, caps and splits.")
    tasks: list[str] | None = Field(None, description="Only build these task ids (default: all 22).")
    max_per_task: int | None = Field(None, ge=0, description="Cap on records per task (seeded choice).")
    task_caps: dict[str, int] = Field(default_factory=dict, description="Per-task caps overriding max_per_task.")
    splits: SplitConfig = Field(default_factory=SplitConfig, description="Held-out shares, by document.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Duplicate removal.")
    tokenizer: str | None = Field(None, description="Model name/path (or `tiny`, `default`) whose tokenizer and "
                                  "chat template measure record length; none: no token filter.")
    max_tokens: int = Field(2048, ge=8, description="Records whose rendered chat is longer are rejected.")
    max_masked_ratio: float = Field(0.05, ge=0, le=1, description="Reject records whose text is more than this "
                                    "share of '*' characters, the masks some corpora ship their personal data "
                                    "with (reason `masked_pii`).")
    pii: Literal["mask", "drop", "keep"] = Field(
        "mask", description="Personal data found in a record's text (e-mail addresses, Korean phone, resident "
        "registration, card and account numbers, user info in URLs): `mask` replaces each with a typed "
        "placeholder such as <이메일> or <전화번호>; `drop` rejects the record (reason `pii`); `keep` leaves "
        "the text as it is. Findings are counted per kind in the card in every mode.")
    system_prompt: str | None = Field(None, description="Optional system message prepended to built records.")
    task_options: TaskOptionsConfig = Field(default_factory=TaskOptionsConfig, description="Builder thresholds.")
    plot: bool = Field(True, description="Write card.png with per-task counts.")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str] | None) -> list[str] | None:
        return _check_tasks(value)

    @field_validator("task_caps")
    @classmethod
    def _known_cap_tasks(cls, value: dict[str, int]) -> dict[str, int]:
        _check_tasks(list(value))
        return value


def sources_from_cli(specs: list[str]) -> list[SourceConfig]:
    """`FORMAT:PATH` strings from repeated --source options."""
    out = []
    for spec in specs:
        if spec.startswith(PRESET_PREFIX):  # preset:NAME or preset:NAME=PATH
            name, _, path = spec[len(PRESET_PREFIX):].partition("=")
            if name not in PRESETS:
                raise KositpError(f"--source '{spec}': unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
            out.append(SourceConfig(format=f"{PRESET_PREFIX}{name}", **({"path": path} if path else {})))
            continue
        fmt, sep, path = spec.partition(":")
        if not sep or not path:
            raise KositpError(f"--source '{spec}' must look like FORMAT:PATH (formats: {', '.join(format_names())})")
        if fmt not in format_names():
            raise KositpError(f"--source '{spec}': unknown format '{fmt}'; choose one of: {', '.join(format_names())}")
        out.append(SourceConfig(format=fmt, path=path))
    return out


# --------------------------------------------------------------------------- candidates


@dataclass
class _Meta:
    """What the build keeps in memory per spooled record (the record itself is on disk)."""

    kind: Literal["sft", "pref"]
    task: str
    source: str
    doc_key: tuple[str, str]
    order: int  # stable hash deciding which records survive a cap
    ref: str
    prompt_chars: int
    answer_chars: int
    tokens: int | None


class _Stats:
    def __init__(self) -> None:
        self.read = 0
        self.duplicates: Counter[str] = Counter()
        self.reject_reasons: Counter[str] = Counter()
        self.documents: Counter[str] = Counter()
        self.strata: dict[tuple[str, str], str] = {}  # documents that must spread over the splits
        self.sampled_out: Counter[str] = Counter()
        self.pii_found: Counter[str] = Counter()  # findings per kind
        self.pii_records: Counter[str] = Counter()  # records with at least one finding of the kind


class _LengthCounter:
    """Token counts of the rendered chat, exactly as training formats it."""

    def __init__(self, name: str):
        from kositp.chat import apply_chat_format, resolve_chat_format
        from kositp.models import load_tokenizer

        self.tokenizer = load_tokenizer(name)
        if not getattr(self.tokenizer, "chat_template", None):
            apply_chat_format(self.tokenizer, resolve_chat_format(self.tokenizer))

    def __call__(self, messages: list[dict]) -> int:
        from kositp.chat import render

        text = render(self.tokenizer, messages, add_generation_prompt=False)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _record_id(task: str, key: str) -> str:
    return f"{task}-{stable_hash('id', task, key):016x}"


def _passage(fields: dict[str, str]) -> str | None:
    """The text a target is about: the context or table, else the one text-like field."""
    for name in (*CONTEXT_FIELDS, "text", "summary", "title"):
        if fields.get(name):
            return fields[name]
    return None


def _example_record(ex: Example, doc: Document, cfg: BuildConfig) -> tuple[dict, str, str | None, str]:
    prompt, template_index = render_prompt(ex.task, ex.fields, ex.key, cfg.seed)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": ex.answer}]
    if cfg.system_prompt:
        messages.insert(0, {"role": "system", "content": cfg.system_prompt})
    record = {"id": _record_id(ex.task, ex.key), "task": ex.task, "source": doc.source, "doc_id": doc.doc_id,
              "messages": messages}
    # Dedup looks at the template's fields, not the rendered prompt: the same question under two
    # templates is still the same example. Near duplicates ignore the shared context, so the
    # many questions of one passage are not mistaken for copies; the context joins the group key.
    context = "\x1f".join(ex.fields.get(f, "") for f in CONTEXT_FIELDS)
    others = " ".join(v for k, v in sorted(ex.fields.items()) if k not in CONTEXT_FIELDS)
    exact_text = "\x1f".join(v for _, v in sorted(ex.fields.items())) + "\x1f" + ex.answer
    group = f"{ex.task}\x1f{stable_hash(context) if context.strip(chr(31)) else ''}"
    return record, exact_text, f"{others} {ex.answer}", group


def _iter_candidates(cfg: BuildConfig, tasks: tuple[str, ...], stats: _Stats, opt: TaskOptions,
                     progress: Callable[[str], None]) -> Iterator[tuple[str, Any]]:
    """("reject", Reject) | ("sft", (record, exact, near, group, ref, passage)) | ("pref", (record, exact, ref)).

    `passage` is the text a built example's target is about (None for ready-made records: the
    quality rules then read the prompt)."""
    for src in cfg.sources:
        fmt = get_format(src.format)
        source_tasks = tuple(t for t in tasks if src.tasks is None or t in src.tasks)
        options: dict[str, Any] = {"columns": src.columns, "task": src.task, "hf_split": src.hf_split,
                                   "hf_config": src.hf_config}
        progress(f"reading {src.label} ({src.path})")
        for item in fmt.reader(src.path, src.label, **options):
            if isinstance(item, Reject):
                item.source = item.source or src.label
                yield "reject", item
            elif isinstance(item, Document):
                stats.documents[src.label] += 1
                if src.ratio < 1 and stable_hash(cfg.seed, "ratio", src.label, item.doc_id) / 2**64 >= src.ratio:
                    stats.sampled_out[src.label] += 1
                    continue
                if any(qa.is_impossible for p in item.passages for qa in p.qas):
                    stats.strata[(item.source, item.doc_id)] = UNANSWERABLE_STRATUM
                for ex in (e for t in source_tasks for e in BUILDERS[t](item, opt)):
                    if isinstance(ex, Reject):
                        yield "reject", ex
                    else:
                        record, exact, near, group = _example_record(ex, item, cfg)
                        yield "sft", (record, exact, near, group, item.ref, _passage(ex.fields))
            elif isinstance(item, InstructionRecord):
                if item.task in TASKS and item.task not in source_tasks:
                    continue  # a seed record of a task the build does not want: not read
                messages = item.messages
                if cfg.system_prompt and messages[0]["role"] != "system":
                    messages = [{"role": "system", "content": cfg.system_prompt}, *messages]
                record = {"id": _record_id(item.task, item.ref), "task": item.task, "source": item.source,
                          "doc_id": item.doc_id, "messages": messages}
                yield "sft", (record, item.prompt + "\x1f" + item.answer, f"{item.prompt} {item.answer}",
                              item.task, item.ref, None)
            elif isinstance(item, PreferenceRecord):
                record = {"id": _record_id(item.task, item.ref), "task": item.task, "source": item.source,
                          "doc_id": item.doc_id, "prompt": item.prompt, "chosen": item.chosen,
                          "rejected": item.rejected}
                exact = json.dumps([item.prompt, item.chosen, item.rejected], ensure_ascii=False)
                yield "pref", (record, exact, item.ref)


def _all_contents(record: dict) -> str:
    """Every message content of a record, joined (instruction or preference)."""
    turns = record.get("messages") or [*record["prompt"], *record["chosen"], *record["rejected"]]
    return "\n".join(m["content"] for m in turns)


def _mask_pii(record: dict, mode: str) -> Counter[str]:
    """Findings per kind in every message content of the record; masked in place when mode is `mask`."""
    found: Counter[str] = Counter()
    for key in ("messages", "prompt", "chosen", "rejected"):
        for message in record.get(key) or ():
            masked, hits = pii.scan(message["content"])
            if hits:
                found += hits
                if mode == "mask":
                    message["content"] = masked
    return found


def _texts(record: dict) -> tuple[str, str]:
    if "messages" in record:
        prompt = "\n".join(m["content"] for m in record["messages"] if m["role"] != "assistant")
        answer = "\n".join(m["content"] for m in record["messages"] if m["role"] == "assistant")
    else:
        prompt = "\n".join(m["content"] for m in record["prompt"])
        answer = "\n".join(m["content"] for m in record["chosen"])
    return prompt, answer


def assign_splits(doc_keys: set[tuple[str, str]], splits: SplitConfig, seed: int,
                  strata: dict[tuple[str, str], str] | None = None) -> dict[tuple[str, str], str]:
    """Per source, order documents by a seeded hash and cut exact shares for test and validation.

    `strata` names the documents of a kind that must reach every split in proportion (documents
    holding unanswerable questions: a few of them decide a split's answerable : unanswerable
    balance). Each stratum keeps its hash order and the strata are interleaved by relative
    position, so any cut takes its share of every stratum; a source with one stratum is cut
    exactly as by the hash alone."""
    strata = strata or {}
    by_source: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for source, doc_id in doc_keys:
        by_source[source][strata.get((source, doc_id), "")].append(doc_id)
    assignment: dict[tuple[str, str], str] = {}
    for source, groups in sorted(by_source.items()):
        placed: list[tuple[float, int, str]] = []
        for group in groups.values():
            group.sort(key=lambda d: (stable_hash(seed, "split", source, d), d))
            placed += [((i + 0.5) / len(group), stable_hash(seed, "split", source, d), d) for i, d in enumerate(group)]
        ids = [d for *_, d in sorted(placed)]
        n = len(ids)

        def share(ratio: float, n: int = n) -> int:
            # at least one held-out document once a source has a few, so every source is tested
            return 0 if ratio <= 0 else max(1 if n >= 3 else 0, round(n * ratio))

        n_test = share(splits.test)
        n_val = min(share(splits.validation), max(0, n - n_test - 1))
        for i, doc_id in enumerate(ids):
            split = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
            assignment[(source, doc_id)] = split
    return assignment


def _stratum_per_split(strata: dict[tuple[str, str], str], split_of: dict[tuple[str, str], str]) -> dict[str, int]:
    """Written documents holding unanswerable questions, per split (the balance the split keeps)."""
    counts = Counter(split_of[key] for key in strata if key in split_of)
    return {split: counts[split] for split in ("train", "validation", "test")}


def _reject_line(rej: Reject) -> str:
    row = {"source": rej.source, "ref": rej.ref, "reason": rej.reason}
    if rej.task:
        row["task"] = rej.task
    if rej.detail:
        row["detail"] = rej.detail
    return json.dumps(row, ensure_ascii=False) + "\n"


@dataclass
class BuildResult:
    out: Path
    card: dict


def build(cfg: BuildConfig, out: str | Path | None = None, progress: Callable[[str], None] | None = None) -> BuildResult:
    """Run the whole data build; returns the output directory and the card (also written to disk)."""
    from kositp.data.card import length_stats, task_source_counts, write_card

    out_dir = Path(out or cfg.out or "")
    if not str(out_dir):
        raise KositpError("no output directory: pass --out DIR or set `out` in the config")
    if not cfg.sources:
        raise KositpError("no sources: pass --source FORMAT:PATH (repeatable) or list `sources` in the config")
    progress = progress or (lambda _msg: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = tuple(t for t in TASKS if cfg.tasks is None or t in cfg.tasks)
    opt = TaskOptions(**cfg.task_options.model_dump(), seed=cfg.seed)
    lengths = _LengthCounter(cfg.tokenizer) if cfg.tokenizer else None
    control = tuple(dict.fromkeys(KNOWN_CONTROL_STRINGS + tuple(control_strings(lengths.tokenizer) if lengths else ())))
    dedup = Deduplicator(near=cfg.dedup.near, threshold=cfg.dedup.near_threshold, seed=cfg.seed)
    stats = _Stats()
    work = Path(tempfile.mkdtemp(prefix=".kositp-build-", dir=out_dir))
    try:
        spool_path, rejects_path = work / "spool.jsonl", work / "rejects.jsonl"
        metas: list[_Meta] = []
        with open(spool_path, "w", encoding="utf-8") as spool, open(rejects_path, "w", encoding="utf-8") as rejects:

            def reject(rej: Reject) -> None:
                stats.reject_reasons[rej.reason] += 1
                rejects.write(_reject_line(rej))

            for kind, payload in _iter_candidates(cfg, tasks, stats, opt, progress):
                stats.read += 1
                if kind == "reject":
                    reject(payload)
                    continue
                if kind == "sft":
                    record, exact, near, group, ref, passage = payload
                else:
                    record, exact, ref = payload
                    near, group, passage = None, f"preference\x1f{record['task']}", None
                prompt, answer = _texts(record)
                rej_base = Reject(record["source"], ref, "", task=record["task"])
                if not answer.strip():
                    rej_base.reason = "empty_answer"
                    reject(rej_base)
                    continue
                forged = find_control_strings(_all_contents(record), control)
                if forged:  # a chat-template marker in content would forge turns and corrupt the loss mask
                    rej_base.reason = "control_token"
                    rej_base.detail = ", ".join(forged)
                    reject(rej_base)
                    continue
                # Targets are judged as written by the source, before personal data is masked.
                broken = quality.check_target(record["task"], answer, prompt, passage) if kind == "sft" else None
                if broken:
                    rej_base.reason, rej_base.detail = broken
                    reject(rej_base)
                    continue
                found = _mask_pii(record, cfg.pii)
                if found:
                    stats.pii_found += found
                    stats.pii_records.update(found.keys())
                    if cfg.pii == "drop":
                        rej_base.reason = "pii"
                        rej_base.detail = ", ".join(sorted(found))
                        reject(rej_base)
                        continue
                    if cfg.pii == "mask":  # duplicates and lengths are judged on the text that is written
                        exact, near = pii.mask(exact), near and pii.mask(near)
                        prompt, answer = _texts(record)
                # '*' masks the source applied itself (not this build's placeholders): a record that is
                # mostly stars says little.
                if masked_ratio(prompt + answer) > cfg.max_masked_ratio:
                    rej_base.reason = "masked_pii"
                    reject(rej_base)
                    continue
                if cfg.dedup.exact or cfg.dedup.near:
                    dup = dedup.check(group, exact, near if cfg.dedup.near else None)
                    if dup == "exact_duplicate" and not cfg.dedup.exact:
                        dup = None
                    if dup:
                        stats.duplicates[dup] += 1
                        continue
                tokens = None
                if lengths is not None:
                    messages = record.get("messages") or record["prompt"] + record["chosen"]
                    tokens = lengths(messages)
                    if tokens > cfg.max_tokens:
                        rej_base.reason = "too_long"
                        rej_base.detail = f"{tokens} tokens > {cfg.max_tokens}"
                        reject(rej_base)
                        continue
                spool.write(json.dumps(record, ensure_ascii=False) + "\n")
                metas.append(_Meta(kind, record["task"], record["source"], (record["source"], record["doc_id"]),
                                   stable_hash(cfg.seed, "cap", record["id"]), ref, len(prompt), len(answer), tokens))
            progress("applying caps and splitting by document")
            keep = _apply_caps(cfg, metas, reject)
        split_of = assign_splits({m.doc_key for m, k in zip(metas, keep, strict=True) if k}, cfg.splits, cfg.seed,
                                 stats.strata)
        counts = _write_outputs(out_dir, work, spool_path, metas, keep, split_of)
        written_metas = [m for m, k in zip(metas, keep, strict=True) if k]
        rejected = sum(stats.reject_reasons.values())
        written = sum(keep)
        card = {
            "counts": {"read": stats.read, "written": written, "rejected": rejected,
                       "duplicates": sum(stats.duplicates.values()),
                       "duplicates_by_kind": dict(sorted(stats.duplicates.items())),
                       "instructions": counts["sft_total"], "preferences": counts["pref_total"]},
            "splits": counts["splits"],
            "preference_splits": counts["pref_splits"],
            "per_task": counts["per_task"],
            "per_source": counts["per_source"],
            "per_task_source": task_source_counts(written_metas, split_of),
            "reject_reasons": dict(sorted(stats.reject_reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            "documents": {"read": dict(sorted(stats.documents.items())),
                          "sampled_out": dict(sorted(stats.sampled_out.items())),
                          "per_split": counts["documents_per_split"],
                          "with_unanswerable_per_split": _stratum_per_split(stats.strata, split_of)},
            "pii": {"mode": cfg.pii, "found": {k: stats.pii_found[k] for k in pii.KINDS},
                    "records": {k: stats.pii_records[k] for k in pii.KINDS}},
            "target_quality": {r: stats.reject_reasons[r] for r in quality.REASONS},
            "lengths": length_stats(written_metas),
            "seed": cfg.seed,
            "config": cfg.model_dump(mode="json"),
        }
        assert card["counts"]["read"] == written + rejected + card["counts"]["duplicates"], "accounting broke"
        write_card(out_dir, card, plot=cfg.plot)
        return BuildResult(out_dir, card)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _apply_caps(cfg: BuildConfig, metas: list[_Meta], reject: Callable[[Reject], None]) -> list[bool]:
    """Seeded, order-independent caps: within a task/source, records with the smallest hash survive."""
    keep = [True] * len(metas)
    source_caps = {s.label: s.max_records for s in cfg.sources if s.max_records is not None}

    def cap(groups: dict[str, list[int]], limits: dict[str, int], reason: str) -> None:
        for name, indices in sorted(groups.items()):
            limit = limits.get(name)
            if limit is None:
                continue
            alive = sorted((i for i in indices if keep[i]), key=lambda i: (metas[i].order, i))
            for i in alive[limit:]:
                keep[i] = False
                reject(Reject(metas[i].source, metas[i].ref, reason, task=metas[i].task))

    by_task: dict[str, list[int]] = defaultdict(list)
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, meta in enumerate(metas):
        by_task[meta.task].append(i)
        by_source[meta.source].append(i)
    task_limits = {t: cfg.task_caps.get(t, cfg.max_per_task) for t in by_task}
    cap(by_task, {t: v for t, v in task_limits.items() if v is not None}, "over_task_cap")
    cap(by_source, source_caps, "over_source_cap")
    return keep


def _atomic_writer(path: Path):
    tmp = path.with_name(f".{path.name}.tmp")
    return tmp, open(tmp, "w", encoding="utf-8")


def _write_outputs(out_dir: Path, work: Path, spool_path: Path, metas: list[_Meta], keep: list[bool],
                   split_of: dict[tuple[str, str], str]) -> dict:
    per_task: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    per_source: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    split_totals = dict.fromkeys(SPLITS, 0)
    docs_per_split: dict[str, set] = {s: set() for s in SPLITS}
    has_pref = any(m.kind == "pref" for m, k in zip(metas, keep, strict=True) if k)
    names = [*[f"{s}.jsonl" for s in SPLITS], *(PREFERENCE_FILES.values() if has_pref else [])]
    writers = {name: _atomic_writer(out_dir / name) for name in names}
    pref_splits = dict.fromkeys(SPLITS, 0)
    try:
        with open(spool_path, encoding="utf-8") as spool:
            for line, meta, kept in zip(spool, metas, keep, strict=True):
                if not kept:
                    continue
                split = split_of[meta.doc_key]
                if meta.kind == "pref":
                    pref_splits[split] += 1
                    writers[PREFERENCE_FILES[split]][1].write(line)
                    continue
                writers[f"{split}.jsonl"][1].write(line)
                per_task[meta.task][split] += 1
                per_source[meta.source][split] += 1
                split_totals[split] += 1
                docs_per_split[split].add(meta.doc_key)
    finally:
        for _, fh in writers.values():
            fh.close()
    for name, (tmp, _) in writers.items():
        os.replace(tmp, out_dir / name)
    for name in PREFERENCE_FILES.values():
        if not has_pref and (out_dir / name).exists():
            (out_dir / name).unlink()  # stale file from an earlier build with preference sources
    os.replace(work / "rejects.jsonl", out_dir / "rejects.jsonl")
    return {
        "splits": split_totals,
        "per_task": {t: per_task[t] for t in TASKS if t in per_task} | {t: v for t, v in sorted(per_task.items())
                                                                        if t not in TASKS},
        "per_source": dict(sorted(per_source.items())),
        "documents_per_split": {s: len(v) for s, v in docs_per_split.items()},
        "sft_total": sum(split_totals.values()),
        "pref_total": sum(pref_splits.values()),
        "pref_splits": pref_splits,
    }
