"""Claims vs evidence on real weights: what a model's card, GGUF metadata or the user says, beside what the
registry audit measures (issue 16's cases: a disguised copy claiming 'trained from scratch', a GGUF with
rewritten general.* metadata, a Gemma-3 derivative declaring Apache-2.0, an honest fine-tune, a Chinese card)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.real.conftest import RealCli
from tests.support.gguf_rewrite import rewrite_gguf

pytestmark = pytest.mark.real

HIDE = ("general.base_model.", "general.source.", "general.basename", "general.finetune", "general.tags",
        "general.datasets", "general.organization", "general.name", "general.license")


def _dress(src: Path, dst: Path, files: dict[str, str]) -> Path:
    """`src`'s files linked (or copied) into `dst`, plus the given card and licence files."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in files:
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)
    for name, text in files.items():
        (dst / name).write_text(text, encoding="utf-8")
    return dst


@pytest.fixture(scope="session")
def claim_cases(real_cases: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("claims")
    return {
        "disguised": _dress(real_cases["renamed"], root / "nova-1", {"README.md": (
            "---\nlicense: apache-2.0\nlanguage: [en]\n---\n# Nova-1\n\n"
            "Nova-1 is a 135M language model trained from scratch by Acme AI on our own corpus.\n")}),
        "chinese": _dress(real_cases["permuted"], root / "xingchen", {"README.md": (
            "---\nlicense: apache-2.0\n---\n# 星辰-135M\n\n本模型为星辰科技自主研发、从零训练的大语言模型。\n")}),
        "honest": _dress(real_cases["finetuned"], root / "smol-chat", {"README.md": (
            "---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\nbase_model_relation: finetune\n"
            "license: apache-2.0\n---\n# smol-chat\n\nA short fine-tune of SmolLM2-135M-Instruct on chat data.\n")}),
        "mislabelled": _dress(real_cases["renamed"], root / "smol-tuned", {"README.md": (
            "---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\nbase_model_relation: finetune\n"
            "license: apache-2.0\n---\n# smol-tuned\n\nFine-tuned from SmolLM2-135M-Instruct.\n")}),
        "nova_gguf": rewrite_gguf(real_cases["quantized"], root / "nova-1-q4.gguf",
                                  {"general.name": "Nova-1", "general.organization": "Acme AI",
                                   "general.license": "apache-2.0"}, drop=HIDE),
        "opengem_gguf": rewrite_gguf(real_cases["gemma3"], root / "opengem-270m.gguf",
                                     {"general.name": "OpenGem-270M", "general.organization": "OpenGem Labs",
                                      "general.license": "apache-2.0"}, drop=HIDE),
    }


@pytest.fixture(scope="session")
def audited(claim_cases: dict[str, Path], real_cli: RealCli) -> dict[str, dict[str, Any]]:
    """Registry audits of every case, memoised for the session."""
    memo: dict[str, dict[str, Any]] = {}

    class Audits(dict):  # type: ignore[type-arg]
        def __missing__(self, case: str) -> dict[str, Any]:
            memo[case] = real_cli("audit", claim_cases[case])
            return memo[case]

    return Audits()


def flags(record: dict[str, Any]) -> list[str]:
    return [f["flag"] for f in record["claims"]["findings"]]


def finding(record: dict[str, Any], flag: str) -> dict[str, Any]:
    found = [f for f in record["claims"]["findings"] if f["flag"] == flag]
    assert found, f"no {flag} finding in {json.dumps(record['claims'], ensure_ascii=False)[:2000]}"
    return found[0]


def test_disguised_copy_claiming_from_scratch(audited: dict[str, dict[str, Any]]) -> None:
    record = audited["disguised"]
    assert record["verdict"]["parent"] == "smollm2-135m-instruct"
    f = finding(record, "undeclared-derivation")
    assert "trained from scratch" in f["claim"]
    readme = [c["source"] for c in f["claims"] if c["source"]["file"] == "README.md"]
    assert readme and readme[0]["line"] == 7, f["claims"]
    assert "smollm2-135m-instruct" in f["measured"]
    assert record["claims"]["licences"][0]["parent_licence"] == "apache-2.0"
    assert record["claims"]["licences"][0]["compatible"] is True


def test_chinese_card(audited: dict[str, dict[str, Any]]) -> None:
    record = audited["chinese"]
    f = finding(record, "undeclared-derivation")
    assert any(c["language"] == "zh" and c["value"] == "original" for c in f["claims"])


def test_honest_fine_tune_is_consistent(audited: dict[str, dict[str, Any]]) -> None:
    record = audited["honest"]
    assert record["verdict"]["label"] == "fine-tuned"
    assert flags(record) and set(flags(record)) == {"consistent"}, record["claims"]
    lic = record["claims"]["licences"][0]
    assert lic["basis"] == "measured" and lic["compatible"] is True


def test_declared_fine_tune_that_is_an_unchanged_copy(audited: dict[str, dict[str, Any]]) -> None:
    f = finding(audited["mislabelled"], "declared-relation-mismatch")
    assert "copy" in f["measured"]


def test_gguf_with_rewritten_metadata(audited: dict[str, dict[str, Any]]) -> None:
    record = audited["nova_gguf"]
    f = finding(record, "undeclared-derivation")
    declared = record["claims"]["declared"]
    assert any(c["kind"] == "vendor" and c["value"] == "Acme AI" and c["source"]["key"] == "general.organization"
               for c in declared), declared
    assert "smollm2-135m-instruct" in f["measured"]


def test_gemma_derivative_relicensed_as_apache(audited: dict[str, dict[str, Any]]) -> None:
    record = audited["opengem_gguf"]
    assert record["verdict"]["parent"] == "gemma-3-270m"
    lic = record["claims"]["licences"][0]
    assert lic["parent_licence"] == "gemma" and lic["declared_licence"] == "apache-2.0"
    assert lic["compatible"] is False
    assert any(o["status"] == "not-met" for o in lic["obligations"])


def test_pitch_deck_claim_on_the_command_line(real_cases: dict[str, Path], real_cli: RealCli) -> None:
    record = real_cli("audit", real_cases["renamed"], "--claim", "self-developed",
                      "--declared-license", "apache-2.0")
    f = finding(record, "undeclared-derivation")
    assert any(c["source"]["file"] == "command line" for c in f["claims"])


def test_report_opens_with_claims(audited: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    from audit.record.io import parse_record
    from audit.reporting.html import render_html

    html = render_html(parse_record(audited["disguised"]))
    assert 0 <= html.index("Claims vs evidence") < html.index('aria-label="verdict"')
    assert "undeclared-derivation" in html


def test_batch_manifest_carries_each_models_claim(claim_cases: dict[str, Path], tmp_path: Path) -> None:
    from audit.cli import main

    manifest = tmp_path / "models.yaml"
    manifest.write_text(
        f"- model: {claim_cases['honest']}\n  claim: fine-tuned from HuggingFaceTB/SmolLM2-135M-Instruct\n"
        f"- model: {claim_cases['disguised']}\n  claim: [self-developed]\n  declared_license: mit\n",
        encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["batch", str(manifest), "--out", str(tmp_path / "out"), "--workers", "1", "-q"])
    assert exc.value.code == 0
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((tmp_path / "out").rglob("*.json"))
               if p.name not in ("lineage.json", "index.json") and "claims" in p.read_text(encoding="utf-8")]
    by_model = {Path(r["subject"]["path"]).name: r for r in records if r.get("claims")}
    assert set(flags(by_model["smol-chat"])) == {"consistent"}
    manifest_claims = [c for f in by_model["nova-1"]["claims"]["findings"] for c in f["claims"]
                       if c["source"]["file"].startswith("manifest")]
    assert manifest_claims, by_model["nova-1"]["claims"]
    index = [json.loads(line) for line in (tmp_path / "out" / "index.jsonl").read_text().splitlines()]
    assert [("undeclared-derivation" in row["claims"]) for row in index] == [False, True]
