"""`provaudit trace` end to end over HTTP with scripted answers and stand-in local models (no weights)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from audit.probing import trace_local
from audit.probing.trace_local import Scored
from tests.support.openai_server import OpenAITestServer

ANSWER = "A tall white tower by the sea guides ships home."


class WordLM:
    """A stand-in local model: words are tokens; it answers ANSWER; `skill` sets how likely it finds words."""

    def __init__(self, path: str, skill: float) -> None:
        self.path, self.skill, self.identity = path, skill, f"word-{path}"

    def count(self, text: str) -> int:
        return len(text.split())

    def prompt_count(self, messages: list[dict[str, str]]) -> int:
        return sum(self.count(m["content"]) + 3 for m in messages) + (0 if messages[0]["role"] == "system" else 8)

    def score(self, messages: list[dict[str, str]], text: str) -> Scored:
        words = text.split()
        lp = [-self.skill * (1 + len(w) % 3) for w in words]
        return Scored(words, lp, lp, [True] * len(words), len(text.encode()))

    def score_many(self, pairs: list[tuple[Any, str]], pit: Any = None, stopped: Any = None) -> list[Scored]:
        out = []
        for m, t in pairs:
            sc = self.score(m, t)
            if pit is not None:  # it only ever writes ANSWER: a point mass on each of its words
                mine = t == ANSWER
                sc = dataclasses.replace(sc, pit=[(0.0, 1.0, 0.0, 0.0, 0.0) if mine else (1.0, 0.0, 9.0, 0.0, 0.0)]
                                         * len(sc.logprobs))
            out.append(sc)
        return out

    def generate_many(self, messages: Any, max_tokens: int, temperature: float, seed: int, n: int,
                      top_p: float | None = None) -> list[tuple[str, list[int]]]:
        return [(ANSWER, [])] * (n if temperature > 0 else 1)


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Path]:
    paths = {"ref": tmp_path / "ref", "ctrl": tmp_path / "ctrl"}
    for p in paths.values():
        p.mkdir()
    skills = {str(paths["ref"]): 0.5, str(paths["ctrl"]): 2.0}
    monkeypatch.setattr(trace_local, "load_local", lambda path, device="auto": WordLM(path, skills[path]))
    monkeypatch.setenv("PROVAUDIT_CACHE", str(tmp_path / "cache"))
    return paths


def _run(*args: str) -> int:
    from audit.cli import main

    try:
        main(["trace", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    raise AssertionError("main() returned without exiting")


def test_relay_of_the_reference_is_same_model_and_rerun_is_free(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with OpenAITestServer(ANSWER, tokenizer=None) as srv:
        args = ("--endpoint", srv.url, "--model", "m", "-r", f"smol={models['ref']}", "--control",
                f"other={models['ctrl']}", "--prompts", "6", "--samples", "2", "--json", str(out), "-q")
        assert _run(*args) == 0
        rec = json.loads(out.read_text(encoding="utf-8"))
        sent = len(srv.requests)
        assert _run(*args) == 0
        assert len(srv.requests) == sent  # every answer came from the cache
    t = rec["trace"]
    ref = t["references"][0]
    assert ref["verdict"] == "same-model", ref["summary"]
    closer = next(s for s in ref["statistics"] if s["name"] == "closer-than-controls")
    assert closer["p_value"] == pytest.approx(1 / 64) and closer["null"]["method"] == "exact"
    assert t["budget"]["requests_sent"] == sent == t["budget"]["planned_requests"] == 6 * 2 + 6 + 9
    assert rec["verdict"]["label"] == "inconclusive" and rec["verdict"]["references_checked"] == 0
    assert "smol: same-model" in rec["verdict"]["summary"]
    assert not t["hidden_prompt"]["suspected"]  # words counted by the server: 11 tokens of template = ours
    again = json.loads(out.read_text(encoding="utf-8"))["trace"]["budget"]
    assert again["requests_sent"] == 0 and again["requests_cached"] == sent


def test_budget_stop_keeps_what_was_answered(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with OpenAITestServer(ANSWER) as srv:
        code = _run("--endpoint", srv.url, "--model", "m", "-r", f"smol={models['ref']}", "--prompts", "6",
                    "--samples", "2", "--max-requests", "5", "--no-cache", "--json", str(out), "-q")
        assert code == 0 and len(srv.requests) == 5
    budget = json.loads(out.read_text(encoding="utf-8"))["trace"]["budget"]
    assert budget["stopped_at_budget"] and budget["requests_sent"] == 5 and budget["failed"] == 27 - 5


def test_reference_and_control_names_must_differ(models: dict[str, Path]) -> None:
    with OpenAITestServer(ANSWER) as srv:
        assert _run("--endpoint", srv.url, "--model", "m", "-r", f"a={models['ref']}", "--control",
                    f"a={models['ctrl']}", "-q") == 2
        assert srv.requests == []
