"""The batch's family tree: each model fingerprinted once, fingerprints compared pairwise, a forest drawn.

One manifest holds a base, two fine-tunes of it (siblings), a layer-pruned and a quantized GGUF copy of the first
fine-tune, a permuted further fine-tune of the second, an independent model, a model with an unrelated vocabulary
and a corrupt one.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from audit.record.models import LineageTree
from tests.batch.counting_task import LOG_VAR, counting_run_task, logging_open
from tests.support import tiny

ROWS = ("base", "ft", "ft2", "perm", "pruned", "ft.Q8_0.gguf", "indep", "vocab", "broken")
REFERENCES = {"ft": "base", "ft2": "base"}  # the rows whose audit is given base as a reference


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("family")
    base = tiny.make_llama(0, layers=4)
    ft = tiny.finetune(base, 0.3)
    tiny.save_hf(base, root / "base")
    tiny.save_hf(ft, root / "ft")
    ft2 = tiny.finetune(base, 0.3, seed=5)
    tiny.save_hf(ft2, root / "ft2")
    tiny.save_hf(tiny.permute_hidden(tiny.finetune(ft2, 0.3, seed=11), 3), root / "perm")
    tiny.save_hf(tiny.prune_layers(ft, [1]), root / "pruned")
    tiny.save_gguf(ft, root / "ft.Q8_0.gguf", quant="Q8_0")
    tiny.save_hf(tiny.make_llama(7, layers=4), root / "indep")
    tiny.save_hf(tiny.make_llama(3, layers=4, tokens=[f"x{i}" for i in range(512)]), root / "vocab")
    broken = tiny.save_hf(tiny.finetune(base, 0.1, seed=4), root / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)  # corrupt header
    lines = "".join(f"{m},{REFERENCES.get(m, '')}\n" for m in ROWS)
    (root / "family.csv").write_text("model,references\n" + lines, encoding="utf-8")
    return root


def _batch(manifest: Path, out: Path, log: Path, *extra: str) -> tuple[int, str]:
    """Run `provaudit batch` in-process with workers that log every checkpoint they open (the driver too);
    return the exit status and what it printed on stdout."""
    import audit.checkpoint
    from audit.cli import main

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setenv(LOG_VAR, str(log))
        mp.setenv("PROVAUDIT_REGISTRY", str(out.parent / "empty-registry"))  # no user registry entries
        mp.setattr("audit.batch.executors.run_task", counting_run_task)
        mp.setattr(audit.checkpoint, "open_checkpoint", logging_open(audit.checkpoint.open_checkpoint))
        log.touch()
        with pytest.raises(SystemExit) as info:
            main(["batch", str(manifest), "--out", str(out), "--workers", "2", "-q", *extra])
    return int(info.value.code or 0), stdout.getvalue()


def _opens(log: Path) -> Counter[str]:
    return Counter(Path(line).name for line in log.read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def first(family: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("lineage-run")
    code, stdout = _batch(family / "family.csv", tmp / "out", tmp / "opens.log")
    assert code == 0, stdout
    tree = json.loads((tmp / "out" / "lineage.json").read_text(encoding="utf-8"))
    return {"out": tmp / "out", "tree": tree, "stdout": stdout, "opens": _opens(tmp / "opens.log")}


def _drawn(tree: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    names = {n["id"]: n["name"] for n in tree["nodes"]}
    return {(names[e["parent"]], names[e["child"]]): e for e in tree["edges"] if e["in_tree"]}


def test_tree_links_base_fine_tune_and_copies(first: dict[str, Any]) -> None:
    tree = first["tree"]
    drawn = _drawn(tree)
    assert set(drawn) == {("base", "ft"), ("base", "ft2"), ("ft", "pruned"), ("ft", "ft.Q8_0"), ("ft2", "perm")}
    # a permutation says nothing about which came first, and neither audit named the other: undirected
    assert [pair for pair, e in drawn.items() if not e["directed"]] == [("ft2", "perm")]
    assert drawn[("ft2", "perm")]["rule"] == "undirected" and drawn[("ft2", "perm")]["operations"] == ["permutation"]
    assert drawn[("base", "ft")]["rule"] == "audit-reference" and drawn[("base", "ft")]["label"] == "fine-tuned"
    pruned = drawn[("ft", "pruned")]
    assert pruned["rule"] == "operation" and pruned["operations"] == ["layer-pruning"] and pruned["label"] == "derived"
    assert (pruned["layers_matched"], pruned["layers_compared"]) == (3, 3)
    assert pruned["statistic"]["name"] == "layer-gram-similarity" and pruned["statistic"]["p_value"] <= 0.01
    quant = drawn[("ft", "ft.Q8_0")]
    assert quant["rule"] == "operation" and {"quantization", "format-conversion"} <= set(quant["packaging"])
    nodes = {n["name"]: n for n in tree["nodes"]}
    assert [nodes[m]["depth"] for m in ("base", "ft", "ft2", "perm", "pruned", "ft.Q8_0")] == [0, 1, 1, 2, 2, 2]
    assert nodes["indep"]["family"] is None and nodes["vocab"]["family"] is None
    assert tree["families"] == 1 and "lineage: 8 models, 5 edges, 1 family" in first["stdout"]


def test_relations_the_tree_explains_stay_in_the_data(first: dict[str, Any]) -> None:
    names = {n["id"]: n["name"] for n in first["tree"]["nodes"]}
    hidden = {frozenset((names[e["parent"]], names[e["child"]])): e for e in first["tree"]["edges"]
              if not e["in_tree"]}
    chain = hidden[frozenset(("base", "pruned"))]
    assert chain["directed"] and chain["operations"] == ["layer-pruning"]
    assert chain["note"] == "implied by the chain base -> ft -> pruned"
    assert hidden[frozenset(("ft", "ft2"))]["note"] == "siblings under base"
    assert not any("indep" in pair or "vocab" in pair for pair in hidden)


def test_unrelated_uncomparable_and_broken_models(first: dict[str, Any]) -> None:
    tree = first["tree"]
    fingerprinted = 8  # all rows but the corrupt one
    assert tree["excluded"] == [{"name": "broken", "line": 10, "reason": tree["excluded"][0]["reason"]}]
    assert "corrupt safetensors header" in tree["excluded"][0]["reason"]
    assert tree["pairs_skipped"] == fingerprinted - 1  # vocab shares no token with anyone
    assert all("vocab" in (p["a"], p["b"]) for p in tree["skipped"])
    assert tree["pairs_compared"] + tree["pairs_skipped"] == fingerprinted * (fingerprinted - 1) // 2
    # indep against the 6 family members: original; the family's 15 pairs: related
    assert tree["pairs_unrelated"] == 6 and tree["pairs_related"] == 15 and tree["pairs_inconclusive"] == 0


def test_each_model_is_opened_once(first: dict[str, Any]) -> None:
    opens = first["opens"]
    expected = Counter({m: 1 for m in ROWS})
    for ref in REFERENCES.values():
        expected[ref] += 1  # base is also read as the reference of ft's and ft2's audits
    assert opens == expected  # audit and fingerprint share the open; the pairwise step opens nothing


def test_lineage_json_validates_against_its_schema(first: dict[str, Any]) -> None:
    schema = LineageTree.model_json_schema(by_alias=True, mode="validation")
    jsonschema.Draft202012Validator(schema).validate(first["tree"])
    tree = LineageTree.model_validate(first["tree"])
    assert tree.schema_ == "provaudit.lineage/1"
    batch = json.loads((first["out"] / "batch.json").read_text(encoding="utf-8"))
    assert batch["lineage"] == {"file": "lineage.json", "schema": "provaudit.lineage/1", "models": 8, "edges": 5,
                                "families": 1, "pairs_compared": 21, "pairs_skipped": 7, "excluded": 1}


def test_index_draws_the_tree(first: dict[str, Any]) -> None:
    page = (first["out"] / "index.html").read_text(encoding="utf-8")
    assert page.count('<svg class="lineage"') == 1 and "<script" not in page
    tree = first["tree"]
    ids = {n["name"]: n["id"] for n in tree["nodes"]}
    for (parent, child), edge in _drawn(tree).items():
        kind = "directed" if edge["directed"] else "related"
        assert f'<g class="edge {kind}" data-parent="{ids[parent]}" data-child="{ids[child]}">' in page
    assert page.count('<g class="edge directed"') == 4 and page.count('marker-end="url(#arrow)"') == 4
    assert page.count('<g class="edge related"') == 1 and 'stroke-dasharray="5 4"' in page
    assert "base -&gt; ft: fine-tuned; layer-gram-similarity" in page  # the evidence on hover
    assert "implied by the chain base -&gt; ft -&gt; pruned" in page  # and in the table
    assert '<a href="records/ft.html">' in page and "corrupt safetensors header" in page


def test_rerun_reads_no_model_and_gives_the_same_tree(first: dict[str, Any], family: Path, tmp_path: Path) -> None:
    def stable(tree: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in tree.items() if k not in ("created", "seconds", "pairs_from_cache")}

    log = tmp_path / "opens.log"
    code, stdout = _batch(family / "family.csv", first["out"], log)
    assert code == 0 and "0 audited, 9 from the cache" in stdout
    again = json.loads((first["out"] / "lineage.json").read_text(encoding="utf-8"))
    assert _opens(log) == Counter() and again["pairs_from_cache"] == 28
    assert stable(again) == stable(first["tree"])
    # another batch sharing the cache: nothing opened, the same tree under its own folder
    code, _ = _batch(family / "family.csv", tmp_path / "other", log, "--cache", str(first["out"] / "cache"))
    assert code == 0 and _opens(log) == Counter()
    assert stable(json.loads((tmp_path / "other" / "lineage.json").read_text(encoding="utf-8"))) == \
        stable(first["tree"])


def test_a_registry_base_is_a_parent(run_cli, family: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROVAUDIT_REGISTRY", str(tmp_path / "user-registry"))
    registry = tmp_path / "registry"
    res = run_cli("refs", "add", family / "base", "--name", "tiny-base", "--registry", registry)
    assert res.code == 0, res.err
    manifest = tmp_path / "rows.csv"
    manifest.write_text("model\n" + "".join(f"{family / m}\n" for m in ("ft", "pruned", "indep")), encoding="utf-8")
    res = run_cli("batch", manifest, "--out", tmp_path / "out", "--registry", registry, "-q")
    assert res.code == 0, res.err
    tree = json.loads((tmp_path / "out" / "lineage.json").read_text(encoding="utf-8"))
    nodes = {n["name"]: n for n in tree["nodes"]}
    assert nodes["tiny-base"]["kind"] == "registry" and nodes["tiny-base"]["depth"] == 0
    drawn = _drawn(tree)
    assert set(drawn) == {("tiny-base", "ft"), ("ft", "pruned")}
    assert drawn[("tiny-base", "ft")]["rule"] == "registry-base" and drawn[("tiny-base", "ft")]["source"] == "row-audit"
    assert "lineage: 4 models, 2 edges, 1 family" in res.out

