"""Licences as data: the bundled file covers the catalog, card spellings and LICENSE texts resolve to ids, and a
derivative's inherited obligations are stated from its declared licence, name and files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from audit.claims.licences import (
    alias_key,
    default_licences_path,
    licence_finding,
    licence_of_model,
    load_licences,
    normalise_licence,
)
from audit.errors import InputError
from audit.fingerprinting.catalog import LICENCES, load_catalog
from audit.record.models import LicenceFinding
from audit.record.names import LicenceStatus

APACHE_TEXT = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION
"""
LLAMA31_TEXT = """LLAMA 3.1 COMMUNITY LICENSE AGREEMENT
Llama 3.1 Version Release Date: July 23, 2024
"Agreement" means the terms and conditions for use, reproduction, distribution and modification of the
Llama Materials set forth herein.
"""
LLAMA31_NOTICE = ("Llama 3.1 is licensed under the Llama 3.1 Community License, Copyright © Meta Platforms, Inc. "
                  "All Rights Reserved.")


def _status(finding: LicenceFinding, clause: str) -> LicenceStatus:
    return next(o.status for o in finding.obligations if o.clause == clause)


# ---------------------------------------------------------------- the bundled file


def test_every_catalog_licence_id_has_an_entry_and_every_catalog_model_resolves() -> None:
    lic = load_licences()
    assert sorted(set(LICENCES) - set(lic.by_id)) == []
    for e in load_catalog().entries:
        assert licence_of_model(e.hub_id) == e.license, e.hub_id
        assert normalise_licence(e.license) == e.license


def test_hub_licence_identifiers_people_put_in_cards_are_covered() -> None:
    hub_ids = ["apache-2.0", "mit", "cc-by-4.0", "cc-by-nc-4.0", "cc-by-sa-4.0", "openrail", "openrail++",
               "creativeml-openrail-m", "bigscience-openrail-m", "bigscience-bloom-rail-1.0", "gpl-3.0",
               "bsd-3-clause", "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "other"]
    assert {h: normalise_licence(h) for h in hub_ids} == {h: h for h in hub_ids}


def test_aliases_are_unique_across_entries_and_known_licences_have_terms() -> None:
    data = yaml.safe_load(default_licences_path().read_text(encoding="utf-8"))
    owner: dict[str, str] = {}
    clashes = []
    for item in data["licences"]:
        for alias in [item["id"], *item["aliases"]]:
            key = alias_key(alias)
            if owner.setdefault(key, item["id"]) != item["id"]:
                clashes.append(f"{alias!r} ({item['id']} and {owner[key]})")
    assert clashes == []
    for e in load_licences().entries:
        if e.kind != "unknown":
            assert e.clauses and e.derivatives.text, e.id
            assert e.url is None or e.url.startswith("https://")


def test_llama_clauses_follow_each_version() -> None:
    lic = load_licences()

    def clause(lid: str, cid: str) -> Any:
        entry = lic.get(lid)
        assert entry is not None
        return next(c for c in entry.clauses if c.id == cid)

    assert clause("llama3", "naming").patterns[0] == "Llama 3"
    assert "Built with Meta Llama 3" in clause("llama3", "attribution").patterns
    for lid in ("llama3.1", "llama3.2", "llama3.3", "llama4"):
        assert clause(lid, "naming").patterns[0] == "Llama"
        assert clause(lid, "attribution").patterns == ["Built with Llama"]
    for lid in ("llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4"):
        assert "700 million" in clause(lid, "user-threshold").text
    assert "100 million" in clause("qwen", "user-threshold").text


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(("text", "expected"), [
    ("Apache-2.0", "apache-2.0"), ("apache 2.0", "apache-2.0"), ("Apache License, Version 2.0", "apache-2.0"),
    ("Apache 2.0 (see LICENSE)", "apache-2.0"), ("https://www.apache.org/licenses/LICENSE-2.0", "apache-2.0"),
    ("MIT", "mit"), ("The MIT License", "mit"),
    ("llama3.1", "llama3.1"), ("Llama-3.1", "llama3.1"), ("llama3_1", "llama3.1"),
    ("Llama 3.1 Community License Agreement", "llama3.1"), ("LLAMA 3.2 COMMUNITY LICENSE", "llama3.2"),
    ("Meta Llama 3 Community License", "llama3"), ("llama-2", "llama2"), ("Llama 4", "llama4"),
    ("Gemma Terms of Use", "gemma"), ("gemma", "gemma"),
    ("tongyi-qianwen", "qwen"), ("Qwen LICENSE AGREEMENT", "qwen"), ("qwen-research", "qwen-research"),
    ("tongyi-qianwen-research", "qwen-research"),
    ("CC BY-NC 4.0", "cc-by-nc-4.0"), ("cc-by-sa-4.0", "cc-by-sa-4.0"), ("OpenRAIL++", "openrail++"),
    ("openrail", "openrail"), ("CreativeML Open RAIL-M", "creativeml-openrail-m"), ("GPLv3", "gpl-3.0"),
    ("mrl", "mistral-research"), ("MNPL-0.1", "mnpl"), ("falcon-llm-license", "falcon"),
    ("deepseek", "deepseek"), ("yi-license", "yi"), ("other", "other"),
])
def test_card_and_metadata_spellings(text: str, expected: str) -> None:
    assert normalise_licence(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (APACHE_TEXT, "apache-2.0"),
    ("MIT License\n\nCopyright (c) 2024 Acme\n\nPermission is hereby granted, free of charge, ...", "mit"),
    ("Copyright (c) 2024 Acme\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\n"
     "of this software", "mit"),
    (LLAMA31_TEXT, "llama3.1"),
    ("META LLAMA 3 COMMUNITY LICENSE AGREEMENT\nMeta Llama 3 Version Release Date: April 18, 2024\n", "llama3"),
    ("LLAMA 2 COMMUNITY LICENSE AGREEMENT\nLlama 2 Version Release Date: July 18, 2023\n", "llama2"),
    ("Gemma Terms of Use\n\nLast modified: February 21, 2024\n", "gemma"),
    ("Tongyi Qianwen LICENSE AGREEMENT\n\nTongyi Qianwen Release Date: August 3, 2023\n", "qwen"),
    ("Qwen LICENSE AGREEMENT\n\nQwen LICENSE AGREEMENT Release Date: September 19, 2024\n", "qwen"),
    ("Qwen RESEARCH LICENSE AGREEMENT\n\nQwen RESEARCH LICENSE AGREEMENT Release Date: September 19, 2024\n",
     "qwen-research"),
    ("                    GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007\n", "gpl-3.0"),
    ("Attribution-NonCommercial 4.0 International\n\n=======\n", "cc-by-nc-4.0"),
    # a notice line first, then the agreement: the first licence named wins
    (LLAMA31_NOTICE + "\n\n" + LLAMA31_TEXT, "llama3.1"),
])
def test_licence_file_headers(text: str, expected: str) -> None:
    assert normalise_licence(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "my own licence", "Copyright 2024 Acme. All rights reserved.",
                                  "see the website", "\n".join(["filler"] * 60 + ["Apache License Version 2.0"])])
def test_unknown_text_is_none(text: str) -> None:
    assert normalise_licence(text) is None


# ---------------------------------------------------------------- the obligations a derivative inherits


def test_llama3_derivative_relicensed_apache_without_llama_in_its_name() -> None:
    files = {"README.md": "# SuperChat 8B\nOur own model.", "LICENSE": APACHE_TEXT}
    f = licence_finding("meta-llama/Meta-Llama-3-8B", "llama3", "apache-2.0", "acme/SuperChat-8B", "measured", files)
    assert (f.parent_licence, f.declared_licence, f.compatible) == ("llama3", "apache-2.0", False)
    assert f.url == "https://www.llama.com/llama3/license/"
    assert _status(f, "relicensing") == _status(f, "naming") == _status(f, "attribution") == LicenceStatus.NOT_MET
    assert _status(f, "licence-copy") == LicenceStatus.NOT_MET  # the LICENSE is Apache's, not Meta's agreement
    assert _status(f, "user-threshold") == _status(f, "acceptable-use") == LicenceStatus.CHECK
    assert f.summary.endswith("not legal advice.") and "apache-2.0" in f.summary
    assert "SuperChat-8B" in next(o.detail for o in f.obligations if o.clause == "naming")


@pytest.mark.parametrize(("licence", "name", "status"), [
    ("llama3", "Llama-3-SuperChat-8B", LicenceStatus.MET),
    ("llama3", "acme/llama3-8b-chinese-chat", LicenceStatus.MET),
    ("llama3", "Meta-Llama-3-8B-Instruct-GGUF", LicenceStatus.MET),  # Meta's own name for it
    ("llama3", "SuperChat-Llama-3-8B", LicenceStatus.NOT_MET),  # "Llama 3" must come first
    ("llama3", "Llama-2-style-8B", LicenceStatus.NOT_MET),
    ("llama3.1", "Llama-SuperChat-8B", LicenceStatus.MET),  # 3.1 and later: "Llama" at the beginning
    ("llama3.1", "Tulu-3.1-8B", LicenceStatus.NOT_MET),
    ("llama3.3", "acme/Llama-3.3-Nemotron-70B", LicenceStatus.MET),
    ("llama4", "Scout-Finetune", LicenceStatus.NOT_MET),
    ("llama3.2", None, LicenceStatus.CHECK),
])
def test_naming_rule_per_llama_version(licence: str, name: str | None, status: LicenceStatus) -> None:
    f = licence_finding("meta-llama/parent", licence, licence, name, "measured")
    assert _status(f, "naming") == status
    assert f.compatible is True  # the same agreement carried on


def test_llama31_derivative_that_keeps_the_terms() -> None:
    files = {"README.md": "# Llama-3.1-Acme-8B\nBuilt with Llama.", "LICENSE": LLAMA31_TEXT, "NOTICE": LLAMA31_NOTICE}
    f = licence_finding("meta-llama/Llama-3.1-8B", "llama3.1", "Llama 3.1 Community License", "acme/Llama-3.1-Acme-8B",
                        "declared", files)
    assert (f.declared_licence, f.compatible) == ("llama3.1", True)
    met = {o.clause for o in f.obligations if o.status == LicenceStatus.MET}
    assert met == {"relicensing", "licence-copy", "attribution", "naming", "notice"}
    assert {o.clause for o in f.obligations if o.status == LicenceStatus.CHECK} == {"user-threshold", "acceptable-use"}
    assert "0 obligations not met" in f.summary and "declared base" in f.summary


def test_gemma_derivative_declared_apache_is_not_compatible() -> None:
    f = licence_finding("google/gemma-2-2b", "gemma", "apache-2.0", "acme/tiny-chat", "measured")
    assert f.compatible is False and f.url == "https://ai.google.dev/gemma/terms"
    assert _status(f, "relicensing") == LicenceStatus.NOT_MET
    assert _status(f, "use-restrictions") == LicenceStatus.CHECK
    assert licence_finding("google/gemma-2-2b", "gemma", "gemma", "x", "measured").compatible is True


@pytest.mark.parametrize(("parent", "declared", "compatible"), [
    ("qwen-research", "apache-2.0", False), ("qwen-research", "qwen", False), ("qwen-research", "qwen-research", True),
    ("qwen", "mit", False), ("llama3.1", "mit", False), ("llama3.1", "llama3", False),
    ("cc-by-nc-4.0", "apache-2.0", False), ("bigscience-openrail-m", "creativeml-openrail-m", True),
    ("bigscience-openrail-m", "apache-2.0", False), ("cc-by-sa-4.0", "gpl-3.0", True),
    ("llama3", "my own terms", None), ("llama3", "other", None), ("llama3", None, None),
])
def test_compatibility_of_declared_licences(parent: str, declared: str | None, compatible: bool | None) -> None:
    assert licence_finding("p", parent, declared, "x", "measured").compatible is compatible


@pytest.mark.parametrize("declared", ["mit", "apache-2.0", "llama3", "cc-by-nc-4.0", "gpl-3.0"])
def test_permissive_parent_allows_any_licence_but_keeps_its_notices(declared: str) -> None:
    f = licence_finding("HuggingFaceTB/SmolLM2-135M", "apache-2.0", declared, "acme/anything", "measured",
                        {"LICENSE": APACHE_TEXT})
    assert f.compatible is True and _status(f, "relicensing") == LicenceStatus.MET
    assert {"notice", "licence-copy"} <= {o.clause for o in f.obligations}
    assert _status(f, "licence-copy") == LicenceStatus.MET


def test_permissive_parent_without_its_licence_text_beside_the_model() -> None:
    mit_only = licence_finding("p", "apache-2.0", "mit", "x", "measured", {"LICENSE": "MIT License\n\nCopyright"})
    assert _status(mit_only, "licence-copy") == LicenceStatus.NOT_MET
    assert "MIT License" in next(o.detail for o in mit_only.obligations if o.clause == "licence-copy")
    readme_only = licence_finding("p", "apache-2.0", "mit", "x", "measured", {"README.md": "Apache License 2.0"})
    assert _status(readme_only, "licence-copy") == LicenceStatus.NOT_MET  # a README naming it is not the text
    nothing = licence_finding("p", "apache-2.0", "mit", "x", "measured", {})
    assert _status(nothing, "licence-copy") == LicenceStatus.CHECK  # no files read: cannot say


@pytest.mark.parametrize(("parent_licence", "in_summary"), [
    (None, "is unknown"), ("", "is unknown"), ("other", "'other'"), ("Acme Special Terms v2", "Acme Special Terms"),
])
def test_unknown_parent_licence(parent_licence: str | None, in_summary: str) -> None:
    f = licence_finding("acme/base-7b", parent_licence, "apache-2.0", "acme/chat-7b", "declared")
    assert f.compatible is None and f.obligations == []
    assert in_summary in f.summary and "acme/base-7b" in f.summary
    assert f.summary.endswith("not legal advice.")
    assert f.declared_licence == "apache-2.0"


def test_unrecognised_declared_licence_is_kept_and_left_to_check() -> None:
    f = licence_finding("p", "llama3.1", "Acme Community Terms", "Llama-Acme", "measured")
    assert f.compatible is None and f.declared_licence == "Acme Community Terms"
    assert _status(f, "relicensing") == LicenceStatus.CHECK


def test_licence_of_model_matches_hub_id_repo_name_and_registry_name() -> None:
    assert licence_of_model("meta-llama/Llama-3.1-8B") == "llama3.1"
    assert licence_of_model("META-LLAMA/llama-3.1-8b") == "llama3.1"
    assert licence_of_model("hf:meta-llama/Llama-3.1-8B@main") == "llama3.1"
    assert licence_of_model("Llama-3.1-8B") == "llama3.1"
    assert licence_of_model("meta-llama/Meta-Llama-3.1-8B") == "llama3.1"  # the old id
    assert licence_of_model("Qwen/Qwen2.5-3B-Instruct") == "qwen-research"
    assert licence_of_model("google/gemma-2-2b") == "gemma"
    for e in load_catalog().entries[::25]:
        assert licence_of_model(e.name) == e.license  # its registry name
    assert licence_of_model("acme/no-such-model") is None and licence_of_model("  ") is None


# ---------------------------------------------------------------- a broken licence file: one line


def _good() -> dict[str, Any]:
    return {"schema": "provaudit.licences/1", "licences": [
        {"id": "acme", "name": "Acme Licence", "url": "https://acme.example/licence", "aliases": ["acme-licence"],
         "kind": "community", "commercial": "conditional",
         "derivatives": {"relicense": "same", "text": "stays under the same licence"},
         "clauses": [{"id": "naming", "text": "name begins with Acme", "check": "name-prefix", "patterns": ["Acme"]}]},
        {"id": "free", "name": "Free", "url": None, "aliases": ["free licence"], "kind": "permissive",
         "commercial": True, "derivatives": {"relicense": "any", "text": "any"}, "clauses": []},
    ]}


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "licences.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_small_valid_file_loads_and_yaml_yes_reads_as_yes(tmp_path: Path) -> None:
    lic = load_licences(_write(tmp_path, _good()))
    free = lic.get("free")
    assert free is not None and free.commercial == "yes"
    assert lic.normalise("Acme Licence") == "acme"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["licences"][0].update(kind="closed"), "licences[0] (acme).kind"),
    (lambda d: d["licences"][0].pop("url"), "licences[0] (acme): missing required field 'url'"),
    (lambda d: d["licences"][0].update(licence="x"), "unknown field 'licence'"),
    (lambda d: d["licences"][0].update(url="http://insecure.example"), "licences[0] (acme).url"),
    (lambda d: d["licences"][0]["clauses"][0].pop("patterns"), "licences[0] (acme).clauses[0]: check 'name-prefix'"),
    (lambda d: d["licences"][0]["clauses"][0].update(id="vibes"), "licences[0] (acme).clauses[0].id"),
    (lambda d: d["licences"][1]["aliases"].append("Acme-Licence"), "alias 'Acme-Licence' is also an alias of 'acme'"),
    (lambda d: d["licences"][0]["derivatives"].update(allowed=["nope"]), "unknown licence id 'nope'"),
    (lambda d: d["licences"][1].update(id="acme"), "licence id 'acme' appears more than once"),
    (lambda d: d.update(schema="provaudit.licences/9"), "schema"),
])
def test_broken_file_is_one_line_naming_the_field(tmp_path: Path, change: Any, expected: str) -> None:
    data = _good()
    change(data)
    with pytest.raises(InputError) as info:
        load_licences(_write(tmp_path, data))
    message = str(info.value)
    assert "\n" not in message and expected in message and "licences.yaml" in message


@pytest.mark.parametrize("text", ["licences: [unclosed", "- just a list", ""])
def test_unreadable_or_wrong_shape_is_one_line(tmp_path: Path, text: str) -> None:
    with pytest.raises(InputError) as info:
        load_licences(_write(tmp_path, text))
    assert "\n" not in str(info.value)
