"""`provaudit trace` with a reference that is itself an endpoint (NAME=endpoint:URL#MODEL): answers only, no
scores; same-model by MMD of the answers (or greedy agreement at temperature 0), derived by the sign test on
answer similarity against local controls. Scripted servers and stand-in local models, no weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audit.probing import trace_local
from tests.probing.test_trace_cli import ANSWER, WordLM, _run
from tests.support.openai_server import OpenAITestServer

NEAR = "A tall white tower near the sea guides boats home."
FAR = "Bananas ripen faster in a paper bag with an apple."


class SayLM(WordLM):
    """A stand-in control that answers `text`."""

    def __init__(self, path: str, text: str) -> None:
        super().__init__(path, 2.0)
        self.text = text

    def generate_many(self, messages: Any, max_tokens: int, temperature: float, seed: int, n: int,
                      top_p: float | None = None) -> list[tuple[str, list[int]]]:
        return [(self.text, [])] * (n if temperature > 0 else 1)


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    def make(text: str) -> Path:
        path = tmp_path / "ctrl"
        path.mkdir(exist_ok=True)
        monkeypatch.setattr(trace_local, "load_local", lambda p, device="auto": SayLM(p, text))
        return path

    monkeypatch.setenv("PROVAUDIT_CACHE", str(tmp_path / "cache"))
    return make


def _trace(subject: str, reference: str, ctrl: Path, out: Path, *extra: str) -> tuple[dict[str, Any], int, int]:
    with OpenAITestServer(subject) as subj, OpenAITestServer(reference, model="vendor-1") as ref:
        code = _run("--endpoint", subj.url, "--model", "m", "-r", f"vendor=endpoint:{ref.url}#vendor-1",
                    "--control", f"other={ctrl}", "--prompts", "6", "--samples", "2", "--no-hidden-prompt",
                    "--json", str(out), "-q", *extra)
        assert code == 0
        return json.loads(out.read_text(encoding="utf-8")), len(subj.requests), len(ref.requests)


def test_relay_of_an_endpoint_reference_is_same_model(control: Any, tmp_path: Path) -> None:
    rec, sent, ref_sent = _trace(ANSWER, ANSWER, control(FAR), tmp_path / "r.json")
    ref = rec["trace"]["references"][0]
    assert ref["verdict"] == "same-model", ref["summary"]
    assert ref["path"].startswith("endpoint:http://127.0.0.1") and ref["path"].endswith("#vendor-1")
    mmd = next(s for s in ref["statistics"] if s["name"] == "sample-mmd")
    assert mmd["rejected"] is False and mmd["null"]["method"] in ("exact", "empirical")
    closer = next(s for s in ref["statistics"] if s["name"] == "closer-than-controls")
    assert closer["p_value"] == pytest.approx(1 / 64)
    budget = rec["trace"]["budget"]
    assert ref_sent == budget["reference_requests_sent"] == 6 * 2 and sent == budget["requests_sent"] == 12


def test_another_model_behind_the_endpoint_is_not_the_reference(control: Any, tmp_path: Path) -> None:
    rec, *_ = _trace(ANSWER, FAR, control(NEAR), tmp_path / "r.json")
    ref = rec["trace"]["references"][0]
    assert ref["verdict"] == "unrelated", ref["summary"]
    mmd = next(s for s in ref["statistics"] if s["name"] == "sample-mmd")
    assert mmd["rejected"] is True and mmd["p_value"] < 0.01


def test_temperature_zero_uses_greedy_agreement(control: Any, tmp_path: Path) -> None:
    same, *_ = _trace(ANSWER, ANSWER, control(FAR), tmp_path / "a.json", "--temperature", "0")
    other, *_ = _trace(ANSWER, FAR, control(FAR), tmp_path / "b.json", "--temperature", "0")
    a, b = same["trace"]["references"][0], other["trace"]["references"][0]
    assert a["verdict"] == "same-model" and b["verdict"] in ("unrelated", "inconclusive")
    assert next(s for s in b["statistics"] if s["name"] == "greedy-match")["rejected"] is True


def test_bad_endpoint_reference_spec_is_one_line_exit_2(control: Any, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    ctrl = control(FAR)
    for spec in ("vendor=endpoint:ftp://x#m", "vendor=endpoint:http://127.0.0.1:9/v1"):
        assert _run("--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-r", spec, "--control",
                    f"other={ctrl}", "-q") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "endpoint:URL#MODEL" in err[0]
    assert _run("--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "-r", f"a={ctrl}", "--control",
                "c=endpoint:http://127.0.0.1:9/v1#m", "-q") == 2
