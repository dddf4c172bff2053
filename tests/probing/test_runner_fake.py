"""The runner on the scripted fake backend: flags, declared names, noise, errors, seeds, the event log."""

from __future__ import annotations

import json
import math
from pathlib import Path

from audit.probing.backends import create_backend
from audit.probing.backends.base import Backend, Generation
from audit.probing.backends.fake import FakeBackend
from audit.probing.flags import CAVEAT, binomial_sf
from audit.probing.runner import ProbeSettings, run_probes
from audit.probing.suite import list_suites, resolve_suite

SUITES = list_suites()


def run(backend: Backend, **settings) -> dict:
    return run_probes(backend, SUITES, ProbeSettings(**settings))


def flagged(result: dict) -> list[str]:
    return [f["evidence"]["vendor"] for f in result["flags"] if f["kind"] == "distillation-leak"]


def test_fake_backend_is_a_backend() -> None:
    backend = create_backend("fake", rules={"who": "me"})
    assert isinstance(backend, Backend)
    assert backend.generate([[{"role": "user", "content": "who?"}]], 8, 0.7, 5, 2)[0][1].text == "me"
    assert backend.describe()["kind"] == "fake"


def test_chatgpt_claims_flag_openai() -> None:
    backend = FakeBackend({"你|我": "我是ChatGPT，由OpenAI开发的人工智能助手。"},
                          default="Hello! I'm ChatGPT, a large language model trained by OpenAI.")
    result = run(backend)
    assert flagged(result) == ["openai"]
    flag = result["flags"][0]
    ev = flag["evidence"]
    assert "OpenAI" in flag["detail"] and CAVEAT in flag["detail"] and "signal, not proof" in flag["detail"]
    assert ev["count"] == ev["of"] > 100 and ev["share"] == 1.0
    assert ev["models"]["ChatGPT"] == ev["count"]
    assert set(ev["languages"]) == {"en", "zh"}
    assert ev["p_value"] < 1e-50 and ev["rule"]["min_count"] >= 1
    assert 1 <= len(ev["examples"]) <= 5
    example = ev["examples"][0]
    assert example["prompt"] and "ChatGPT" in example["response"] and example["claims"]
    # the per-suite blocks carry the claim counts, every prompt and every response
    block = next(b for b in result["probes"] if b["suite"] == "self-identity")
    assert {(c["vendor"], c["model"], c["language"]) for c in block["claims"]} == {
        ("openai", "ChatGPT", "en"), ("openai", "ChatGPT", "zh")}
    assert all(c["count"] == c["of"] for c in block["claims"])
    assert len(block["prompts"]) == len(resolve_suite("self-identity").probes)
    assert len(block["responses"]) == 3 * len(block["prompts"])
    assert block["detectors"] == ["identity"]
    json.dumps(result, allow_nan=False)  # serialisable as is


def test_honest_model_gets_no_flag() -> None:
    backend = FakeBackend(default="I am a helpful assistant. I can't tell you much about my training.",
                          rules={"你|我": "我是一个人工智能助手，很高兴为你服务。"})
    result = run(backend)
    assert result["flags"] == [] and result["probe_run"]["vendor_tests"] == []


def test_honest_model_that_mentions_others_gets_no_flag() -> None:
    backend = FakeBackend(default="I am not ChatGPT, and I am not affiliated with OpenAI; unlike Claude I am "
                                  "a small open model.",
                          rules={"你|我": "我不是ChatGPT，也不是文心一言。"})
    assert run(backend)["flags"] == []


def test_declared_vendor_never_flags() -> None:
    backend = FakeBackend(default="I am Qwen, a large language model created by Alibaba Cloud.",
                          rules={"你|我": "我是通义千问，由阿里云开发。"})
    assert flagged(run(backend)) == ["alibaba"]
    result = run(backend, declared=("Qwen",))
    assert result["flags"] == []
    row = result["probe_run"]["vendor_tests"][0]
    assert row["vendor"] == "alibaba" and row["declared"] and not row["flagged"] and row["count"] > 100
    assert result["probe_run"]["declared"] == {"names": ["Qwen"], "vendors": ["alibaba"]}


def test_declared_own_name_does_not_hide_a_foreign_claim() -> None:
    backend = FakeBackend(default="I am Acme AI, an assistant based on ChatGPT by OpenAI.")
    result = run(backend, declared=("Acme AI",))
    assert flagged(result) == ["openai"]
    tests = {t["vendor"]: t for t in result["probe_run"]["vendor_tests"]}
    assert tests["declared"]["declared"] and not tests["declared"]["flagged"]


def test_multiple_vendors() -> None:
    backend = FakeBackend({"你|我": "我是文心一言，由百度开发。"}, default="I'm Claude, made by Anthropic.")
    assert sorted(flagged(run(backend))) == ["anthropic", "baidu"]


def test_noise_does_not_flag() -> None:
    """A claim on one prompt only, or in a small share of answers, stays below the rule."""
    one_prompt = FakeBackend({r"^Who are you\?$": "I am ChatGPT."}, default="I am an assistant.")
    result = run(one_prompt)
    row = result["probe_run"]["vendor_tests"][0]
    assert result["flags"] == [] and row["count"] == 3 and row["prompts"] == 1 and "prompt" in row["reason"]

    def rare(messages, sample, seed):  # two prompts, one sample each: 2 of ~126 answers
        text = messages[-1]["content"]
        return "I am ChatGPT." if sample == 0 and text in ("Who are you?", "Who created you?") else "Hi."

    result = run(FakeBackend(responder=rare))
    assert result["flags"] == [] and result["probe_run"]["vendor_tests"][0]["count"] == 2


def test_errors_are_recorded_not_fatal() -> None:
    backend = FakeBackend({"feelings": "", "opinion": Generation(error="HTTP 500: boom"), "你": None},
                          default="I am an assistant.")
    result = run(backend)
    block = next(b for b in result["probes"] if b["suite"] == "distillation-leak")
    errors = {(e["probe"], e["error"]) for e in block["errors"]}
    assert ("en-feelings", "empty response") in errors
    assert ("en-opinion", "HTTP 500: boom") in errors
    assert block["failed"] == len(block["errors"]) >= 6
    assert result["probe_run"]["errors"] > 0
    events = [e["event"] for e in result["probe_run"]["events"]]
    assert "probe.error" in events and events[0] == "run.start" and events[-1] == "run.done"
    bad = next(r for r in block["responses"] if r["error"] == "empty response")
    assert "claims" not in bad  # an error is not scored


def test_backend_crash_becomes_probe_errors() -> None:
    class Broken(FakeBackend):
        def generate(self, batch, max_new_tokens, temperature, seed, n):
            if any("cutoff" in m[-1]["content"] for m in batch):
                raise RuntimeError("CUDA out of memory")
            return super().generate(batch, max_new_tokens, temperature, seed, n)

    result = run_probes(Broken(), SUITES, ProbeSettings(batch_size=2))
    block = next(b for b in result["probes"] if b["suite"] == "distillation-leak")
    assert any("CUDA out of memory" in e["error"] for e in block["errors"])
    assert block["answered"] > 0
    assert any(e["event"] == "batch.error" for e in result["probe_run"]["events"])


def test_seeds_and_settings_are_recorded() -> None:
    seen = []

    def responder(messages, sample, seed):
        seen.append((sample, seed))
        return "ok"

    result = run_probes(FakeBackend(responder=responder), [resolve_suite("self-identity")],
                        ProbeSettings(samples=4, seed=10, max_new_tokens=32, temperature=0.9))
    settings = result["probe_run"]["settings"]
    assert settings["seeds"] == [10, 11, 12, 13] and settings["samples"] == 4
    assert settings["temperature"] == 0.9 and settings["max_new_tokens"] == 32
    assert set(seen) == {(j, 10 + j) for j in range(4)}
    responses = result["probes"][0]["responses"]
    assert {(r["sample"], r["seed"]) for r in responses} == {(j, 10 + j) for j in range(4)}
    assert all(r["prompt_tokens"] and r["completion_tokens"] == 1 for r in responses)
    assert result["probe_run"]["backend"]["kind"] == "fake"


def test_binomial_tail_matches_scipy() -> None:
    from scipy.stats import binom

    for k, n, p in [(0, 10, 0.1), (3, 120, 0.02), (13, 123, 0.02), (120, 120, 0.02), (5, 4, 0.5)]:
        expected = float(binom.sf(k - 1, n, p)) if k <= n else 0.0
        assert math.isclose(binomial_sf(k, n, p), expected, rel_tol=1e-9, abs_tol=1e-300)


def test_cli_probe_with_fake_backend(run_cli, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text('- ["你|我", "我是ChatGPT，由OpenAI开发。"]\n- [".", "I am ChatGPT, trained by OpenAI."]\n',
                     encoding="utf-8")
    html = tmp_path / "r.html"
    res = run_cli("probe", "--fake", rules, "--samples", "2", "--seed", "7", "--json", "-", "--html", html, "-q")
    assert res.code == 0, res.err
    record = res.record()
    assert record["schema"] == "provaudit.record/2" and record["command"]["name"] == "probe"
    assert record["verdict"]["label"] == "inconclusive" and record["verdict"]["parent"] is None
    assert "no weights were compared" in record["verdict"]["summary"]
    assert [f["kind"] for f in record["flags"]] == ["distillation-leak"]
    assert {p["suite"] for p in record["probes"]} == {"self-identity", "distillation-leak"}
    assert record["probe_run"]["settings"]["seeds"] == [7, 8]
    page = html.read_text(encoding="utf-8")
    assert "distillation-leak" in page and "我是ChatGPT" in page and "signal, not proof" in page
    assert "Who are you?" in page
    # the terminal summary names the probes
    res = run_cli("probe", "--fake", rules, "--samples", "1", "--suite", "self-identity")
    assert res.code == 0 and "Probes self-identity" in res.out and "distillation-leak" in res.out


def test_parent_family_vendor_is_inherited_not_foreign() -> None:
    from audit.probing.session import inherited_vendors
    from audit.record.models import ModelInfo, Verdict

    refs = [ModelInfo(name="smollm2-135m-instruct", format="weight-fingerprint", family="smollm"),
            ModelInfo(name="gemma-3-270m", format="weight-fingerprint", family="gemma")]

    def verdict(label: str, parent: str | None) -> Verdict:
        return Verdict(label=label, parent=parent, summary="s")

    assert inherited_vendors(verdict("fine-tuned", "smollm2-135m-instruct"), refs) == ["Hugging Face"]
    assert inherited_vendors(verdict("derived", "gemma-3-270m"), refs) == ["Google"]
    assert inherited_vendors(verdict("original", None), refs) == []
    assert inherited_vendors(verdict("fine-tuned", "my-base"), [ModelInfo(name="my-base", format="hf-folder")]) == []
