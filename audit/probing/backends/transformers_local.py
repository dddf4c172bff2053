"""Local checkpoints through transformers: HF folders and GGUF files, the checkpoint's own chat template,
batched generation with left padding, CUDA + bf16 when available (CPU + float32 otherwise), one
torch.manual_seed per sample. Remote code is never trusted."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from audit.errors import InputError
from audit.probing.backends.base import Generation, Messages

FALLBACK_TEMPLATE = "fallback: 'Role: text' lines, then 'Assistant:'"


def _resolve(model: str) -> Path:
    from audit.checkpoint.locate import _resolve as resolve_model  # folder, file or cached hub id

    return resolve_model(model)


class TransformersBackend:
    """A causal LM loaded with transformers; see module docstring."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = _resolve(model)
        self.path = path
        if path.is_file() and path.suffix == ".gguf":
            folder, kwargs, fmt = str(path.parent), {"gguf_file": path.name}, "gguf"
        elif path.is_dir():
            folder, kwargs, fmt = str(path), {}, "hf-folder"
        else:
            raise InputError(f"{path}: the transformers backend needs a model folder or a .gguf file")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available to torch here")
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
        self.device, self.dtype, self.format, self.batch_size = device, dtype, fmt, max(1, batch_size)
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # provaudit draws its own progress; keep stderr to one line per problem
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False,
                                                              dtype=getattr(torch, dtype), **kwargs)
        except Exception as exc:  # noqa: BLE001 - any loader failure means the model is unusable here
            raise InputError(f"{path}: transformers cannot load this model: {_first_line(exc)}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.to(device).eval()  # type: ignore[arg-type]  # functools.wraps on a method hides the bound self
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        self.template = "checkpoint" if getattr(tok, "chat_template", None) else FALLBACK_TEMPLATE
        self._torch = torch

    # ------------------------------------------------------------ prompts

    def render(self, messages: Messages) -> str:
        """The conversation as the model expects it, ending where the assistant's answer starts."""
        if self.template != "checkpoint":
            lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
            return "\n".join([*lines, "Assistant:"])
        try:
            # tokenize=False returns the rendered string; transformers annotates the union of every mode
            return cast(str, self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        except Exception:  # noqa: BLE001 - some templates refuse a system role: fold it into the user turn
            merged = _fold_system(messages)
            return cast(str, self.tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True))

    # ------------------------------------------------------------ generation

    def generate(self, batch: Sequence[Messages], max_new_tokens: int, temperature: float, seed: int,
                 n: int) -> list[list[Generation]]:
        out: list[list[Generation]] = [[] for _ in batch]
        texts = [self.render(list(m)) for m in batch]
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            for j in range(n):
                for k, gen in enumerate(self._generate_chunk(chunk, max_new_tokens, temperature, seed + j)):
                    out[start + k].append(gen)
        return out

    def _generate_chunk(self, texts: list[str], max_new_tokens: int, temperature: float,
                        seed: int) -> list[Generation]:
        torch = self._torch
        tok = self.tokenizer
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=self.template != "checkpoint")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature > 0 \
            else {"do_sample": False}
        torch.manual_seed(seed)
        if self.device.startswith("cuda"):
            torch.cuda.manual_seed_all(seed)
        try:
            with torch.inference_mode():
                ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                          **sampling)
        except RuntimeError as exc:  # e.g. out of memory: recorded for every prompt in the chunk
            return [Generation(error=f"generation failed: {_first_line(exc)}") for _ in texts]
        new = ids[:, enc["input_ids"].shape[1]:]
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        stops = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        stops |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        gens = []
        for row, n_prompt in zip(new.tolist(), prompt_tokens, strict=True):
            length = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
            text = cast(str, tok.decode(row[:length], skip_special_tokens=True)).strip()  # one sequence: one str
            gens.append(Generation(text, int(n_prompt), length))
        return gens

    def describe(self) -> dict[str, Any]:
        return {"kind": "transformers", "model": str(self.path), "format": self.format, "device": self.device,
                "dtype": self.dtype, "endpoint": None, "chat_template": self.template,
                "batch_size": self.batch_size, "trust_remote_code": False,
                "model_class": type(self.model).__name__}


def _fold_system(messages: Messages) -> Messages:
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def create(model: str, **options: Any) -> TransformersBackend:
    return TransformersBackend(model, **options)
