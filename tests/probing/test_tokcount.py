"""Tokenizer inference for endpoints: probe strings, registry probe counts, offset fitting, the null, and real
tokenizers behind a local OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from audit.errors import InputError
from audit.fingerprinting.tokenizer_sketch import load_fingerprint_dir
from audit.probing.tokcount import (
    backend_counter,
    count_null,
    fit_offset,
    infer_tokenizer_family,
    load_probe_strings,
)
from tests.support.openai_server import OpenAITestServer

REPO = Path(__file__).resolve().parents[2]
FP_DIR = REPO / "fingerprints" / "tokenizers"
# entries whose counts are identical on every probe string (byte-identical vocabularies and splits; phi-3 is
# Llama 2's vocabulary plus added tokens): the answer names the group. qwen2/qwen35 differ on Thai (combining
# marks), gemma3/gemma-4 on HTML tags.
SAME_COUNTS = {"gpt-neox": {"mpt"}, "mpt": {"gpt-neox"},
               "bert-bge": {"minilm"}, "minilm": {"bert-bge"}, "llama-spm": {"phi-3"}, "phi-3": {"llama-spm"}}
PLAIN_TEMPLATE = "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n\n{% endfor %}Assistant:"


def _builder() -> ModuleType:
    name = "build_tokenizer_registry"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "build_tokenizer_registry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


BUILD = _builder()


@pytest.fixture(scope="module")
def fps() -> list[dict[str, Any]]:
    loaded, errors = load_fingerprint_dir(FP_DIR)
    assert not errors, errors
    return loaded


@pytest.fixture(scope="module")
def strings() -> list[str]:
    return load_probe_strings()


def _by_name(fps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(fp for fp in fps if fp["name"] == name)


def scripted(counts: dict[str, int], overhead: int, log: list[str] | None = None) -> Callable[[str], int | None]:
    """A count_fn that bills `overhead` + the counts of one registry tokenizer (the empty message: overhead)."""

    def count(text: str) -> int | None:
        if log is not None:
            log.append(text)
        return overhead + (counts[text] if text else 0)

    return count


def usage_counter(base_url: str, model: str = "test-model") -> Callable[[str], int | None]:
    """count_fn over HTTP: usage.prompt_tokens of a one-message chat request with max_tokens=1 (no proxies)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def count(text: str) -> int | None:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 1})
        req = urllib.request.Request(base_url + "/chat/completions", data=body.encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
        with opener.open(req, timeout=10) as resp:
            data = json.loads(resp.read().decode("utf-8"))
        return (data.get("usage") or {}).get("prompt_tokens")

    return count


# ---------------------------------------------------------------- data: strings file and registry counts


def test_bundled_strings_follow_the_rules(strings):
    assert 40 <= len(strings) <= 80
    assert len(set(strings)) == len(strings)
    assert all(s == s.strip() and s for s in strings)


@pytest.mark.parametrize("entry, problem", [
    ({"text": " leading"}, "whitespace"),
    ({"text": "twice"}, "twice"),
    ({"text": "<|im_start|>"}, "special token"),
    ({"text": ""}, "non-empty"),
])
def test_bad_strings_file_is_an_input_error(tmp_path, entry, problem):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"kind": "tokenizer-strings", "strings": [{"text": "twice"}, entry]}), encoding="utf-8")
    with pytest.raises(InputError, match=problem):
        load_probe_strings(path)


def test_wrong_kind_is_an_input_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("kind: suite\nstrings: [a]\n", encoding="utf-8")
    with pytest.raises(InputError, match="tokenizer-strings"):
        load_probe_strings(path)


def test_registry_counts_cover_the_strings_file(fps, strings):
    """Every entry has counts for exactly the bundled strings, except the ones the builder cannot count."""
    counted = {fp["name"] for fp in fps if "probe_counts" in fp}
    assert counted == set(BUILD.COUNTING)
    assert {fp["name"] for fp in fps} - counted == set(BUILD.NOT_COUNTED)
    for fp in fps:
        if "probe_counts" in fp:
            assert list(fp["probe_counts"]) == strings, f"{fp['name']}: rerun scripts/build_tokenizer_registry.py"
            assert all(isinstance(v, int) and v > 0 for v in fp["probe_counts"].values())
            check = fp["probe_counts_method"]["check"]
            assert check is None or check["same_count"] == check["strings"], fp["name"]


def test_strings_discriminate_between_families(fps, strings):
    """Different families agree on few strings: the null sits far below a perfect match."""
    counted = [fp for fp in fps if "probe_counts" in fp]
    null = count_null(counted, strings)
    assert null["n"] >= 300
    assert null["mean"] < 0.3 * len(strings)
    assert null["max"] < 0.7 * len(strings)


# ---------------------------------------------------------------- inference with scripted counts


def test_fit_offset_uses_the_lower_median():
    obs = {"a": 12, "b": 13, "c": 15, "d": 20}
    exp = {"a": 2, "b": 3, "c": 4, "d": 4}
    fit = fit_offset(obs, exp, ["a", "b", "c", "d"])
    assert fit == {"offset": 10, "matched": 2, "of": 4, "mae": 1.75}


@pytest.mark.parametrize("name", sorted(BUILD.COUNTING))
def test_every_counted_tokenizer_is_named_as_itself(fps, name):
    truth = _by_name(fps, name)
    log: list[str] = []
    result = infer_tokenizer_family(scripted(truth["probe_counts"], 17, log), fps)
    assert result["status"] == "identified", result["reason"]
    assert result["family"] == truth["family"]
    assert name == result["name"] or name in result["same_counts_as"]
    assert set(result["same_counts_as"]) | {result["name"]} == {name} | SAME_COUNTS.get(name, set())
    assert result["matched"] == result["of"] == len(truth["probe_counts"])
    assert result["offset"] == result["baseline_tokens"] == 17
    assert result["matched"] > result["null"]["max"]
    assert len(log) == result["requests"]["sent"] == len(truth["probe_counts"]) + 1


def test_a_few_boundary_misses_do_not_move_the_offset(fps, strings):
    counts = dict(_by_name(fps, "llama-bpe")["probe_counts"])
    for s in strings[:6]:
        counts[s] += 1
    result = infer_tokenizer_family(scripted(counts, 40), fps)
    assert result["status"] == "identified" and result["name"] == "llama-bpe"
    assert (result["matched"], result["of"], result["offset"]) == (len(strings) - 6, len(strings), 40)
    assert {m["string"] for m in result["mismatches"]} == set(strings[:6])
    assert all(m["off_by"] == 1 for m in result["mismatches"])


def test_a_tokenizer_outside_the_registry_is_inconclusive(fps):
    result = infer_tokenizer_family(lambda s: 12 + len(s.split()), fps)
    assert result["status"] == "inconclusive"
    assert "not in the registry" in result["reason"]
    assert result["family"] is None and result["ranking"]


def test_an_endpoint_without_usage_is_inconclusive_after_few_requests(fps):
    log: list[str] = []

    def no_usage(text: str) -> int | None:
        log.append(text)
        return None

    result = infer_tokenizer_family(no_usage, fps)
    assert result["status"] == "inconclusive"
    assert "no prompt-token count" in result["reason"] and "usage.prompt_tokens" in result["reason"]
    assert len(log) == result["requests"]["sent"] == 4  # baseline + 3 strings, then it gives up


def test_request_errors_are_recorded_not_raised(fps, strings):
    counts = _by_name(fps, "qwen2")["probe_counts"]
    broken = set(strings[10:14])

    def flaky(text: str) -> int | None:
        if text in broken:
            raise ConnectionError("connection reset")
        if text == strings[20]:
            return "many"  # type: ignore[return-value]  # a server answering nonsense
        return 9 + (counts[text] if text else 0)

    result = infer_tokenizer_family(flaky, fps)
    assert result["status"] == "identified" and result["family"] == "qwen"
    assert result["of"] == len(strings) - 5 and result["requests"]["failed"] == 5
    problems = [p["problem"] for p in result["requests"]["problems"]]
    assert sum("ConnectionError" in p for p in problems) == 4 and any("not a count" in p for p in problems)


def test_too_few_strings_or_no_counts_is_inconclusive(fps, strings):
    counts = _by_name(fps, "gpt-2")["probe_counts"]
    few = infer_tokenizer_family(scripted(counts, 3), fps, strings[:3])
    assert few["status"] == "inconclusive" and "only 3 strings" in few["reason"]
    bare = [{k: v for k, v in fp.items() if not k.startswith("probe_counts")} for fp in fps]
    none = infer_tokenizer_family(scripted(counts, 3), bare)
    assert none["status"] == "inconclusive" and "no registry tokenizer has probe counts" in none["reason"]
    assert none["requests"]["sent"] == 0


# ---------------------------------------------------------------- real tokenizers behind a local server


def _smollm2() -> tuple[Any, str]:
    pytest.importorskip("transformers")
    from audit import assets
    from audit.fingerprinting.tokenizer_sketch import _gguf_strings

    try:
        path = assets.fetch("smollm2")
    except InputError as exc:
        pytest.skip(f"SmolLM2 not obtainable here: {exc}")
    template = _gguf_strings(path, ("tokenizer.chat_template",)).get("tokenizer.chat_template")
    assert template, "SmolLM2's GGUF carries its chat template"
    return BUILD.counting_tokenizer("smollm2", path), template


def _vocab(name: str) -> Any:
    pytest.importorskip("transformers")
    files = BUILD.vocab_files()
    if name not in files:
        pytest.skip(f"{name} vocabulary not obtainable here (llama-cpp-python sdist)")
    return BUILD.counting_tokenizer(name, files[name][0])


@pytest.fixture(scope="module")
def smollm2_server() -> Iterator[OpenAITestServer]:
    tok, template = _smollm2()
    with OpenAITestServer("I am SmolLM.", model="smollm2", tokenizer=tok, chat_template=template) as srv:
        yield srv


@pytest.mark.real
def test_smollm2_endpoint_is_named_smollm(fps, strings, smollm2_server):
    srv = smollm2_server
    before = len(srv.requests)
    result = infer_tokenizer_family(usage_counter(srv.url), fps)
    assert result["status"] == "identified", result["reason"]
    assert (result["family"], result["name"]) == ("smollm", "smollm2")
    # SmolLM2's template puts the message between "\n" and <|im_end|>: nothing merges, every count matches
    assert result["matched"] == result["of"] == len(strings)
    assert result["matched"] > result["null"]["max"] and result["p_value"] < 0.01
    # the overhead is the template: a default system prompt and role markers, the same as the empty message
    assert result["offset"] == result["baseline_tokens"] > 20
    assert len(srv.requests) - before == len(strings) + 1
    assert all(r["body"]["max_tokens"] == 1 for r in srv.requests[before:])


@pytest.mark.real
def test_gpt2_endpoint_with_a_plain_text_template_is_named_gpt2(fps, strings):
    """"User: <text>" puts a space before the text, which merges with it in a few strings; the median holds."""
    with OpenAITestServer("Hello.", tokenizer=_vocab("gpt-2"), chat_template=PLAIN_TEMPLATE) as srv:
        result = infer_tokenizer_family(usage_counter(srv.url), fps)
    assert result["status"] == "identified", result["reason"]
    assert (result["family"], result["name"]) == ("gpt2", "gpt-2")
    assert 0.8 * len(strings) <= result["matched"] < len(strings)
    assert result["matched"] > result["null"]["max"]
    assert result["mismatches"] and all(abs(m["off_by"]) <= 2 for m in result["mismatches"])


@pytest.mark.real
def test_endpoint_without_usage_is_inconclusive(fps):
    tok, template = _smollm2()
    with OpenAITestServer("Hi", tokenizer=tok, chat_template=template, usage=False) as srv:
        result = infer_tokenizer_family(usage_counter(srv.url), fps)
        sent = len(srv.requests)
    assert result["status"] == "inconclusive" and result["family"] is None
    assert "usage.prompt_tokens" in result["reason"]
    assert sent == 4


@pytest.mark.real
def test_server_faults_cost_strings_not_the_answer(fps, strings, smollm2_server):
    """A 503 and a malformed body on two strings (no retries here): those are lost, the family still named."""
    srv = smollm2_server
    count = usage_counter(srv.url)

    def tolerant(text: str) -> int | None:
        try:
            return count(text)
        except (OSError, ValueError):  # HTTPError and JSONDecodeError
            return None

    calls = {"n": 0}

    def faulty(text: str) -> int | None:
        calls["n"] += 1
        if calls["n"] == 3:
            srv.add_faults("503")
        if calls["n"] == 6:
            srv.add_faults("malformed")
        return tolerant(text)

    result = infer_tokenizer_family(faulty, fps)
    assert result["status"] == "identified" and result["name"] == "smollm2"
    assert result["requests"]["failed"] == 2 and result["of"] == len(strings) - 2
    assert result["matched"] == result["of"]


@pytest.mark.real
def test_through_the_openai_backend_with_retries(fps, strings, smollm2_server):
    """The probe backend retries scripted 429 and 5xx answers; the inference sees every count."""
    from audit.probing.backends.openai_http import OpenAIBackend

    srv = smollm2_server
    srv.add_faults("429", "502")
    backend = OpenAIBackend(srv.url, "smollm2", timeout=5, max_retries=2, backoff=0.0, concurrency=1)
    try:
        result = infer_tokenizer_family(backend_counter(backend), fps)
    finally:
        backend.close()
    assert result["status"] == "identified" and result["name"] == "smollm2"
    assert result["matched"] == result["of"] == len(strings)
    assert result["requests"]["failed"] == 0
