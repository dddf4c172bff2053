"""`provaudit refs list` against the catalog, `refs build --catalog` (with a fake Hub opener), and the line a
registry-only audit writes about the catalog families it could not check by weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.checkpoint import locate
from audit.errors import InputError
from audit.fingerprinting.catalog import load_catalog
from tests.support import tiny

REAL_OPEN = locate.open_checkpoint


@pytest.fixture
def user_registry(tmp_path, monkeypatch) -> Path:
    reg = tmp_path / "user-registry"
    monkeypatch.setenv("PROVAUDIT_REGISTRY", str(reg))
    return reg


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("catalog-models")
    base = tiny.make_llama(31, hidden=96, layers=4, vocab=1024)
    return {
        "base": tiny.save_hf(base, d / "base"),
        "chat": tiny.save_hf(tiny.finetune(base, 0.03), d / "chat"),
        "copy": tiny.save_hf(tiny.permute_hidden(tiny.finetune(base, 0.03), 5), d / "copy"),
        "other": tiny.save_hf(tiny.make_llama(32, hidden=96, layers=4, vocab=1024), d / "other"),
    }


class FakeHub:
    """Stands in for the Hub behind open_checkpoint('hf:ORG/NAME'): serves tiny local copies, refuses the rest."""

    def __init__(self, repos: dict[str, Path], errors: dict[str, str] | None = None, down: bool = False):
        self.repos, self.errors, self.down = repos, errors or {}, down
        self.opened: list[str] = []

    def __call__(self, model, allow_pickle=False, name=None):
        spec = str(model)
        if not spec.startswith("hf:"):
            return REAL_OPEN(model, allow_pickle=allow_pickle, name=name)
        repo = spec[3:]
        self.opened.append(repo)
        if self.down:
            raise InputError(f"{spec}: the Hub at https://hub.invalid is unreachable (connection refused)")
        if repo in self.errors:
            raise InputError(f"{spec}: {self.errors[repo]}")
        if repo not in self.repos:
            raise InputError(f"{spec}: repository not found on the Hub")
        return REAL_OPEN(self.repos[repo], name=name)


def _ids(pattern: str) -> list[str]:
    return [e.hub_id for e in load_catalog().select(pattern)]


# ---------------------------------------------------------------- refs list


def test_list_counts_and_shows_shipped_fingerprints_as_covered(run_cli, user_registry) -> None:
    res = run_cli("refs", "list")
    assert res.code == 0, res.err
    n = len(load_catalog().entries)
    assert f"Catalog: {n} models in" in res.out
    head = res.out.split("weight fingerprint:")[1].split("\n")[0]
    counts = [int(x) for x in head.replace("tokenizer fingerprint only:", "").replace("none:", "").split()]
    assert sum(counts) == n and counts[0] >= 3  # the bundled fingerprints count
    row = next(line for line in res.out.splitlines() if line.strip().startswith("gemma-3 "))
    assert "gemma-3-270m" in row  # its family row names the shipped fingerprint


def test_list_all_gives_each_model_its_evidence(run_cli, user_registry) -> None:
    res = run_cli("refs", "list", "--all", "--only", "smollm2")
    assert res.code == 0, res.err
    rows = {line.split()[0]: line for line in res.out.splitlines() if line.strip().startswith("HuggingFaceTB/")}
    assert set(rows) == set(_ids("smollm2"))
    assert "weights: smollm2-135m-instruct" in " ".join(rows["HuggingFaceTB/SmolLM2-135M-Instruct"].split())
    assert "tokenizer: smollm2" in rows["HuggingFaceTB/SmolLM2-360M"]  # the registry holds only its tokenizer
    mistral = run_cli("refs", "list", "--all", "--only", "mistralai/Mistral-7B-v0.1")
    assert mistral.code == 0 and mistral.out.rstrip().splitlines()[-1].split()[-1] == "none"


def test_show_a_catalog_model_without_a_fingerprint(run_cli, user_registry) -> None:
    import json

    res = run_cli("refs", "show", "meta-llama/Llama-2-7b-chat-hf")
    assert res.code == 0, res.err
    shown = json.loads(res.out)
    assert shown["catalog"]["base"] == "meta-llama/Llama-2-7b-hf" and shown["catalog"]["license"] == "llama2"
    assert shown["registry"] == "tokenizer" and shown["weights"] == []


def test_list_only_matching_nothing_is_a_usage_error(run_cli, user_registry) -> None:
    res = run_cli("refs", "list", "--only", "no-such-model-anywhere")
    assert res.code == 2 and res.err.count("\n") == 1 and "matches no catalog model" in res.err


def test_list_with_a_broken_catalog_is_one_line(run_cli, user_registry, tmp_path, monkeypatch) -> None:
    bad = tmp_path / "catalog.yaml"
    bad.write_text("schema: provaudit.catalog/1\nfamilies:\n  acme:\n    vendor: Acme\n    models: []\n")
    monkeypatch.setattr("audit.fingerprinting.catalog.default_catalog_path", lambda: bad)
    res = run_cli("refs", "list")
    assert res.code == 2 and res.err.count("\n") == 1 and "catalog.yaml" in res.err, res.err


# ---------------------------------------------------------------- refs build


def test_build_writes_missing_fingerprints_then_a_rerun_skips_them(run_cli, user_registry, models, monkeypatch):
    ids = _ids("tinyllama")
    assert len(ids) == 2
    hub = FakeHub({ids[0]: models["base"], ids[1]: models["chat"]})
    monkeypatch.setattr(locate, "open_checkpoint", hub)
    res = run_cli("refs", "build", "--catalog", "--only", "tinyllama", "-q")
    assert res.code == 0, res.err
    assert sorted(hub.opened) == sorted(ids)
    cat = load_catalog()
    files = sorted(p.name for p in (user_registry / "weights").iterdir())
    assert files == sorted(f"{cat.get(i).name}.safetensors" for i in ids)  # nothing partial left behind
    assert "2 built, 0 already present, 0 failed" in res.out
    listed = run_cli("refs", "list", "--all", "--only", "tinyllama")
    assert listed.out.count("weights:") == 2  # refs list now shows both as covered
    shown = run_cli("refs", "show", cat.get(ids[0]).name)
    assert ids[0] in shown.out  # the fingerprint records the hub id it came from

    hub.opened.clear()
    again = run_cli("refs", "build", "--catalog", "--only", "tinyllama", "-q")
    assert again.code == 0 and hub.opened == []
    assert "0 built, 2 already present" in again.out


def test_build_max_and_dry_run_resume_where_they_stopped(run_cli, tmp_path, user_registry, models, monkeypatch):
    ids = _ids("tinyllama")
    hub = FakeHub(dict.fromkeys(ids, models["base"]))
    monkeypatch.setattr(locate, "open_checkpoint", hub)
    target = tmp_path / "elsewhere"
    dry = run_cli("refs", "build", "--catalog", "--only", "tinyllama", "--registry", target, "--dry-run")
    assert dry.code == 0 and hub.opened == [] and dry.out.count("would build") == 2
    first = run_cli("refs", "build", "--catalog", "--only", "tinyllama", "--registry", target, "--max", "1", "-q")
    assert first.code == 0 and hub.opened == ids[:1] and "1 not attempted" in first.out
    second = run_cli("refs", "build", "--catalog", "--only", "tinyllama", "--registry", target, "--max", "1", "-q")
    assert second.code == 0 and hub.opened == ids and "1 already present" in second.out
    assert len(list((target / "weights").glob("*.safetensors"))) == 2
    assert not (user_registry / "weights").exists()  # --registry is where it writes


def test_one_failing_model_is_a_warning_and_the_others_are_built(run_cli, user_registry, models, monkeypatch):
    ids = _ids("pythia-1")  # pythia-1b, 1.4b, 1.4b-deduped: the middle one is gated, one is a model of no use
    assert len(ids) >= 3
    gated, broken = ids[1], ids[2]
    repos = {i: models["base"] for i in ids}
    repos[broken] = models["base"] / "config.json"  # not a checkpoint
    hub = FakeHub(repos, errors={gated: "gated repository: accept its licence on the Hub and set HF_TOKEN"})
    monkeypatch.setattr(locate, "open_checkpoint", hub)
    res = run_cli("refs", "build", "--catalog", "--only", "pythia-1", "-q")
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if line.startswith("provaudit: warning:")]
    assert len(warnings) == 2 and any(gated in w and "gated" in w for w in warnings)
    assert any(broken in w for w in warnings)
    assert f"{len(ids) - 2} built" in res.out and "2 failed" in res.out
    assert not list((user_registry / "weights").glob("*.partial"))


def test_an_unreachable_hub_stops_early_and_exits_2(run_cli, user_registry, monkeypatch):
    hub = FakeHub({}, down=True)
    monkeypatch.setattr(locate, "open_checkpoint", hub)
    res = run_cli("refs", "build", "--catalog", "--only", "qwen2.5", "-q")
    assert res.code == 2
    assert len(hub.opened) == 3  # not every one of the selected models
    assert res.err.strip().splitlines()[-1].startswith("provaudit: error: no weight fingerprint could be built")


def test_build_needs_catalog_and_a_matching_pattern(run_cli, user_registry):
    assert run_cli("refs", "build").code == 2
    res = run_cli("refs", "build", "--catalog", "--only", "no-such-model-anywhere")
    assert res.code == 2 and "matches no catalog model" in res.err


# ---------------------------------------------------------------- a registry-only audit names what it could not check


def test_registry_only_audit_names_the_families_it_could_not_check(run_cli, user_registry, models, monkeypatch,
                                                                  tmp_path):
    ids = _ids("tinyllama")
    monkeypatch.setattr(locate, "open_checkpoint", FakeHub({ids[0]: models["base"]}))
    assert run_cli("refs", "build", "--catalog", "--only", ids[0], "-q").code == 0
    html = tmp_path / "report.html"
    res = run_cli("audit", models["copy"], "--json", "-", "--html", html)
    assert res.code == 0, res.err
    rec = res.record()
    assert rec["verdict"]["parent"] == load_catalog().get(ids[0]).name
    cov = rec["registry"]["catalog"]
    families = load_catalog().families()
    assert cov["families"] == len(families)
    checked = {c["family"]: c for c in cov["checked"]}
    assert checked["tinyllama"]["compared"] == [ids[0]] and checked["tinyllama"]["models"] == 2
    assert "tinyllama" not in cov["unchecked"]
    assert {"llama-2", "llama-3", "qwen2.5", "mistral"} <= set(cov["unchecked"])
    assert set(cov["unchecked"]) | set(checked) == set(families)
    page = html.read_text(encoding="utf-8")
    assert f"Weights not checked for {len(cov['unchecked'])} of {len(families)} catalog families" in page
    assert "llama-2" in page.split("Weights not checked")[1]


def test_console_summary_says_what_was_not_checked(run_cli, user_registry, models):
    res = run_cli("audit", models["other"])
    assert res.code == 0, res.err
    text = " ".join(res.out.split())
    assert "weights not checked for" in text and "catalog families" in text and "llama-2" in text


def test_build_from_a_local_hub_server_by_range_reads(run_cli, user_registry, models, tmp_path, monkeypatch):
    """The whole path a user with Hub access drives: `hf:` ids of catalog models served by a local Hub (file and
    API routes, Range), fingerprints built from the rows they need, then found by `refs list`."""
    from audit.checkpoint import hub as hub_module
    from tests.support.hub_server import HubRepo, HubTestServer

    ids = _ids("tinyllama")
    repos = {repo: HubRepo({p.name: p for p in sorted(models[m].iterdir()) if p.is_file()})
             for repo, m in zip(ids, ("base", "chat"), strict=True)}
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("PROVAUDIT_HUB_CACHE", str(tmp_path / "ranges"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_module, "BACKOFF", 0.01)
    with HubTestServer(repos) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        res = run_cli("refs", "build", "--catalog", "--only", "tinyllama", "-q")
        assert res.code == 0, res.err
        assert "2 built, 0 already present, 0 failed" in res.out
        weights = models["base"] / "model.safetensors"
        assert 0 < server.served(ids[0], "model.safetensors") < weights.stat().st_size
    listed = run_cli("refs", "list", "--all", "--only", "tinyllama")
    assert listed.out.count("weights:") == 2
