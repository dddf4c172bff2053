"""An OpenAI-compatible server on 127.0.0.1 that answers with a real local model (transformers).

    with ModelServer(path, hidden_system="You are ...", served_name="acme-chat-1") as srv:
        provaudit trace --endpoint srv.url --model acme-chat-1 -r smol=PATH

Honoured: temperature (0: greedy), top_p, max_tokens, seed (torch.manual_seed per request), logprobs +
top_logprobs (raw model log-probabilities, before temperature, as vLLM reports them). ``usage.prompt_tokens``
is the real tokenizer's count of the chat-templated prompt, the hidden system prompt included. The hidden
prompt is put in front of the client's messages as a system message; the model name answered is
``served_name`` (a relabelled model). ``temperature``: applied whatever the request asks (an endpoint that
ignores the setting). Generation runs one request at a time (a lock).
"""

from __future__ import annotations

import threading
from typing import Any

from tests.support.openai_server import OpenAITestServer


class ModelServer(OpenAITestServer):
    """See the module docstring. `path`: a model folder or GGUF file."""

    def __init__(self, path: str, *, served_name: str = "acme-chat-1", hidden_system: str | None = None,
                 temperature: float | None = None, **kwargs: Any) -> None:
        super().__init__(model=served_name, **kwargs)
        from audit.probing.backends.transformers_local import TransformersBackend

        self.backend = TransformersBackend(str(path), device="cpu", batch_size=1)
        self.hidden_system = hidden_system
        self.forced_temperature = temperature
        self._gen_lock = threading.Lock()

    def served_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
        """What the model sees: the hidden system prompt, then the client's messages."""
        msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        return ([{"role": "system", "content": self.hidden_system}, *msgs] if self.hidden_system else msgs)

    def completion(self, body: dict[str, Any], fault: str | None) -> dict[str, Any]:
        import torch

        b = self.backend
        tok = b.tokenizer
        messages = self.served_messages(body["messages"])
        special = b.template != "checkpoint"
        prompt = list(tok(b.render(messages), add_special_tokens=special)["input_ids"])
        temperature = float(body.get("temperature", 1.0) or 0.0)
        if self.forced_temperature is not None:
            temperature = self.forced_temperature
        top_p = float(body.get("top_p") or 1.0)
        max_tokens = int(body.get("max_tokens") or 16)
        seed = int(body.get("seed") or 0)
        sampling: dict[str, Any] = ({"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
                                    if temperature > 0 else {"do_sample": False, "temperature": None, "top_p": None,
                                                             "top_k": None})
        ids = torch.tensor([prompt])
        with self._gen_lock, torch.inference_mode():
            torch.manual_seed(seed)
            out = b.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                   pad_token_id=tok.pad_token_id, output_logits=True, return_dict_in_generate=True,
                                   **sampling)
        new = out.sequences[0, len(prompt):].tolist()
        eos = b.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
        end = next((i for i, t in enumerate(new) if t in stops), len(new))
        finish = "stop" if end < len(new) else "length"
        new = new[:end]
        text = "" if fault == "empty" else tok.decode(new, skip_special_tokens=True)
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": finish}
        if body.get("logprobs"):
            k = int(body.get("top_logprobs") or 0)
            content = []
            for step, t in enumerate(new):
                logp = torch.log_softmax(out.logits[step][0].float(), dim=-1)
                top = torch.topk(logp, k) if k else None
                content.append({
                    "token": tok.decode([t]), "logprob": float(logp[t]),
                    "top_logprobs": ([{"token": tok.decode([int(i)]), "logprob": float(v)}
                                      for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
                                     if top is not None else [])})
            choice["logprobs"] = {"content": content}
        with self._lock:
            n = len(self.requests)
        result: dict[str, Any] = {"id": f"chatcmpl-model-{n}", "object": "chat.completion", "created": 0,
                                  "model": self.model, "choices": [choice]}
        if self.usage and fault != "no-usage":
            result["usage"] = {"prompt_tokens": len(prompt), "completion_tokens": len(new),
                               "total_tokens": len(prompt) + len(new)}
        return result
