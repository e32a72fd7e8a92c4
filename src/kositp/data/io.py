"""Reading raw inputs: files, folders, zips, AIHub `.zip.part<offset>` chunks; JSON, JSONL, Parquet.

Every reader yields `(ref, item)` pairs or `Reject`s and never raises on bad content: a broken
file or line becomes a reject with a reason and the build goes on. Only a path that does not
exist at all is a `KositpError` (the user mistyped it). Large JSON files are streamed with
ijson, so memory does not grow with the file size.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

from kositp.data.schema import Reject
from kositp.errors import KositpError

# Files at most this big are parsed with json.loads (fast, whole file); bigger ones are streamed.
STREAM_THRESHOLD = 8 * 1024 * 1024
JSON_SUFFIXES = (".json", ".jsonl", ".parquet", ".txt")
PART_RE = re.compile(r"^(?P<base>.+\.zip)\.part(?P<offset>\d+)$")
PACKAGE_PREFIX = "package:"
CORPORA_PREFIX = "corpora:"


def natural_key(text: str) -> list:
    """Sort key for 'file2' < 'file10' (AIHub part chunks and numbered files)."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text)]


def corpora_root() -> Path:
    """Where `corpora:NAME/...` paths point: $KOSITP_CORPORA, else `shared/data/corpora` beside a checkout."""
    given = os.environ.get("KOSITP_CORPORA")
    root = Path(given).expanduser() if given else Path(__file__).resolve().parents[4] / "shared" / "data" / "corpora"
    if not root.is_dir():
        raise KositpError(f"corpus folder not found: {root} (set KOSITP_CORPORA to the folder that holds "
                          "korquad/KorQuAD_v1.0_dev.json; see docs/data.md)")
    return root


def resolve_path(path: str) -> Path:
    """A filesystem path, `package:samples/...` for files shipped inside kositp/resources, or
    `corpora:...` for the public corpora folder (`corpora_root`), which is never copied into kositp."""
    if path.startswith(PACKAGE_PREFIX):
        rel = path[len(PACKAGE_PREFIX):].lstrip("/")
        return Path(str(resources.files("kositp") / "resources" / rel))
    if path.startswith(CORPORA_PREFIX):
        return corpora_root() / path[len(CORPORA_PREFIX):].lstrip("/")
    return Path(path).expanduser()


@dataclass
class InputFile:
    """One readable input: a plain file or a member of a zip archive."""

    ref: str  # shown in rejects and errors: "path" or "archive.zip:member"
    path: Path  # the file, or the archive holding the member
    member: str | None = None
    size: int = 0

    @property
    def name(self) -> str:
        return self.member or self.path.name

    def open(self) -> IO[bytes]:
        if self.member is None:
            return open(self.path, "rb")
        archive = _open_zip(self.path)
        return _ZipMemberStream(archive, archive.open(self._raw_member()))

    def _raw_member(self) -> zipfile.ZipInfo:
        return _member_index(self.path)[self.member]


class _ZipMemberStream(io.RawIOBase):
    """A zip member stream that closes its archive too."""

    def __init__(self, archive: zipfile.ZipFile, stream: IO[bytes]):
        self._archive, self._stream = archive, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def close(self) -> None:
        self._stream.close()
        self._archive.close()
        super().close()


def _open_zip(path: Path) -> zipfile.ZipFile:
    # AIHub zips store Korean member names in CP949 without the UTF-8 flag. Names that carry
    # the flag are decoded as UTF-8 regardless of metadata_encoding.
    try:
        return zipfile.ZipFile(path, metadata_encoding="cp949")
    except UnicodeDecodeError:
        return zipfile.ZipFile(path)


_MEMBER_CACHE: dict[Path, dict[str, zipfile.ZipInfo]] = {}


def _member_index(path: Path) -> dict[str, zipfile.ZipInfo]:
    if path not in _MEMBER_CACHE:
        with _open_zip(path) as archive:
            _MEMBER_CACHE[path] = {_clean_member_name(i.filename): i for i in archive.infolist() if not i.is_dir()}
    return _MEMBER_CACHE[path]


def _clean_member_name(name: str) -> str:
    return name.lstrip("/")  # AIHub member names may start with "/"


def _is_data_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(JSON_SUFFIXES) and not base.startswith(("._", "."))


def join_part_chunks(parts: list[Path], workdir: Path) -> Path:
    """Concatenate AIHub `X.zip.part<offset>` chunks in offset order into one zip under workdir."""
    parts = sorted(parts, key=lambda p: int(PART_RE.match(p.name)["offset"]))
    target = workdir / PART_RE.match(parts[0].name)["base"]
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as chunk:
                shutil.copyfileobj(chunk, out, 1 << 20)
    return target


def iter_input_files(path: str, workdir: Path | None = None) -> Iterator[InputFile | Reject]:
    """Every data file under `path` in natural-sort order, expanding zips and joining part chunks."""
    root = resolve_path(path)
    if not root.exists():
        # a part path like X.zip.part0 whose siblings exist: join the whole set
        raise KositpError(f"input not found: {path}")
    if root.is_file():
        candidates = [root]
    else:
        candidates = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: natural_key(str(p)))
    groups: dict[Path, list[Path]] = {}
    plain: list[Path] = []
    for cand in candidates:
        match = PART_RE.match(cand.name)
        if match:
            groups.setdefault(cand.parent / match["base"], []).append(cand)
        else:
            plain.append(cand)
    if root.is_file() and PART_RE.match(root.name):
        # one chunk given: collect its siblings
        base = root.parent / PART_RE.match(root.name)["base"]
        groups = {base: [p for p in root.parent.iterdir() if PART_RE.match(p.name)
                         and p.parent / PART_RE.match(p.name)["base"] == base]}
    for base, parts in sorted(groups.items(), key=lambda kv: natural_key(str(kv[0]))):
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="kositp-parts-"))
        joined = join_part_chunks(parts, workdir)
        yield from _expand_zip(joined, ref=str(base))
    for file in plain:
        if file.suffix.lower() == ".zip":
            yield from _expand_zip(file, ref=str(file))
        elif _is_data_name(file.name):
            yield InputFile(ref=str(file), path=file, size=file.stat().st_size)


def _expand_zip(path: Path, ref: str) -> Iterator[InputFile | Reject]:
    try:
        index = _member_index(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield Reject(source="", ref=ref, reason="unreadable_file", detail=f"{type(exc).__name__}: {exc}")
        return
    for name in sorted(index, key=natural_key):
        if _is_data_name(name):
            yield InputFile(ref=f"{ref}:{name}", path=path, member=name, size=index[name].file_size)


# --------------------------------------------------------------------------- decoding


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) for UTF-8 with or without BOM, or CP949 as a last resort; (None, reason) otherwise."""
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp949"), None  # Windows-saved re-dumps; content is normally UTF-8
    except UnicodeDecodeError:
        return None, "bad_encoding"


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"


def containers_of(obj: Any, container_keys: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """The items of a loaded JSON value: the list under a container key, a top-level list, or the value."""
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            if isinstance(item, dict) and any(isinstance(item.get(k), list) for k in container_keys):
                yield from ((f"{i}.{sub}", x) for sub, x in containers_of(item, container_keys))
            else:
                yield str(i), item
        return
    if isinstance(obj, dict):
        for key in container_keys:
            if isinstance(obj.get(key), list):
                yield from ((f"{key}.{i}", x) for i, x in enumerate(obj[key]))
                return
    yield "0", obj


def _sniff_stream_prefix(stream: IO[bytes], container_keys: tuple[str, ...]) -> str | None:
    """The ijson prefix of the item list in a big JSON file, found from its first events."""
    import ijson

    events = ijson.parse(stream)
    try:
        _, first, _ = next(events)
        if first == "start_array":
            return "item"
        for prefix, event, value in events:
            if prefix == "" and event == "map_key" and value in container_keys:
                _, ev, _ = next(events)
                if ev == "start_array":
                    return f"{value}.item"
    except StopIteration:
        return None
    return None


def iter_json_items(
    file: InputFile, container_keys: tuple[str, ...]
) -> Iterator[tuple[str, Any] | Reject]:
    """Items of one JSON/JSONL file: `(ref, item)` pairs, or rejects for bad bytes/JSON."""
    name = file.name.lower()
    try:
        if name.endswith(".jsonl"):
            yield from _iter_jsonl(file)
        elif file.size > STREAM_THRESHOLD:
            yield from _iter_streamed(file, container_keys)
        else:
            with file.open() as fh:
                data = fh.read()
            text, reason = decode_text(data)
            if text is None:
                yield Reject("", file.ref, reason or "bad_encoding")
                return
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Reject("", file.ref, "malformed_json", detail=_json_error(exc))
                return
            for sub, item in containers_of(obj, container_keys):
                yield f"{file.ref}#{sub}", item
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        yield Reject("", file.ref, "unreadable_file", detail=f"{type(exc).__name__}: {exc}")


def _iter_jsonl(file: InputFile) -> Iterator[tuple[str, Any] | Reject]:
    with file.open() as fh:
        for lineno, raw in enumerate(io.BufferedReader(fh) if not hasattr(fh, "peek") else fh, start=1):
            if not raw.strip():
                continue
            ref = f"{file.ref}#L{lineno}"
            text, reason = decode_text(raw)
            if text is None:
                yield Reject("", ref, reason or "bad_encoding")
                continue
            try:
                yield ref, json.loads(text)
            except json.JSONDecodeError as exc:
                yield Reject("", ref, "malformed_json", detail=_json_error(exc))


def _skip_bom(fh: IO[bytes]) -> IO[bytes]:
    reader = fh if hasattr(fh, "peek") else io.BufferedReader(fh, 1 << 20)
    if reader.peek(3)[:3] == b"\xef\xbb\xbf":
        reader.read(3)
    return reader


def _iter_streamed(file: InputFile, container_keys: tuple[str, ...]) -> Iterator[tuple[str, Any] | Reject]:
    import ijson

    with file.open() as fh:
        prefix = _sniff_stream_prefix(_skip_bom(fh), container_keys)
    if prefix is None:
        # one big object without a known list: it is a single item (rare; still parsed incrementally)
        prefix = ""
    count = 0
    ref_prefix = f"{file.ref}#{prefix.replace('.item', '')}."
    with file.open() as fh:
        try:
            # ijson's C backend (yajl2_c, the default when built) parses; use_float keeps numbers as
            # float instead of Decimal: json-compatible and faster
            for item in ijson.items(_skip_bom(fh), prefix, use_float=True):
                yield f"{ref_prefix}{count}", item
                count += 1
        except ijson.JSONError as exc:
            # Broken JSON mid-file: keep what was read, report the rest with its position.
            message = str(exc).splitlines()[0][:200]
            reason = "bad_encoding" if "utf-8" in message.lower() or "unicode" in message.lower() else "malformed_json"
            yield Reject("", f"{file.ref}#after-item-{count}", reason, detail=message)


def iter_parquet_rows(file: InputFile) -> Iterator[tuple[str, Any] | Reject]:
    """Rows of a Parquet file as dicts, read batch by batch."""
    try:
        import pyarrow.parquet as pq

        with file.open() as fh:
            data = fh.read() if file.member else None
        parquet = pq.ParquetFile(io.BytesIO(data) if data is not None else str(file.path))
        row = 0
        for batch in parquet.iter_batches(batch_size=4096):
            for record in batch.to_pylist():
                yield f"{file.ref}#{row}", record
                row += 1
    except Exception as exc:  # pyarrow raises many types for a broken file; report, do not crash
        yield Reject("", file.ref, "unreadable_file", detail=f"{type(exc).__name__}: {str(exc)[:200]}")


def iter_items(path: str, container_keys: tuple[str, ...] = ("data",), workdir: Path | None = None):
    """All `(ref, item)` pairs (and rejects) under `path`, whatever the packaging."""
    for file in iter_input_files(path, workdir):
        if isinstance(file, Reject):
            yield file
            continue
        if file.name.lower().endswith(".parquet"):
            yield from iter_parquet_rows(file)
        elif file.name.lower().endswith(".txt"):
            continue  # plain text is only read by the `text` source
        else:
            yield from iter_json_items(file, container_keys)


def file_stem(ref: str) -> str:
    """A document id from a file reference: the file name without suffix (KISTI trees, D8/D9 files)."""
    name = ref.split("#", 1)[0].rsplit(":", 1)[-1]
    return os.path.splitext(name.rsplit("/", 1)[-1])[0]
