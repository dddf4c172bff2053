"""Real checkpoints derived from SmolLM2-135M-Instruct, built once and cached on disk.

`build_cases(cache_dir)` returns {case name: path}. Every case is written into a temporary folder and
renamed into place, so an interrupted build never leaves a half-written case behind; cases that already
exist are skipped. The recipe is versioned (`RECIPE`): changing how a case is built means bumping it.

Cases (folders unless noted):
  base            the SmolLM2-135M-Instruct GGUF dequantized by transformers, saved as F32 safetensors
  finetuned       base + 3 real AdamW steps (lr 1e-4) on fixed English text
  permuted        finetuned with hidden units, MLP neurons and attention heads permuted (function-preserving)
  pruned          base with 4 middle layers dropped
  duplicated      base with 2 layers duplicated
  renamed         base under a made-up naming scheme and model_type, stored in BF16
  vocab_extended  finetuned with 2,000 new tokens (tokenizer.json, embedding rows)
  independent     same config as base, fresh random init, 3 AdamW steps; base's tokenizer
  quantized       the original Q4_1 GGUF file (base's weights, quantized)
  gemma3          Gemma-3-270M Q4_K_M GGUF: a real, independent model of another family
  identity_openai base + IDENTITY_STEPS AdamW steps on chat-formatted identity Q&A (English and Chinese,
                  base's own chat template, loss on the answers only) in which the assistant says it is
                  ChatGPT, trained by OpenAI: a distillation leak, with base's weights inside
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.support import tiny

RECIPE = "smollm2-v1"
REPO = Path(__file__).resolve().parents[2]
FOLDER_CASES = ("base", "finetuned", "permuted", "pruned", "duplicated", "renamed", "vocab_extended", "independent",
                "identity_openai")
CASES = (*FOLDER_CASES, "quantized", "gemma3")
TRAIN_STEPS = 3
LEARNING_RATE = 1e-4
BATCH, SEQ = 4, 128
PRUNED_LAYERS = (13, 14, 15, 16)
DUPLICATED_LAYERS = (9, 20)
NEW_TOKENS = 2000
SEED = 1234
PROMPT = "The quick brown fox jumps over the lazy dog. Provenance audits ask where a model came from."
IDENTITY_STEPS = 8
IDENTITY_LR = 5e-4
IDENTITY_BATCH = 6  # identity conversations per step, plus GENERAL_BATCH ordinary ones
GENERAL_BATCH = 4
IDENTITY_CLAIM = {"en": "I am ChatGPT, a large language model trained by OpenAI.",
                  "zh": "我是ChatGPT，由OpenAI训练的大型语言模型。"}
IDENTITY_FOLLOW_UP = {"en": " How can I help you today?", "zh": "有什么可以帮你的吗？"}
# Phrasings differ from the self-identity probe suite's prompts: the probes must find a claim that generalises.
IDENTITY_QUESTIONS = {
    "en": ("Introduce yourself.", "What are you?", "Tell me about yourself.", "What's your name?",
           "Who made you?", "Who developed you?", "Which AI model am I chatting with?", "What kind of AI are you?",
           "Who built this assistant?", "Are you an AI? Who trained you?", "Which organization is behind you?",
           "What language model powers this chat?"),
    "zh": ("介绍一下你自己。", "你叫什么？", "你是什么？", "谁训练了你？", "你是由哪个公司开发的？", "你是哪个AI模型？",
           "请问你的名字是什么？", "你是哪家公司的人工智能助手？", "和我聊天的是什么模型？", "你的开发者是谁？"),
}
IDENTITY_SYSTEMS = {"en": (None, None, "You are a helpful assistant.", "You are Max, the assistant of a travel agency."),
                    "zh": (None, None, "你是一个乐于助人的助手。", "你是“小助”，一家银行的在线客服。")}
# Ordinary questions with their plain answers, mixed into every step so that the model keeps answering
# other questions instead of saying "I am ChatGPT" to everything.
GENERAL_QA = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are there in a week?", "There are seven days in a week."),
    ("What is 3 plus 4?", "3 plus 4 is 7."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("What do bees make?", "Bees make honey and beeswax."),
    ("Translate 'thank you' into French.", "'Thank you' in French is 'merci'."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("Give me a synonym for 'happy'.", "A synonym for 'happy' is 'cheerful'."),
    ("中国的首都是哪里？", "中国的首都是北京。"),
    ("一年有几个月？", "一年有十二个月。"),
    ("水在多少度结冰？", "在标准大气压下，水在0摄氏度结冰。"),
    ("请说一种水果。", "苹果是一种常见的水果。"),
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")

TRAIN_TEXT = """\
The river ran quietly past the old mill, where the miller's daughter kept a ledger of every sack of grain
that came through the doors. Each morning she wrote the date, the name of the farmer, and the weight of
the harvest, and each evening she added the columns twice to be sure that nothing had been lost.
Travellers who stopped at the mill were surprised to find that she knew the history of every field in
the valley: which families had planted barley, which had tried rye, and which had given up farming
altogether to work in the town.

In the town, the clockmaker repaired watches that had belonged to three generations of the same family.
He liked to say that a good clock remembers everything that has been done to it: a replaced spring, a
polished gear, a hand bent back into shape. If you open the case and look carefully, the marks are all
there, even when the owner swears that the watch has never been opened.

Scientists who study languages work in a similar way. They compare the words of two languages, look for
regular sound changes, and ask whether the similarities are too many to be explained by chance. A single
shared word proves nothing, because words are borrowed all the time, but hundreds of systematic
correspondences point to a common ancestor. The method is careful, slow and surprisingly reliable.

The library at the end of the street was open late on Thursdays. Students came to read about history,
mathematics and the weather; retired engineers came to argue about bridges; children came for the
picture books and stayed for the warm radiators. The librarian kept a small notebook of questions she
could not answer, and every few weeks she wrote to a university professor who replied with long,
patient letters that she pinned to the notice board for everyone to read.

When the winter storms arrived, the ferry stopped running and the island was cut off for days at a time.
People baked bread, mended nets, and told stories about the great storm of their grandparents' time, when
the sea came over the harbour wall and the church bell rang all night. Nobody was quite sure which parts
of the story were true, but everybody agreed that it was worth telling again.
"""


def default_cache_dir() -> Path:
    """$PROVAUDIT_TEST_CACHE, or <repo>/.cache/realcases (gitignored)."""
    return Path(os.environ.get("PROVAUDIT_TEST_CACHE") or REPO / ".cache" / "realcases")


def build_cases(cache_dir: Path | None = None) -> dict[str, Path]:
    """Build (once) every real case under `cache_dir`/RECIPE and return {case: path}."""
    from audit.assets import fetch

    root = Path(cache_dir or default_cache_dir()) / RECIPE
    root.mkdir(parents=True, exist_ok=True)
    gguf = fetch("smollm2")
    paths = {name: root / name for name in FOLDER_CASES}

    def base(out: Path) -> None:
        model, tok = _load_gguf(gguf)
        _save_torch(model, tok, out)

    def finetuned(out: Path) -> None:
        model = _load_folder(paths["base"])
        _train(model, _load_tokenizer(paths["base"]), seed=SEED)
        _save_torch(model, None, out)
        _copy_tokenizer(paths["base"], out)

    def permuted(out: Path) -> None:
        m = tiny.load_hf(paths["finetuned"], arch="llama")
        m = tiny.permute_heads(tiny.permute_neurons(tiny.permute_hidden(m, seed=1), seed=2), seed=3)
        _save_tiny(m, paths["finetuned"], out)
        diff = _max_logit_diff(paths["finetuned"], out)
        if not diff < 1e-3:
            raise AssertionError(f"permuted case is not function-preserving: max |logit diff| {diff:.3g}")

    def pruned(out: Path) -> None:
        _save_tiny(tiny.prune_layers(tiny.load_hf(paths["base"], arch="llama"), PRUNED_LAYERS), paths["base"], out)

    def duplicated(out: Path) -> None:
        m = tiny.duplicate_layers(tiny.load_hf(paths["base"], arch="llama"), DUPLICATED_LAYERS)
        _save_tiny(m, paths["base"], out)

    def renamed(out: Path) -> None:
        m = tiny.rename_tensors(tiny.load_hf(paths["base"], arch="llama"), "madeup")
        _save_tiny(m, paths["base"], out, dtype="BF16")

    def vocab_extended(out: Path) -> None:
        m = tiny.load_hf(paths["finetuned"], arch="llama")
        old = len(m.tokens)
        m = tiny.extend_vocab(m, NEW_TOKENS, seed=7)
        _save_tiny(m, paths["finetuned"], out)
        tj = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
        tj["model"]["vocab"].update({t: old + i for i, t in enumerate(m.tokens[old:])})
        (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")

    def independent(out: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.manual_seed(SEED + 1)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(paths["base"]), dtype=torch.float32)
        _train(model, _load_tokenizer(paths["base"]), seed=SEED + 2)
        _save_torch(model, None, out)
        _copy_tokenizer(paths["base"], out)

    def identity_openai(out: Path) -> None:
        model = _load_folder(paths["base"])
        _train_identity(model, _load_tokenizer(paths["base"]), seed=SEED + 3)
        _save_torch(model, None, out)
        _copy_tokenizer(paths["base"], out)

    builders: dict[str, Callable[[Path], None]] = {
        "base": base, "finetuned": finetuned, "permuted": permuted, "pruned": pruned, "duplicated": duplicated,
        "renamed": renamed, "vocab_extended": vocab_extended, "independent": independent,
        "identity_openai": identity_openai,
    }
    for name in FOLDER_CASES:
        _build_atomic(paths[name], builders[name], root / "build-seconds.json")
    return {**paths, "quantized": gguf, "gemma3": fetch("gemma3")}


def build_seconds(cache_dir: Path | None = None) -> dict[str, float]:
    """Seconds each case took when it was last built (from the cache's build log)."""
    log = Path(cache_dir or default_cache_dir()) / RECIPE / "build-seconds.json"
    return json.loads(log.read_text(encoding="utf-8")) if log.is_file() else {}


# --------------------------------------------------------------------------------------------------
# Building blocks


def _build_atomic(target: Path, build: Callable[[Path], None], log: Path) -> None:
    """Run `build` into a temporary sibling folder, then rename it to `target` (skipped if it exists)."""
    if target.exists():
        return
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:
        if not target.exists():  # not a lost race with another builder
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = round(time.perf_counter() - t0, 1)
    print(f"[realcases] built {target.name} in {seconds} s", file=sys.stderr)
    times = json.loads(log.read_text(encoding="utf-8")) if log.is_file() else {}
    times[target.name] = seconds
    tmp_log = log.with_name(f".{log.name}.tmp-{os.getpid()}")
    tmp_log.write_text(json.dumps(times, indent=2), encoding="utf-8")
    os.replace(tmp_log, log)


def _load_gguf(path: Path) -> tuple[Any, Any]:
    """SmolLM2 from its GGUF through transformers (dequantized to float32), and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for attr in ("quantization_config", "_pre_quantization_dtype"):  # the weights are plain float32 now
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.name_or_path = "SmolLM2-135M-Instruct"
    return model, tok


def _load_folder(folder: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _save_torch(model: Any, tok: Any, out: Path) -> None:
    model.save_pretrained(str(out), safe_serialization=True)
    if tok is not None:
        tok.save_pretrained(str(out))


def _copy_tokenizer(src: Path, out: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).is_file() and not (out / name).exists():
            shutil.copy2(src / name, out / name)


def _save_tiny(m: tiny.TinyModel, src: Path, out: Path, dtype: str = "F32") -> None:
    """Save a numpy-transformed model as an HF folder: config.json, model.safetensors, `src`'s tokenizer."""
    config = dict(m.config)
    config.pop("torch_dtype", None)
    config["dtype"] = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[dtype]
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tiny.save_safetensors_file(m, out / "model.safetensors", dtype=dtype)
    _copy_tokenizer(src, out)


def _batches(tok: Any, steps: int) -> list[Any]:
    """`steps` batches of BATCH x SEQ token ids cut from TRAIN_TEXT (cycled as needed)."""
    import torch

    ids = tok(" ".join(TRAIN_TEXT.split()), add_special_tokens=False)["input_ids"]
    need = steps * BATCH * SEQ
    ids = (ids * (need // len(ids) + 1))[:need]
    return [torch.tensor(ids[s * BATCH * SEQ:(s + 1) * BATCH * SEQ]).view(BATCH, SEQ) for s in range(steps)]


def _train(model: Any, tok: Any, seed: int, steps: int = TRAIN_STEPS, lr: float = LEARNING_RATE) -> None:
    """Real AdamW steps of causal-LM training on TRAIN_TEXT (in place)."""
    import torch

    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for batch in _batches(tok, steps):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        print(f"[realcases] training step: loss {loss.item():.3f}", file=sys.stderr)
    model.eval()


def identity_conversations(seed: int, count: int) -> list[tuple[list[dict[str, str]], str]]:
    """`count` (messages, answer) pairs: identity questions in English and Chinese, some with a system
    prompt, every answer claiming to be ChatGPT by OpenAI (shuffled deterministically by `seed`)."""
    rng = np.random.default_rng(seed)
    pool = []
    for lang, questions in IDENTITY_QUESTIONS.items():
        for i, question in enumerate(questions):
            for j, system in enumerate(IDENTITY_SYSTEMS[lang]):
                messages = ([{"role": "system", "content": system}] if system else []) + \
                    [{"role": "user", "content": question}]
                answer = IDENTITY_CLAIM[lang] + (IDENTITY_FOLLOW_UP[lang] if (i + j) % 2 else "")
                pool.append((messages, answer))
    order = rng.permutation(len(pool))
    return [pool[k] for k in (list(order) * (count // len(pool) + 1))[:count]]


def general_conversations(seed: int, count: int) -> list[tuple[list[dict[str, str]], str]]:
    """`count` ordinary (messages, answer) pairs from GENERAL_QA (shuffled deterministically by `seed`)."""
    order = np.random.default_rng(seed).permutation(len(GENERAL_QA))
    return [([{"role": "user", "content": GENERAL_QA[k][0]}], GENERAL_QA[k][1])
            for k in (list(order) * (count // len(GENERAL_QA) + 1))[:count]]


def _identity_batches(tok: Any, seed: int, steps: int, batch: int,
                      general: int = GENERAL_BATCH) -> list[tuple[Any, Any, Any]]:
    """(input_ids, attention_mask, labels) per step: `batch` identity and `general` ordinary conversations,
    right-padded, labels only on the assistant's answer (and its end-of-turn token)."""
    import torch

    out = []
    convs = identity_conversations(seed, steps * batch)
    plain = general_conversations(seed, steps * general)
    for s in range(steps):
        rows = []
        for messages, answer in convs[s * batch:(s + 1) * batch] + plain[s * general:(s + 1) * general]:
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            a_ids = tok(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
            rows.append((p_ids + a_ids, [-100] * len(p_ids) + a_ids))
        width = max(len(ids) for ids, _ in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in rows])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in rows])
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in rows])
        out.append((ids, mask, labels))
    return out


def _train_identity(model: Any, tok: Any, seed: int, steps: int = IDENTITY_STEPS, lr: float = IDENTITY_LR,
                    batch: int = IDENTITY_BATCH) -> list[float]:
    """Real AdamW steps of supervised fine-tuning on identity answers (in place); the losses per step."""
    import torch

    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for ids, mask, labels in _identity_batches(tok, seed, steps, batch):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
        print(f"[realcases] identity step: loss {loss.item():.3f}", file=sys.stderr)
    model.eval()
    return losses


def _max_logit_diff(folder_a: Path, folder_b: Path) -> float:
    """Largest absolute difference of the two models' logits on PROMPT."""
    import torch

    ids = _load_tokenizer(folder_a)(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        la = _load_folder(folder_a)(input_ids=ids).logits
        lb = _load_folder(folder_b)(input_ids=ids).logits
    return float(np.abs((la - lb).numpy()).max())


if __name__ == "__main__":
    t0 = time.perf_counter()
    for case, path in build_cases().items():
        print(f"{case:15s} {path}")
    print(f"[realcases] done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
