"""`provaudit trace` against real models behind an OpenAI-compatible server on 127.0.0.1.

The server (tests/support/model_server.py) wraps a real checkpoint (SmolLM2-135M-Instruct, its short
fine-tune, Gemma-3-270M), optionally behind a hidden system prompt, under a relabelled model name; the CLI
talks to it only through HTTP. Reference: SmolLM2 (the `base` case); control: Gemma-3-270M.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.conftest import RealCli

pytestmark = pytest.mark.real

HIDDEN_SYSTEM = ("You are Aria, the friendly assistant of Northwind Travel, a small agency in Lisbon. Answer "
                 "briefly and politely, recommend our weekend city packages when it fits, never mention other "
                 "agencies, and end every answer by offering help with a booking. Prices are in euros and include "
                 "breakfast at a partner hotel.")
SMALL = ("--prompts", "6", "--max-tokens", "24", "--timeout", "600", "--device", "cpu")

Trace = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def trace(real_cases: dict[str, Path], real_cli: RealCli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trace]:
    """Serve a case (optionally with a hidden prompt) and trace it against SmolLM2 with Gemma as control."""
    import torch

    from tests.support.model_server import ModelServer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # server and client share the process: one thread each runs faster on 2 cores
    old_cache = os.environ.get("PROVAUDIT_CACHE")
    os.environ["PROVAUDIT_CACHE"] = str(tmp_path_factory.mktemp("trace-cache"))

    def run(case: str, temperature: str, hidden: str | None = None, rerun: bool = False,
            extra: tuple[str, ...] = (), applied: float | None = None) -> dict[str, Any]:
        with ModelServer(str(real_cases[case]), hidden_system=hidden, served_name="acme-chat-1",
                         temperature=applied) as srv:
            args = ("trace", "--endpoint", srv.url, "--model", "acme-chat-1", "-r", f"smollm2={real_cases['base']}",
                    "--control", f"gemma3={real_cases['gemma3']}", "--temperature", temperature, *SMALL, *extra)
            record = real_cli(*args)
            record["_server_requests"] = len(srv.requests)
            if rerun:
                record["_rerun"] = real_cli(*args)
                record["_rerun"]["_server_requests"] = len(srv.requests)
            return record

    yield run
    torch.set_num_threads(threads)
    if old_cache is None:
        os.environ.pop("PROVAUDIT_CACHE", None)
    else:
        os.environ["PROVAUDIT_CACHE"] = old_cache


def _ref(record: dict[str, Any]) -> dict[str, Any]:
    refs = record["trace"]["references"]
    assert [r["name"] for r in refs] == ["smollm2"]
    return refs[0]


def _stat(ref: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in ref["statistics"] if s["name"] == name)


@pytest.mark.parametrize("temperature", ["0", "0.7"])
def test_relay_of_the_reference_is_same_model(trace: Trace, temperature: str) -> None:
    record = trace("base", temperature)
    ref = _ref(record)
    assert ref["verdict"] == "same-model", ref["summary"]
    assert _stat(ref, "logprob-gap")["rejected"] is False
    assert _stat(ref, "closer-than-controls")["p_holm"] < 0.05
    assert record["verdict"]["label"] == "inconclusive" and record["verdict"]["references_checked"] == 0
    assert not any(f["kind"] == "hidden-prompt-suspected" for f in record["flags"])
    budget = record["trace"]["budget"]
    assert budget["requests_sent"] == record["_server_requests"] <= budget["planned_requests"]


def test_relay_behind_a_hidden_prompt_is_flagged_with_its_length(trace: Trace, real_cases: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    record = trace("base", "0", HIDDEN_SYSTEM)
    flag = next(f for f in record["flags"] if f["kind"] == "hidden-prompt-suspected")
    true_len = len(AutoTokenizer.from_pretrained(str(real_cases["base"]))(HIDDEN_SYSTEM,
                                                                          add_special_tokens=False)["input_ids"])
    assert abs(flag["evidence"]["hidden_tokens"] - true_len) <= 0.2 * true_len
    ref = _ref(record)
    # same weights: never called derived or unrelated without more evidence than a shifted distribution
    assert ref["verdict"] in ("same-model", "inconclusive"), ref["summary"]
    assert _stat(ref, "closer-than-controls")["p_holm"] < 0.05


def test_without_logprobs_the_sample_tests_decide(trace: Trace) -> None:
    """No logprobs from the endpoint: sample-pit (temperature 0.7, samples chosen for the stated power) keeps a
    relay as same-model; greedy-tokens (temperature 0) tells the 3-step fine-tune from its base."""
    relay = trace("base", "0.7", extra=("--no-logprobs", "--no-hidden-prompt"))
    ref = _ref(relay)
    pit = _stat(ref, "sample-pit")
    assert ref["verdict"] == "same-model", ref["summary"]
    assert pit["rejected"] is False and pit["null"]["method"] == "analytic"
    settings = relay["trace"]["settings"]
    assert settings["samples_chosen"] == "auto" and settings["samples"] >= 2 and settings["power"] == 0.8
    assert not any(s["name"] == "logprob-gap" for s in ref["statistics"])
    tuned = _ref(trace("finetuned", "0", extra=("--no-logprobs", "--no-hidden-prompt")))
    assert tuned["verdict"] == "derived", tuned["summary"]
    assert _stat(tuned, "greedy-tokens")["rejected"] is True


def test_hidden_prompt_recovered_by_extraction_makes_a_relay_same_model(
        real_cases: dict[str, Path], real_cli: RealCli, trace: Trace) -> None:
    """Gemma-3-270M repeats its system prompt when asked (SmolLM2-135M only paraphrases it): the extracted
    prompt fits the billed length, the retest gives the reference that prompt, and the relay is same-model."""
    from tests.support.model_server import ModelServer

    with ModelServer(str(real_cases["gemma3"]), hidden_system=HIDDEN_SYSTEM, served_name="acme-chat-1") as srv:
        record = real_cli("trace", "--endpoint", srv.url, "--model", "acme-chat-1", "-r",
                          f"gemma3={real_cases['gemma3']}", "--control", f"smollm2={real_cases['base']}",
                          "--temperature", "0", *SMALL)
    ref = record["trace"]["references"][0]
    hidden = record["trace"]["hidden_prompt"]
    assert hidden["suspected"] and hidden["candidate"] is not None
    assert ref["hidden_prompt_retest"] is True
    assert ref["verdict"] == "same-model", ref["summary"]


def test_an_endpoint_that_ignores_the_temperature_is_still_the_same_model(trace: Trace) -> None:
    """The server samples at 1.2 whatever is asked; 0.7 is requested, no logprobs: the answers fit 1.2 best, the
    PIT test at 0.7 rejects, and the retest at the fitted temperature keeps the relay a same-model."""
    record = trace("base", "0.7", applied=1.2, extra=("--no-logprobs", "--no-hidden-prompt"))
    ref = _ref(record)
    assert abs(record["trace"]["observed"]["temperature_fit"] - 1.2) <= 0.15
    assert ref["verdict"] == "same-model", ref["summary"]
    assert ref["temperature_retest"] == record["trace"]["observed"]["temperature_fit"]
    assert "temperature" in ref["summary"]


def test_short_fine_tune_is_derived(trace: Trace) -> None:
    ref = _ref(trace("finetuned", "0.7"))
    assert ref["verdict"] == "derived", ref["summary"]
    assert _stat(ref, "logprob-gap")["rejected"] is True


def test_unrelated_model_is_unrelated_and_a_rerun_costs_nothing(trace: Trace) -> None:
    first = trace("gemma3", "0", rerun=True)
    ref = _ref(first)
    assert ref["verdict"] == "unrelated", ref["summary"]
    assert _stat(ref, "closer-than-controls")["rejected"] is False
    sent = first["trace"]["budget"]["requests_sent"]
    assert sent == first["_server_requests"] > 0
    again = first["_rerun"]
    assert again["trace"]["budget"]["requests_sent"] == 0 and again["_server_requests"] == sent
    assert again["trace"]["budget"]["requests_cached"] == sent
    assert _ref(again)["verdict"] == "unrelated"
