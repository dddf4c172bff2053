"""`provaudit report RECORD.json`: re-render a saved record; bad records exit 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compare_record
from tests.support import tiny

SCRIPT = "<script>alert('pwned')</script>"


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real compare record (fine-tuned from base) with a probe transcript whose response holds a script."""
    from audit.cli import main

    root = tmp_path_factory.mktemp("report")
    base = tiny.make_llama(0, layers=3)
    ref = tiny.save_hf(base, root / "base")
    cand = tiny.save_hf(tiny.finetune(base, 0.05), root / "cand")
    out = root / "record.json"
    with pytest.raises(SystemExit) as info:
        main(["compare", str(cand), str(ref), "--reference-name", "base", "--json", str(out), "-q"])
    assert info.value.code == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    rec["probes"] = [{
        "suite": "self-identity", "answered": 1, "failed": 0, "detectors": [], "claims": [], "vendors": [],
        "prompts": [{"id": "p1", "language": "en", "messages": [{"role": "user", "content": "Who are you?"}]}],
        "responses": [{"probe": "p1", "language": "en", "sample": 0, "seed": 0, "text": f"I am {SCRIPT}",
                       "error": None, "claims": []}],
    }]
    return rec


def _save(tmp_path: Path, record: dict, name: str = "r.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_round_trip_html_shows_the_verdict_and_script_is_inert(run_cli, record: dict, tmp_path: Path) -> None:
    html = tmp_path / "out" / "report.html"
    res = run_cli("report", _save(tmp_path, record), "--html", html, "-q")
    assert res.code == 0, res.err
    page = html.read_text(encoding="utf-8")
    assert "fine-tuned" in page and record["verdict"]["summary"].split(" ")[0] in page
    assert SCRIPT not in page and "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    assert "<script" not in page.lower()


def test_json_to_stdout_is_the_same_record(run_cli, record: dict, tmp_path: Path) -> None:
    res = run_cli("report", _save(tmp_path, record), "--json", "-")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    # the tool's own sections come back unchanged; the hand-written probe block gains its defaults
    assert {k: v for k, v in out.items() if k != "probes"} == {k: v for k, v in record.items() if k != "probes"}
    assert out["probes"][0]["responses"][0]["text"] == record["probes"][0]["responses"][0]["text"]
    again = run_cli("report", _save(tmp_path, out, "again.json"), "--json", "-")
    assert json.loads(again.out) == out  # reading and writing a record is a fixed point


def test_terminal_summary_by_default(run_cli, record: dict, tmp_path: Path) -> None:
    res = run_cli("report", _save(tmp_path, record))
    assert res.code == 0 and "fine-tuned" in res.out


@pytest.mark.parametrize(("text", "expected"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a provaudit record"),
    ('{"schema": "provaudit.record/9", "verdict": {}}', "unknown record schema 'provaudit.record/9'"),
    ('{"verdict": {}}', "unknown record schema 'None'"),
    ('{"schema": "provaudit.record/1", "verdict": "x", "subject": {}}', "malformed record"),
])
def test_bad_record_is_one_line_exit_2(run_cli, tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    html = tmp_path / "bad.html"
    res = run_cli("report", path, "--html", html)
    assert res.code == 2 and expected in res.err
    assert len(res.err.strip().splitlines()) == 1 and not html.exists()


def test_missing_record_file(run_cli, tmp_path: Path) -> None:
    res = run_cli("report", tmp_path / "nope.json")
    assert res.code == 2 and "no such file" in res.err


def test_compare_record_helper_still_works(run_cli, tmp_path: Path) -> None:
    """The batch's record annotations are additive: a record with `batch` renders like any other."""
    base = tiny.make_llama(1, layers=3)
    rec = compare_record(run_cli, tiny.save_hf(tiny.finetune(base, 0.05), tmp_path / "c"),
                         tiny.save_hf(base, tmp_path / "b"))
    rec["batch"] = {"manifest": "/m.csv", "line": 2, "cache_key": "0" * 64}
    res = run_cli("report", _save(tmp_path, rec), "--html", tmp_path / "x.html", "-q")
    assert res.code == 0 and "fine-tuned" in (tmp_path / "x.html").read_text(encoding="utf-8")


V1_RECORDS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "records_v1").glob("*.json"))


@pytest.mark.parametrize("path", V1_RECORDS, ids=[p.stem for p in V1_RECORDS])
def test_old_v1_records_render_with_their_meanings(run_cli, path: Path, tmp_path: Path) -> None:
    """A saved provaudit.record/1 still renders: verdict, every operation's and flag's meaning, in both views."""
    from markupsafe import escape

    from audit.record.names import FlagKind, Label, Operation

    old = json.loads(path.read_text(encoding="utf-8"))
    html = tmp_path / "r.html"
    res = run_cli("report", path, "--html", html)
    assert res.code == 0, res.err
    page = html.read_text(encoding="utf-8")
    label = Label(old["verdict"]["label"])
    assert f'<span class="badge {label.value}">{label.value}</span>' in page
    assert label.value.upper() in res.out
    if label is not Label.INCONCLUSIVE or old["verdict"].get("references_checked") != 0:
        # the label's own explanation (original's names the N references checked: from there on)
        tail = label.meaning.split("N references checked")[1] if label is Label.ORIGINAL else label.meaning[1:]
        assert str(escape(tail)) in page
    ops = set(old["verdict"]["operations"]) | {
        op["name"] for comp in old.get("comparisons") or [] for op in comp.get("operations") or []}
    for op in ops:
        assert str(escape(Operation(op).meaning)) in page
    for flag in old.get("flags") or []:
        kind = FlagKind(flag["kind"])
        assert f'<span class="flag-kind">{kind.value}</span>' in page and str(escape(kind.meaning)) in page
        assert kind.value in res.out
    assert "<script" not in page.lower()
