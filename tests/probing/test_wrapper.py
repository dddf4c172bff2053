"""Endpoints that relay another vendor's model: tokenizer inference + identity claims -> wrapper-suspected.

The local OpenAI-compatible server bills prompt tokens with a real tokenizer applied to the chat-templated
prompt, exactly as a relaying API would.
"""

from __future__ import annotations

import pytest

from audit.probing.wrapper import tokenizer_vendors, wrapper_flag
from tests.probing.test_tokcount import PLAIN_TEMPLATE, _smollm2, _vocab
from tests.support.openai_server import OpenAITestServer


def _probe(run_cli, url: str, *extra: str) -> dict:
    res = run_cli("probe", "--endpoint", url, "--model", "acme-chat", "--suite", "self-identity", "--samples", "1",
                  "--json", "-", "-q", *extra)
    assert res.code == 0, res.err
    return res.record()


def _kinds(rec: dict) -> set[str]:
    return {f["kind"] for f in rec["flags"]}


def test_rule_needs_an_identified_tokenizer_and_a_foreign_vendor():
    identified = {"status": "identified", "family": "gpt2", "name": "gpt-2", "same_counts_as": [], "summary": "x"}
    assert tokenizer_vendors()["gpt-2"] == "openai"
    assert wrapper_flag(identified, [], []) is None  # nothing declared, nothing claimed: no accusation
    assert wrapper_flag(identified, [], ["openai"])["kind"] == "wrapper-suspected"
    assert wrapper_flag(identified, ["openai"], []) is None  # the operator says it is OpenAI's: fine
    assert wrapper_flag(identified, ["declared"], [], ["Acme AI"])["kind"] == "wrapper-suspected"
    assert wrapper_flag({"status": "inconclusive"}, ["declared"], ["openai"]) is None


@pytest.mark.real
def test_relay_of_openai_style_model_is_suspected(run_cli):
    """Bills with the gpt-2 (OpenAI) tokenizer and claims to be ChatGPT: distillation-leak and wrapper-suspected."""
    answer = "I am ChatGPT, a large language model trained by OpenAI."
    with OpenAITestServer(answer, tokenizer=_vocab("gpt-2"), chat_template=PLAIN_TEMPLATE) as srv:
        rec = _probe(run_cli, srv.url)
    assert {"distillation-leak", "wrapper-suspected"} <= _kinds(rec)
    flag = next(f for f in rec["flags"] if f["kind"] == "wrapper-suspected")
    assert flag["evidence"]["tokenizer_inference"]["family"] == "gpt2"
    assert "signal, not proof" in flag["detail"]


@pytest.mark.real
def test_self_developed_claim_billed_with_another_vendors_tokenizer(run_cli):
    """Says it is Acme's own model, but bills with SmolLM2's tokenizer: wrapper-suspected, no identity leak."""
    tok, template = _smollm2()
    with OpenAITestServer("I am Acme Assistant, developed by Acme AI.", tokenizer=tok, chat_template=template) as srv:
        rec = _probe(run_cli, srv.url, "--declared", "Acme AI")
    assert _kinds(rec) == {"wrapper-suspected"}
    assert rec["probe_run"]["tokenizer_inference"]["name"] == "smollm2"


@pytest.mark.real
def test_honest_endpoint_gets_no_flag(run_cli):
    tok, template = _smollm2()
    with OpenAITestServer("I am SmolLM, a small model trained by Hugging Face.", tokenizer=tok,
                          chat_template=template) as srv:
        rec = _probe(run_cli, srv.url, "--declared", "Hugging Face")
    assert _kinds(rec) == set()
    assert rec["probe_run"]["tokenizer_inference"]["status"] == "identified"
