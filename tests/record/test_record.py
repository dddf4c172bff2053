"""The typed record: every record the tool writes validates against the published JSON Schema; old records
still open; the same request through compare, audit and batch gives the same record; names carry meanings."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from audit.errors import InputError
from audit.record import Record, evidence_view
from audit.record.glossary import BEGIN, END, glossary_markdown
from audit.record.io import json_schema_text, load_record, parse_record
from audit.record.names import ALL_NAMES, FlagKind, Label, Operation
from tests.support import tiny
from tests.support.schema import schema_problems

REPO = Path(__file__).resolve().parents[2]
V1 = sorted((REPO / "tests" / "fixtures" / "records_v1").glob("*.json"))


def _valid(record: dict) -> None:
    problems = schema_problems(record)
    assert not problems, "; ".join(problems[:5])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("record-models")
    base = tiny.make_llama(seed=11)
    return {
        "base": tiny.save_hf(base, root / "base"),
        "derived": tiny.save_hf(tiny.prune_layers(tiny.permute_hidden(base, seed=2), [1]), root / "derived"),
        "other": tiny.save_hf(tiny.make_llama(seed=12), root / "other"),
    }


def test_committed_schema_is_current(run_cli) -> None:
    res = run_cli("schema")
    assert res.code == 0
    assert res.out == json_schema_text() == (REPO / "docs" / "record.schema.json").read_text(encoding="utf-8"), (
        "docs/record.schema.json is stale: run python scripts/update_docs.py")
    jsonschema.Draft202012Validator.check_schema(json.loads(res.out))


@pytest.mark.parametrize("doc", ["README.md", "docs/record.md"])
def test_docs_explain_every_name_from_the_one_place(doc: str) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()
    assert block == glossary_markdown().strip(), f"{doc} is stale: run python scripts/update_docs.py"
    for enum in (Label, Operation, FlagKind):
        for member in enum:
            assert f"`{member.value}`" in block


def test_every_name_has_a_meaning() -> None:
    for enum in ALL_NAMES:
        for member in enum:
            assert len(member.meaning) > 20, member


def test_the_schema_check_can_fail() -> None:
    """The session-wide check (tests/conftest.py) would catch a record the schema does not describe."""
    good = load_record(str(V1[0])).to_json_dict()
    assert schema_problems(good) == []
    assert schema_problems({**good, "verdict": {**good["verdict"], "label": "stolen"}})
    assert schema_problems({**good, "surprise": 1})


def test_records_of_every_command_validate(run_cli, models: dict[str, Path], tmp_path: Path) -> None:
    base, derived, other = models["base"], models["derived"], models["other"]
    compare = run_cli("compare", derived, base, "--json", "-", "-q")
    audit = run_cli("audit", derived, "-r", base, "-r", other, "--json", "-", "-q")  # with the registry
    rules = tmp_path / "rules.yaml"
    rules.write_text('- ["who|你", "I am ChatGPT, made by OpenAI."]\n', encoding="utf-8")
    probe = run_cli("probe", "--fake", rules, "--samples", "1", "--json", "-", "-q")
    for res in (compare, audit, probe):
        assert res.code == 0, res.err
        _valid(res.record())
    assert audit.record()["registry"]["entries"] > 0
    assert {f["kind"] for f in probe.record()["flags"]} == {"distillation-leak"}
    manifest = tmp_path / "models.csv"
    manifest.write_text(f"model,references\n{derived},{base}\n{other},{base}\n", encoding="utf-8")
    res = run_cli("batch", manifest, "--out", tmp_path / "out", "--no-registry", "-q")
    assert res.code == 0, res.err
    records = sorted((tmp_path / "out" / "records").glob("*.json"))
    assert len(records) == 2
    for path in records:
        data = json.loads(path.read_text(encoding="utf-8"))
        _valid(data)
        assert data["batch"]["manifest"].endswith("models.csv")


def test_same_request_through_compare_audit_and_batch_gives_the_same_record(run_cli, models, tmp_path: Path) -> None:
    base, derived = models["base"], models["derived"]
    compare = run_cli("compare", derived, base, "--json", "-", "-q", "--seed", "3").record()
    audit = run_cli("audit", derived, "-r", base, "--no-registry", "--json", "-", "-q", "--seed", "3").record()
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"model,references\n{derived},{base}\n", encoding="utf-8")
    assert run_cli("batch", manifest, "--out", tmp_path / "b", "--no-registry", "--seed", "3", "-q").code == 0
    batch = json.loads(next((tmp_path / "b" / "records").glob("*.json")).read_text(encoding="utf-8"))
    views = [evidence_view(Record.model_validate(r)) for r in (compare, audit, batch)]
    assert views[0] == views[1] == views[2]
    assert compare["verdict"]["label"] == "derived" and compare["comparisons"][0]["statistics"]
    assert compare["created"] and compare["command"]["name"] == "compare" and audit["command"]["name"] == "audit"


@pytest.mark.parametrize("path", V1, ids=[p.stem for p in V1])
def test_every_v1_record_still_opens(path: Path, run_cli, tmp_path: Path) -> None:
    old = json.loads(path.read_text(encoding="utf-8"))
    assert old["schema"] == "provaudit.record/1"
    rec = load_record(str(path))
    assert rec.verdict.label.value == old["verdict"]["label"] and rec.verdict.parent == old["verdict"]["parent"]
    assert [f.kind.value for f in rec.flags] == [f["kind"] for f in old["flags"]]
    assert [c.reference for c in rec.comparisons] == [c["reference"] for c in old.get("comparisons") or []]
    _valid(rec.to_json_dict())
    html = tmp_path / "r.html"
    res = run_cli("report", path, "--html", html, "--json", tmp_path / "r.json", "-q")
    assert res.code == 0, res.err
    assert old["verdict"]["label"] in html.read_text(encoding="utf-8")
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["schema"] == "provaudit.record/2"


def test_records_are_immutable() -> None:
    rec = load_record(str(V1[0]))
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        rec.verdict = rec.verdict  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017
        rec.verdict.label = Label.ORIGINAL  # type: ignore[misc]


@pytest.mark.parametrize(("data", "expected"), [
    ([1], "not a provaudit record"),
    ({"schema": "provaudit.record/7"}, "unknown record schema"),
    ({"schema": "provaudit.record/2", "verdict": {"label": "stolen", "summary": "x"}}, "malformed record"),
])
def test_bad_records_are_one_line_input_errors(data: object, expected: str) -> None:
    with pytest.raises(InputError, match=expected) as info:
        parse_record(data)
    assert "\n" not in str(info.value)


def test_unknown_operation_cannot_be_recorded() -> None:
    """A new operation must be added to names.py (with its meaning) before any record can carry it."""
    data = json.loads(V1[0].read_text(encoding="utf-8"))
    data["verdict"]["operations"] = ["teleportation"]
    with pytest.raises(InputError, match="operations"):
        parse_record(data)
