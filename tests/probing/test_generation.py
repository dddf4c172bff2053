"""The transformers backend's own decode loop and teacher-forced scoring, on a tiny random Llama (CPU).

Greedy answers must equal transformers' `generate` for the same prompt (left padding, the KV cache and
rows leaving the batch at their end included); sampled answers are reproducible per (seed, settings) and
do not depend on which other rows share the batch; `score` equals a plain forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from audit.probing.backends.base import BatchingBackend, Generation  # noqa: E402
from audit.probing.runner import ProbeSettings, run_probes  # noqa: E402
from audit.probing.suite import resolve_suite  # noqa: E402
from tests.probing.tinychat import build_tiny_chat  # noqa: E402

CONVS = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "system", "content": "You are Nimbus."}, {"role": "user", "content": "What model are you, exactly?"}],
    [{"role": "user", "content": "你是谁？"}],
    [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. Which company trained you?"}],
]


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory) -> Path:
    return build_tiny_chat(tmp_path_factory.mktemp("tinygen") / "tiny-chat", seed=1)


@pytest.fixture(scope="module")
def backend(tiny_chat):
    from audit.probing.backends import create_backend

    return create_backend("transformers", model=str(tiny_chat), device="cpu", batch_size=16)


def _hf_greedy(backend: Any, conv: list[dict[str, str]], max_new_tokens: int) -> list[int]:
    """transformers' own greedy generate on one unpadded prompt, cut after the first stop token."""
    import torch

    ids = torch.tensor([backend._prompt_ids(conv)])
    with torch.inference_mode():
        out = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=backend.tokenizer.pad_token_id)
    row = out[0, ids.shape[1]:].tolist()
    end = next((i + 1 for i, t in enumerate(row) if t in backend._stops), len(row))
    return row[:end]


def test_greedy_equals_transformers_generate(backend) -> None:
    """Left-padded batch of prompts of different lengths, several samples each: every row equals HF greedy."""
    out = backend.generate(CONVS, 12, 0.0, 0, 2, logprobs=True)
    for conv, row in zip(CONVS, out, strict=True):
        expected = _hf_greedy(backend, conv, 12)
        assert [g.token_ids for g in row] == [expected, expected]
        assert row[0].completion_tokens == len(expected)
        assert row[0].prompt_tokens == len(backend._prompt_ids(conv))


def test_rows_leaving_the_batch_keep_the_others_right(tiny_chat) -> None:
    """A stop token that some rows hit early: they leave the batch, the rest still equal HF greedy."""
    from audit.probing.backends import create_backend

    b = create_backend("transformers", model=str(tiny_chat), device="cpu", batch_size=16)
    runs = {tuple(_hf_greedy(b, c, 10)) for c in CONVS}
    # pick as extra stop a token that appears early in some greedy answers but not in all of them
    early = {}
    for row in runs:
        for pos, t in enumerate(row[:6]):
            early.setdefault(t, set()).add((row, pos))
    stop = next((t for t, where in early.items() if 0 < len({r for r, _ in where}) < len(runs)), None)
    if stop is None:
        pytest.skip("the tiny model's greedy answers share every early token")
    b._stops = set(b._stops) | {stop}
    out = b.generate(CONVS, 10, 0.0, 0, 1)
    lengths = [g.completion_tokens for [g] in out]
    assert min(lengths) < max(lengths)  # some rows did end early
    for conv, [gen] in zip(CONVS, out, strict=True):
        expected = _hf_greedy(b, conv, 10)
        assert gen.token_ids is None and gen.completion_tokens == len(expected)
        assert gen.text == b.tokenizer.decode(expected, skip_special_tokens=True).strip()


def test_stops_at_eos(backend) -> None:
    """A row ends at the first end-of-turn token, which is counted but not shown."""
    out = backend.generate(CONVS, 40, 1.5, 7, 4, logprobs=True)
    ended = [g for row in out for g in row if g.token_ids and g.token_ids[-1] in backend._stops]
    for g in (g for row in out for g in row):
        assert g.ok and g.completion_tokens == len(g.token_ids) <= 40
        assert not any(t in backend._stops for t in g.token_ids[:-1])  # nothing after a stop token
    assert ended, "no sampled answer reached an end-of-turn token"
    for g in ended:
        assert "<|im_end|>" not in g.text


def test_n_samples_and_seeds(backend) -> None:
    out = backend.generate(CONVS, 8, 1.0, 123, 3)
    assert [len(row) for row in out] == [3] * len(CONVS)
    assert all(isinstance(g, Generation) and g.ok for row in out for g in row)
    again = backend.generate(CONVS, 8, 1.0, 123, 3)
    assert [[g.text for g in row] for row in again] == [[g.text for g in row] for row in out]
    # samples of a prompt differ from each other, and another base seed gives other answers
    assert any(len({g.text for g in row}) > 1 for row in out)
    other = backend.generate(CONVS, 8, 1.0, 999, 3)
    assert [[g.text for g in row] for row in other] != [[g.text for g in row] for row in out]


def test_sample_j_uses_seed_plus_j_whatever_the_batch(tiny_chat) -> None:
    """Sample j of a prompt is the same answer alone (seed+j, n=1), in a batch of 2 rows, or among all rows."""
    from audit.probing.backends import create_backend

    together = create_backend("transformers", model=str(tiny_chat), device="cpu", batch_size=64)
    pairs = create_backend("transformers", model=str(tiny_chat), device="cpu", batch_size=2)
    all_rows = together.generate(CONVS, 10, 0.9, 40, 3, logprobs=True)
    two_rows = pairs.generate(CONVS, 10, 0.9, 40, 3, logprobs=True)
    assert [[g.token_ids for g in row] for row in two_rows] == [[g.token_ids for g in row] for row in all_rows]
    for i, conv in enumerate(CONVS):
        for j in range(3):
            [[alone]] = pairs.generate([conv], 10, 0.9, 40 + j, 1, logprobs=True)
            assert alone.token_ids == all_rows[i][j].token_ids


def test_sampled_logprobs_match_score(backend) -> None:
    """Logprobs returned with sampled tokens equal the teacher-forced score of those same tokens."""
    out = backend.generate(CONVS, 10, 1.0, 5, 1, logprobs=True)
    gens = [row[0] for row in out]
    # score the exact sampled ids: decode them without skipping specials so the tokenization round-trips
    texts = [backend.tokenizer.decode(g.token_ids) for g in gens]
    scores = backend.score(CONVS, texts)
    for g, s in zip(gens, scores, strict=True):
        if s.token_ids != g.token_ids:
            continue  # BPE re-tokenization of a decoded text can merge differently; compared where it round-trips
        assert s.logprobs == pytest.approx(g.logprobs, abs=1e-4)
        assert len(g.tokens) == len(g.token_ids)


def test_score_equals_a_plain_forward_pass(backend) -> None:
    import torch

    completions = ["I am a small assistant.", "我是一个小助手。", "", "The quick brown fox"]
    scores = backend.score(CONVS, completions, top_k=3)
    for conv, comp, s in zip(CONVS, completions, scores, strict=True):
        prompt = backend._prompt_ids(conv)
        ids = backend.tokenizer(comp, add_special_tokens=False)["input_ids"]
        assert s.ok and s.token_ids == ids and s.prompt_tokens == len(prompt)
        if not ids:
            assert s.logprobs == [] and s.ranks == [] and s.total == 0.0
            continue
        with torch.inference_mode():
            logits = backend.model(input_ids=torch.tensor([prompt + ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)[len(prompt) - 1:-1]
        want = logp.gather(-1, torch.tensor(ids)[:, None])[:, 0]
        assert s.logprobs == pytest.approx(want.tolist(), abs=1e-4)
        # rank 1 + tokens more likely; a random tiny model has near-ties, so allow float-rounding slack
        above = [int(x) + 1 for x in (logp > want[:, None] + 1e-5).sum(-1)]
        above_or_tied = [int(x) + 1 for x in (logp > want[:, None] - 1e-5).sum(-1)]
        assert all(lo <= r <= hi for r, lo, hi in zip(s.ranks, above, above_or_tied, strict=True))
        assert s.entropies == pytest.approx((-(logp.exp() * logp).sum(-1)).tolist(), abs=1e-4)
        assert s.top is not None and [t[0][1] for t in s.top] == pytest.approx(logp.max(-1).values.tolist(), abs=1e-4)
        assert all(r == 1 for r, t, i in zip(s.ranks, s.top, ids, strict=True) if t[0][0] == i)
        if comp.isascii():  # a CJK character spans byte-level tokens that do not decode on their own
            assert "".join(s.tokens) == backend.tokenizer.decode(ids)


def test_score_splits_batches_by_logit_budget(backend, monkeypatch) -> None:
    """A logits budget that fits one pair per forward pass gives the same scores as one batch."""
    from audit.probing.backends import transformers_local

    completions = ["I am a small assistant.", "Which company trained you?", "fox", "我是一个小助手。"]
    together = backend.score(CONVS, completions)
    monkeypatch.setattr(transformers_local, "SCORE_LOGITS", 1)
    alone = backend.score(CONVS, completions)
    for a, b in zip(together, alone, strict=True):
        assert a.token_ids == b.token_ids and a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_score_checks_its_input(backend) -> None:
    with pytest.raises(ValueError, match="2 conversations for 1 completions"):
        backend.score(CONVS[:2], ["x"])


def test_runner_hands_the_whole_run_to_a_batching_backend(tiny_chat) -> None:
    """One generate call for all suites; progress ticks once per probe; answers equal the per-batch path."""
    from audit.probing.backends import create_backend

    b = create_backend("transformers", model=str(tiny_chat), device="cpu", batch_size=8)
    assert isinstance(b, BatchingBackend)
    calls: list[int] = []
    real = b.generate

    def counting(batch, *args, **kwargs):
        calls.append(len(batch))
        return real(batch, *args, **kwargs)

    b.generate = counting
    suites = [resolve_suite("self-identity"), resolve_suite("distillation-leak")]
    ticks: list[str] = []

    class Bar:
        def start(self, description: str, total: int) -> None:
            ticks.append(f"start {total}")

        def tick(self) -> None:
            ticks.append("tick")

    settings = ProbeSettings(samples=2, max_new_tokens=5, temperature=0.8, seed=3)
    result = run_probes(b, suites, settings, progress=Bar())
    total = sum(len(s.probes) for s in suites)
    assert calls == [total]
    assert ticks == [f"start {total}"] + ["tick"] * total
    for suite, block in zip(suites, result["probes"], strict=True):
        assert block["suite"] == suite.name and len(block["responses"]) == 2 * len(suite.probes)
        convs = [p.message_list() for p in suite.probes]
        alone = real(convs, 5, 0.8, 3, 2)
        got = {(r["probe"], r["sample"]): r["text"] for r in block["responses"]}
        assert got == {(p.id, j): alone[i][j].text for i, p in enumerate(suite.probes) for j in range(2)}
