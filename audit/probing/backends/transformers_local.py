"""Local checkpoints through transformers: HF folders and GGUF files, the checkpoint's own chat template,
CUDA + bf16 when available (CPU + float32 otherwise). Remote code is never trusted.

Generation is provaudit's own decode loop over the KV cache (not `model.generate`): every prompt x sample
of a call is one row, rows are sorted by prompt length and decoded `batch_size` at a time with left
padding, a prompt is prefilled once for all its samples, a row leaves the batch at its end-of-turn token,
and sample j draws from a generator seeded `seed + j` (see `generate`). `score` rates given completions
teacher-forced (one forward pass per batch, no generation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from audit.errors import InputError
from audit.probing.backends.base import TEMPERATURE_GRID, Generation, Messages, TokenScores

FALLBACK_TEMPLATE = "fallback: 'Role: text' lines, then 'Assistant:'"
# rows decoded together: on 2 CPU cores a SmolLM2-135M decode step costs ~28 ms a row at 12 rows, ~10 at 48,
# ~9 at 126 (benchmarks/bench_generation.py); 64 keeps the default run (42 prompts x 3 samples) in 2 batches
DEFAULT_BATCH = 64
SCORE_LOGITS = 1 << 28  # most logits one scoring forward pass keeps (1 GiB in float32)


def _calm_cpu_threads() -> None:
    """OpenMP threads that sleep instead of spinning while they wait (unless the user set a policy).

    torch's CPU threads spin-wait for each other by default; when another process holds a core (a shared
    machine), each decode step then waits out whole scheduler slices: measured 2-5x slower on 2 busy cores.
    Takes effect only if torch's OpenMP runtime is not loaded yet (the env is read once, at load).
    """
    import os
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _resolve(model: str) -> Path:
    from audit.checkpoint.locate import _resolve as resolve_model  # folder, file or cached hub id

    return resolve_model(model)


class TransformersBackend:
    """A causal LM loaded with transformers; see module docstring."""

    batches_internally = True  # the runner hands it a whole run; `batch_size` caps the rows decoded together

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = DEFAULT_BATCH) -> None:
        _calm_cpu_threads()
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
        if dtype == "auto":  # CPU keeps float32 (reproducible across CPUs); bfloat16 is an explicit choice
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
        import inspect

        # transformers >= 5.2x names the KV-cache argument `cache` (`past_key_values` is deprecated there)
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        self._stops = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
        self._stops |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self._torch = torch
        # where generate's time goes (seconds, and counts): read and reset by benchmarks
        self.timings: dict[str, float] = {}

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
                 n: int, *, logprobs: bool = False, top_p: float | None = None,
                 on_prompt_done: Callable[[int], None] | None = None) -> list[list[Generation]]:
        """n samples of every conversation, all prompts x samples decoded together in rows of `batch_size`.

        Rows are sorted by prompt length (less padding), a prompt is prefilled once for all its samples,
        and each row leaves the batch at its end-of-turn token. Sample j of every prompt draws from its own
        torch.Generator seeded `seed + j`, one uniform number per token (inverse-CDF sampling at
        `temperature`), so an answer depends on (prompt, seed, settings) and not on which other rows share
        its batch (up to float rounding of padded batches). temperature 0 is greedy (argmax). `top_p`
        samples from the nucleus: the most likely tokens whose probability before them is below top_p.
        """
        out: list[list[Generation]] = [[Generation() for _ in range(n)] for _ in batch]
        if not batch or n < 1:
            return out
        t0 = time.perf_counter()
        prompts = [self._prompt_ids(list(m)) for m in batch]
        self._clock("template", t0)
        rows = sorted(((i, j) for i in range(len(batch)) for j in range(n)), key=lambda r: (len(prompts[r[0]]), r))
        left = [n] * len(batch)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            try:
                gens = self._decode([prompts[i] for i, _ in chunk], [seed + j for _, j in chunk], max_new_tokens,
                                    temperature, logprobs, top_p)
            except RuntimeError as exc:  # e.g. out of memory: recorded for every row of the chunk
                gens = [Generation(error=f"generation failed: {_first_line(exc)}") for _ in chunk]
            for (i, j), gen in zip(chunk, gens, strict=True):
                out[i][j] = gen
                left[i] -= 1
                if left[i] == 0 and on_prompt_done is not None:
                    on_prompt_done(i)
        return out

    def _prompt_ids(self, messages: Messages) -> list[int]:
        enc = self.tokenizer(self.render(messages), add_special_tokens=self.template != "checkpoint")
        return list(enc["input_ids"])

    def _decode(self, prompts: list[list[int]], seeds: list[int], max_new_tokens: int, temperature: float,
                logprobs: bool, top_p: float | None = None) -> list[Generation]:
        """Decode one row per (prompt, seed) with the KV cache; finished rows are dropped from the batch."""
        torch = self._torch
        from transformers import DynamicCache

        unique: dict[tuple[int, ...], int] = {}
        of_row = [unique.setdefault(tuple(p), len(unique)) for p in prompts]
        ids, mask = self._left_pad([list(p) for p in unique])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # transformers < 4.56 builds its layers lazily without the config
            cache = DynamicCache()
        gens = [torch.Generator().manual_seed(s) for s in seeds] if temperature > 0 else []
        new: list[list[int]] = [[] for _ in prompts]
        scores: list[list[float]] = [[] for _ in prompts]
        with torch.inference_mode():
            t0 = time.perf_counter()
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                                logits_to_keep=1, **{self._cache_kw: cache}).logits[:, -1, :]
            self._clock("prefill", t0, prefill_tokens=int(mask.sum()))
            index = torch.tensor(of_row, device=self.device)
            if len(unique) != len(prompts):  # the samples of one prompt share its prefill
                cache.batch_select_indices(index)
            logits, mask = logits[index], mask[index]
            next_pos = mask.sum(-1, keepdim=True)
            active = list(range(len(prompts)))
            for step in range(max_new_tokens):
                t0 = time.perf_counter()
                picked, logp = self._pick(logits, [gens[r] for r in active] if gens else [], temperature, logprobs,
                                          top_p)
                self._clock("sample", t0, tokens=len(active))
                keep: list[int] = []
                for k, (r, t) in enumerate(zip(active, picked, strict=True)):
                    new[r].append(t)
                    if logp is not None:
                        scores[r].append(logp[k])
                    if t not in self._stops:
                        keep.append(k)
                if not keep or step == max_new_tokens - 1:
                    break
                token = torch.tensor(picked, device=self.device)[:, None]
                if len(keep) < len(active):
                    kept = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(kept)
                    token, mask, next_pos = token[kept], mask[kept], next_pos[kept]
                    active = [active[k] for k in keep]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
                t0 = time.perf_counter()
                logits = self.model(input_ids=token, attention_mask=mask, position_ids=next_pos, use_cache=True,
                                    **{self._cache_kw: cache}).logits[:, -1, :]
                next_pos = next_pos + 1
                self._clock("decode", t0, steps=1, decode_rows=len(active))
        tok = self.tokenizer
        out = []
        for prompt, row, lps in zip(prompts, new, scores, strict=True):
            text = cast(str, tok.decode(row, skip_special_tokens=True)).strip()  # one sequence: one str
            gen = Generation(text, len(prompt), len(row),
                             finish_reason="stop" if row and row[-1] in self._stops else "length")
            if logprobs:
                gen.token_ids, gen.tokens, gen.logprobs = row, self._token_strings(row), lps
            out.append(gen)
        return out

    def _clock(self, part: str, since: float, **counts: int) -> None:
        """Add the time since `since` to `timings[part]` (CUDA synchronized first) and the given counts."""
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()
        self.timings[part] = self.timings.get(part, 0.0) + time.perf_counter() - since
        for key, value in counts.items():
            self.timings[key] = self.timings.get(key, 0) + value

    def _pick(self, logits: Any, gens: list[Any], temperature: float, logprobs: bool,
              top_p: float | None = None) -> tuple[list[int], list[float] | None]:
        """The next token of every row (argmax, or inverse-CDF sampling with one uniform per row generator)
        and, when asked, its log-probability under the model (temperature 1)."""
        torch = self._torch
        logits = logits.float()
        if temperature > 0:
            # unnormalised weights exp((l - max) / T), in place; token = first index whose running sum
            # exceeds u * total (side="right": a zero-weight token can never be picked)
            weights = logits / temperature
            weights.sub_(weights.amax(dim=-1, keepdim=True)).exp_()
            if top_p is not None and top_p < 1:
                weights.mul_(_nucleus_mask(weights / weights.sum(dim=-1, keepdim=True), top_p))
            cdf = weights.cumsum(dim=-1)
            u = torch.cat([torch.rand(1, generator=g) for g in gens]).to(logits.device)[:, None]
            picked = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp(max=logits.shape[-1] - 1)
            if bool((weights.gather(-1, picked) == 0).any()):  # u * total rounded up to total: most likely
                picked = torch.where(weights.gather(-1, picked) > 0, picked, weights.argmax(-1, keepdim=True))
            token = picked[:, 0]
        else:
            token = logits.argmax(dim=-1)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, token[:, None])[:, 0].tolist() if logprobs else None
        return token.tolist(), logp

    def _token_strings(self, ids: list[int]) -> list[str]:
        """Each token as its own decoded text (byte-level pieces may be partial UTF-8: shown as U+FFFD)."""
        return [cast(str, self.tokenizer.decode([t], skip_special_tokens=False)) for t in ids]

    def _left_pad(self, seqs: list[list[int]]) -> tuple[Any, Any]:
        torch = self._torch
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        return ids, mask

    # ------------------------------------------------------------ teacher-forced scoring

    def score(self, conversations: Sequence[Messages], completions: Sequence[str], top_k: int = 0, *,
              pit: tuple[float, float | None] | None = None,
              stopped: Sequence[bool] | None = None) -> list[TokenScores]:
        """Score each completion as the answer to its conversation: one forward pass per `batch_size`
        pairs, no generation. The completion is tokenized on its own after the rendered prompt.

        `pit=(temperature, top_p)` also fills `TokenScores.pit` (see `pit_parts`) for the distribution a
        sampler at those settings draws from; a completion marked in `stopped` (the model ended its turn)
        gets one more PIT entry, for the end-of-turn token (the model's most likely stop token there)."""
        if len(conversations) != len(completions):
            raise ValueError(f"{len(conversations)} conversations for {len(completions)} completions")
        pairs = [(self._prompt_ids(list(m)), self._canonical_ids(c))
                 for m, c in zip(conversations, completions, strict=True)]
        ends = list(stopped) if stopped is not None else [False] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out: list[TokenScores] = [TokenScores() for _ in pairs]
        vocab = int(self.model.config.get_text_config().vocab_size)
        chunks: list[list[int]] = []
        for i in order:  # at most batch_size pairs, and logits of at most SCORE_LOGITS floats, per forward pass
            widest = max([len(pairs[k][1]) for k in chunks[-1]] + [len(pairs[i][1])]) if chunks else 0
            if chunks and len(chunks[-1]) < self.batch_size and (len(chunks[-1]) + 1) * (widest + 1) * vocab \
                    <= SCORE_LOGITS:
                chunks[-1].append(i)
            else:
                chunks.append([i])
        for chunk in chunks:
            try:
                scored = self._score_chunk([pairs[i] for i in chunk], top_k, pit, [ends[i] for i in chunk])
            except RuntimeError as exc:
                scored = [TokenScores(error=f"scoring failed: {_first_line(exc)}") for _ in chunk]
            for i, s in zip(chunk, scored, strict=True):
                out[i] = s
        return out

    def _canonical_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _score_chunk(self, pairs: list[tuple[list[int], list[int]]], top_k: int,
                     pit: tuple[float, float | None] | None = None,
                     ends: list[bool] | None = None) -> list[TokenScores]:
        torch = self._torch
        longest = max(len(c) for _, c in pairs)
        if longest == 0:
            return [TokenScores(prompt_tokens=len(p)) for p, _ in pairs]
        ids, mask = self._left_pad([p + c for p, c in pairs])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            # every row ends at the last column: the last `longest + 1` positions predict every completion token
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                logits_to_keep=longest + 1).logits
            out = []
            for r, (prompt, comp) in enumerate(pairs):
                c = len(comp)
                if c == 0:
                    out.append(TokenScores(prompt_tokens=len(prompt)))
                    continue
                # position k of the kept window predicts completion token k
                rows = torch.log_softmax(logits[r, longest - c:longest].float(), dim=-1)
                target = torch.tensor(comp, device=rows.device)[:, None]
                chosen = rows.gather(-1, target)
                ranks = (rows > chosen).sum(-1) + 1
                entropy = -(rows.exp() * rows).nan_to_num().sum(-1)
                top = None
                if top_k > 0:
                    values, idx = rows.topk(min(top_k, rows.shape[-1]), dim=-1)
                    top = [list(zip(i, v, strict=True)) for i, v in zip(idx.tolist(), values.tolist(), strict=True)]
                scores = TokenScores(comp, self._token_strings(comp), chosen[:, 0].tolist(),
                                     ranks.tolist(), entropy.tolist(), top, len(prompt))
                if pit is not None:
                    window = logits[r, longest - c:longest + 1].float()
                    targets = list(comp)
                    if ends and ends[r] and self._stops:
                        stops = sorted(self._stops)
                        targets.append(stops[int(window[c, stops].argmax())])
                    scores.pit = pit_parts(window[:len(targets)], targets, pit[0], pit[1])
                    if pit[0] > 0:
                        scores.temperature_ll = temperature_likelihoods(window[:len(targets)], targets)
                out.append(scores)
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": "transformers", "model": str(self.path), "format": self.format, "device": self.device,
                "dtype": self.dtype, "endpoint": None, "chat_template": self.template,
                "batch_size": self.batch_size, "trust_remote_code": False,
                "model_class": type(self.model).__name__}


def _nucleus_mask(probs: Any, top_p: float) -> Any:
    """1 for the tokens a top-p sampler keeps (probability of the more likely tokens before it < top_p, ties
    by token id), else 0; rows of `probs` are distributions."""
    import torch

    order = torch.argsort(-probs, dim=-1, stable=True)
    sorted_p = probs.gather(-1, order)
    keep_sorted = ((sorted_p.cumsum(dim=-1) - sorted_p) < top_p).to(probs.dtype)
    keep_sorted[..., 0] = 1
    return torch.zeros_like(probs).scatter(-1, order, keep_sorted)


def pit_parts(logits: Any, targets: Sequence[int], temperature: float,
              top_p: float | None) -> list[tuple[float, float, float, float, float]]:
    """Per position, what the same-model tests need about the target token under the distribution q that a
    sampler at `temperature` and `top_p` draws from (tokens ranked by probability, ties by id):

    (below, prob, surprisal, mean, var): the mass of q ranked before the target and the target's mass under q
    (randomized PIT: below + V * prob is Uniform(0, 1) when the target was drawn from q); its surprisal
    -log p_T(target) under the tempered, untruncated distribution (finite even outside the nucleus), and that
    surprisal's mean and variance when the token is drawn from q. Temperature 0: q is a point mass on the
    argmax, (0, 1, 0, 0, 0) for the argmax and (1, 0, 1, 0, 0) for any other token."""
    import torch

    t = torch.tensor(list(targets), device=logits.device)[:, None]
    if temperature <= 0:
        hit = (logits.argmax(dim=-1) == t[:, 0]).tolist()
        return [(0.0, 1.0, 0.0, 0.0, 0.0) if h else (1.0, 0.0, 1.0, 0.0, 0.0) for h in hit]
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    probs = logp.exp()
    px = probs.gather(-1, t)
    ids = torch.arange(probs.shape[-1], device=probs.device)[None, :]
    before = (probs > px) | ((probs == px) & (ids < t))
    below = (probs * before).sum(dim=-1)
    prob = px[:, 0]
    q = probs
    if top_p is not None and top_p < 1:
        q = probs * _nucleus_mask(probs, top_p)
        mass = q.sum(dim=-1)
        q = q / mass[:, None]
        inside = below < top_p
        below = torch.where(inside, below / mass, torch.ones_like(below))
        prob = torch.where(inside, prob / mass, torch.zeros_like(prob))
    f = (-logp).nan_to_num(posinf=0.0)  # tokens of probability 0 carry no mass under q
    mean = (q * f).sum(dim=-1)
    var = ((q * f * f).sum(dim=-1) - mean * mean).clamp(min=0)
    surprisal = -logp.gather(-1, t)[:, 0]
    return list(zip(below.clamp(0, 1).tolist(), prob.clamp(0, 1).tolist(), surprisal.tolist(), mean.tolist(),
                    var.tolist(), strict=True))


def temperature_likelihoods(logits: Any, targets: Sequence[int]) -> list[float]:
    """Log-likelihood of the targets under softmax(logits / T) for every T of TEMPERATURE_GRID (the sampling
    temperature that best explains a text is the grid value with the largest)."""
    import torch

    t = torch.tensor(list(targets), device=logits.device)[:, None]
    x = logits.double()
    return [float(torch.log_softmax(x / temp, dim=-1).gather(-1, t).sum()) for temp in TEMPERATURE_GRID]


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
