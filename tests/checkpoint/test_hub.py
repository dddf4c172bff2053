"""Hub models by reference: `hf:ORG/NAME[@REV]` read through huggingface_hub from a local Hub test server, by
range requests only, with the record saying how many bytes were fetched; every failure one line, exit 2."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from audit.checkpoint import open_checkpoint
from audit.checkpoint.hub import parse_hub_ref, pick_gguf
from audit.errors import InputError
from tests.checkpoint.conftest import folder_files
from tests.support import tiny
from tests.support.hub_server import HubRepo, HubTestServer


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_failure(res, *needles: str) -> None:
    assert res.code == 2, (res.code, res.err)
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("provaudit: error:") and "Traceback" not in res.err, res.err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ references


@pytest.mark.parametrize(("text", "want"), [
    ("hf:org/name", ("org/name", None, None)),
    ("hf:org/name@v1.0", ("org/name", None, "v1.0")),
    ("hf:org/name@refs/pr/3", ("org/name", None, "refs/pr/3")),
    ("hf:org/name/sub/model-Q8_0.gguf@abc", ("org/name", "sub/model-Q8_0.gguf", "abc")),
    ("./local/path", None),
])
def test_hub_references_parse(text: str, want) -> None:
    ref = parse_hub_ref(text)
    assert (None if ref is None else (ref.repo_id, ref.filename, ref.revision)) == want


@pytest.mark.parametrize("text", ["hf:org", "hf:org/na me", "hf:org/name@", "hf:org/name/../x.gguf", "hf:org/name/README.md"])
def test_malformed_hub_references_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        parse_hub_ref(text)


def test_gguf_choice_prefers_the_most_precise_quantization() -> None:
    files = ["model-Q4_K_M.gguf", "model-Q8_0.gguf", "mmproj-model-F16.gguf", "model-F16.gguf", "README.md"]
    assert pick_gguf(files) == "model-Q8_0.gguf"
    assert pick_gguf(["a-Q4_K_S.gguf", "a-Q4_K_M.gguf", "big-00001-of-00002.gguf"]) == "a-Q4_K_M.gguf"
    assert pick_gguf(["x.gguf", "y.GGUF.txt"]) == "x.gguf"
    assert pick_gguf(["mmproj-f16.gguf"]) is None


# ------------------------------------------------------------------------------------------ safetensors repos


def test_tiny_repo_reads_like_the_local_folder_by_ranges(hub_env, tiny_models, card) -> None:
    base = tiny_models["base"]
    weights = base / "model.safetensors"
    repo = HubRepo({**folder_files(base), "README.md": card})
    with HubTestServer({"org/tiny": repo}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        remote, local = open_checkpoint("hf:org/tiny"), open_checkpoint(base)
        assert remote.format == "hf-folder" and remote.name == "org/tiny"
        assert str(remote.path) == f"hf:org/tiny@{repo.commit}"
        assert remote.config == local.config and remote.tokenizer is not None
        assert remote.tokenizer.tokens == local.tokenizer.tokens
        assert remote.folder is not None and (remote.folder / "README.md").read_text(encoding="utf-8") == card.read_text(encoding="utf-8")
        assert remote.io is not None and remote.io.source == "hub" and remote.io.revision == repo.commit
        assert remote.io.endpoint == hub.url and remote.io.bytes_total == weights.stat().st_size
        opened = hub.served("org/tiny", "model.safetensors")
        assert 0 < opened < weights.stat().st_size / 4  # the header, not the file
        emb = "model.embed_tokens.weight"
        ids = np.array([7, 500, 3, 7])
        np.testing.assert_array_equal(remote.read_rows(emb, ids), local.read_rows(emb, ids))
        row = local.tensors[emb].shape[1] * 2
        assert hub.served("org/tiny", "model.safetensors") - opened <= 3 * row + 3 * (8 << 10)
        for name in local.tensors:
            np.testing.assert_array_equal(remote.read(name), local.read(name))
        assert remote.io.bytes_fetched == hub.served("org/tiny", "model.safetensors")
        gets = hub.requests("GET", "model.safetensors")
        assert gets and all(r.range for r in gets)  # the weights only ever by range


def test_sharded_repo_reads_the_shards_its_index_names(hub_env, tiny_models) -> None:
    folder = tiny_models["sharded"]
    files = folder_files(folder)
    files["model-stale.safetensors"] = folder / "model.safetensors.index.json"  # not in the index: never read
    with HubTestServer({"org/sharded": HubRepo(files)}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        remote, local = open_checkpoint("hf:org/sharded"), open_checkpoint(folder)
        assert len(remote.files) == 3 and set(remote.tensors) == set(local.tensors)
        for name in local.tensors:
            np.testing.assert_array_equal(remote.read(name), local.read(name))
        assert hub.served("org/sharded", "model-stale.safetensors") == 0


def test_revisions_pin_a_commit(hub_env, tiny_models) -> None:
    repo = HubRepo(folder_files(tiny_models["base"]), commit="c" * 40, branches={"v1.0": "c" * 40})
    with HubTestServer({"org/m": repo}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        for rev in ("", "@main", "@v1.0", "@" + "c" * 40):
            ckpt = open_checkpoint(f"hf:org/m{rev}")
            assert ckpt.io is not None and ckpt.io.revision == "c" * 40
            assert ckpt.files == [Path(f"hf:org/m/model.safetensors@{'c' * 40}")]
        assert all(f"/resolve/{'c' * 40}/" in r.path for r in hub.requests(contains="/resolve/"))  # files at the commit
        with pytest.raises(InputError, match="no such revision"):
            open_checkpoint("hf:org/m@no-such-branch")


def test_compare_by_reference_end_to_end(hub_env, tiny_models, run_cli) -> None:
    """`provaudit compare hf:org/ft LOCAL`: the verdict of the local files, bytes fetched as the server counted
    them and fewer than the file holds, file hashes from the Hub's LFS pointers."""
    ft = tiny_models["ft"]
    weights = ft / "model.safetensors"
    with HubTestServer({"org/ft": HubRepo(folder_files(ft))}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        res = run_cli("compare", "hf:org/ft", tiny_models["base"], "--json", "-", "-q")
        assert res.code == 0, res.err
        served = hub.served("org/ft", "model.safetensors")
        range_gets = len(hub.requests("GET", "model.safetensors"))
    rec = res.record()
    local = run_cli("compare", ft, tiny_models["base"], "--json", "-", "-q").record()
    assert rec["verdict"]["label"] == local["verdict"]["label"] == "fine-tuned"
    subject = rec["subject"]
    assert subject["name"] == "org/ft" and subject["path"].startswith("hf:org/ft@")
    assert [(f["bytes"], f["sha256"]) for f in subject["files"]] == [(weights.stat().st_size, _sha256(weights))]
    io = subject["io"]
    assert io["source"] == "hub" and io["endpoint"] == hub.url and io["bytes_total"] == weights.stat().st_size
    assert io["bytes_fetched"] == served < weights.stat().st_size
    assert io["http_requests"] == range_gets
    assert local["subject"]["io"]["source"] == "local" and local["subject"]["io"]["bytes_fetched"] is None


def test_fingerprint_by_reference(hub_env, tiny_models, run_cli) -> None:
    base = tiny_models["base"]
    with HubTestServer({"org/base": HubRepo(folder_files(base))}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        res = run_cli("fingerprint", "hf:org/base", "-q")
        assert res.code == 0, res.err
        assert 0 < hub.served("org/base", "model.safetensors") <= (base / "model.safetensors").stat().st_size
    fp = json.loads(res.out)
    assert fp["model"]["name"] == "org/base" and fp["model"]["format"] == "hf-folder"
    assert fp["model"]["files"][0]["sha256"] == _sha256(base / "model.safetensors")
    assert fp["model"]["architecture"]["num_layers"] == 4


# ------------------------------------------------------------------------------------------ GGUF repos


def test_repo_with_several_ggufs_reads_the_chosen_or_named_one(hub_env, tmp_path) -> None:
    m = tiny.make_llama(0, layers=2)
    q8 = tiny.save_gguf(m, tmp_path / "tiny-Q8_0.gguf", quant="Q8_0")
    f32 = tiny.save_gguf(m, tmp_path / "tiny-F32.gguf", quant="F32")
    repo = HubRepo({"tiny-Q8_0.gguf": q8, "gguf/tiny-F32.gguf": f32})
    with HubTestServer({"org/g": repo}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        chosen = open_checkpoint("hf:org/g")
        assert str(chosen.path) == f"hf:org/g/tiny-Q8_0.gguf@{repo.commit}" and "Q8_0" in chosen.storage_dtypes
        named = open_checkpoint("hf:org/g/gguf/tiny-F32.gguf")
        local = open_checkpoint(f32)
        assert str(named.path) == f"hf:org/g/gguf/tiny-F32.gguf@{repo.commit}"
        for name in local.tensors:
            np.testing.assert_array_equal(named.read(name), local.read(name))
        assert named.io is not None and named.io.bytes_fetched == hub.served("org/g", "gguf/tiny-F32.gguf")
        with pytest.raises(InputError, match="no file"):
            open_checkpoint("hf:org/g/missing.gguf")


def test_real_smollm2_gguf_by_reference(hub_env, run_cli) -> None:
    """SmolLM2-135M-Instruct's real GGUF (98 MB), served by the test Hub and compared with the same file on
    disk: an exact copy, found by reading a fraction of it; the record's count is the server's."""
    from audit import assets

    try:
        path = assets.fetch("smollm2")
    except InputError as exc:
        pytest.skip(f"SmolLM2 not obtainable here: {exc}")
    with HubTestServer({"HuggingFaceTB/SmolLM2-135M-Instruct-GGUF": HubRepo({path.name: path})}) as hub, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        res = run_cli("compare", "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", path, "--json", "-", "-q")
        assert res.code == 0, res.err
        served = hub.served("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", path.name)
    rec = res.record()
    io = rec["subject"]["io"]
    assert io["bytes_fetched"] == served and io["bytes_total"] == path.stat().st_size
    assert served < path.stat().st_size / 2, f"fetched {served / path.stat().st_size:.1%} of the file"
    assert rec["subject"]["files"][0]["sha256"] == rec["references"][0]["files"][0]["sha256"]
    assert rec["verdict"]["label"] in ("derived", "fine-tuned") and rec["verdict"]["parent"]


# ------------------------------------------------------------------------------------------ auth and errors


def test_token_is_sent_as_bearer_and_opens_a_gated_repo(hub_env, tiny_models, run_cli) -> None:
    base = tiny_models["base"]
    repo = HubRepo(folder_files(base), gated=True, token="hf_secret")
    with HubTestServer({"org/gated": repo}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        _one_line_failure(run_cli("fingerprint", "hf:org/gated", "-q"), "gated", "HF_TOKEN")
        mp.setenv("HF_TOKEN", "hf_wrong")
        _one_line_failure(run_cli("fingerprint", "hf:org/gated", "-q"), "gated", "HF_TOKEN")
        mp.setenv("HF_TOKEN", "hf_secret")
        hub.reset()
        res = run_cli("fingerprint", "hf:org/gated", "-q")
        assert res.code == 0, res.err
        sent = [r for r in hub.log if "/api/agent" not in r.path]
        assert sent and all(r.authorization == "Bearer hf_secret" for r in sent)
        assert any(r.range for r in sent)  # range requests carry it too


def test_token_stays_on_the_hub_when_files_redirect_to_a_cdn(hub_env, tiny_models, monkeypatch) -> None:
    base = tiny_models["base"]
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with HubTestServer({"org/tiny": HubRepo(folder_files(base))}, redirect_lfs=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        remote, local = open_checkpoint("hf:org/tiny"), open_checkpoint(base)
        for name in list(local.tensors)[:5]:
            np.testing.assert_array_equal(remote.read(name), local.read(name))
        cdn = hub.requests("GET", "/cdn/")
        assert cdn and all(r.authorization is None for r in cdn)
        assert remote.io is not None and remote.io.bytes_fetched == hub.served("org/tiny", "model.safetensors")


def test_private_repo_without_token_says_so(hub_env, tiny_models, run_cli) -> None:
    with HubTestServer({"org/private": HubRepo(folder_files(tiny_models["base"]), private=True, token="t")}) as hub, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        _one_line_failure(run_cli("fingerprint", "hf:org/private", "-q"), "401", "HF_TOKEN")


@pytest.mark.parametrize(("model", "needle"), [
    ("hf:org/nope", "no such repository"),
    ("hf:org/tiny@v9", "no such revision"),
    ("hf:org/tiny/absent.gguf", "no file"),
])
def test_missing_repo_revision_or_file_is_one_line(hub_env, tiny_models, run_cli, model, needle) -> None:
    with HubTestServer({"org/tiny": HubRepo(folder_files(tiny_models["base"]))}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        _one_line_failure(run_cli("compare", model, tiny_models["base"], "-q"), needle)


def test_unreachable_hub_is_one_line(hub_env, tiny_models, run_cli, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    _one_line_failure(run_cli("compare", "hf:org/tiny", tiny_models["base"], "-q"), "cannot reach the Hub", "HF_ENDPOINT")
    _one_line_failure(run_cli("fingerprint", "org/not-cached", "-q"), "cannot reach the Hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _one_line_failure(run_cli("fingerprint", "hf:org/tiny", "-q"), "HF_HUB_OFFLINE")


def test_plain_repo_id_uses_the_local_cache_first(hub_env, tiny_models, tmp_path, monkeypatch) -> None:
    """A model whose weights are in the HF cache opens with no network; one that is not goes to the Hub."""
    import shutil

    cache = Path(hub_env).parent / "hf-cache"
    snap = cache / "models--org--cached" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_models["base"], snap)
    (cache / "models--org--cached" / "refs").mkdir()
    (cache / "models--org--cached" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")  # any network use would fail
    ckpt = open_checkpoint("org/cached")
    assert ckpt.name == "org/cached" and ckpt.io is not None and ckpt.io.source == "local"
    with HubTestServer({"org/remote": HubRepo(folder_files(tiny_models["ft"]))}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        remote = open_checkpoint("org/remote")
        assert remote.io is not None and remote.io.source == "hub"
        # reading it put its card/config/tokenizer in the HF cache, but not its weights: still read from the Hub
        assert open_checkpoint("org/remote").io.source == "hub"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------ retries and the range cache


def test_dropped_and_refused_transfers_are_retried_and_resumed(hub_env, tiny_models, monkeypatch) -> None:
    base = tiny_models["base"]
    local = open_checkpoint(base)
    emb = "model.embed_tokens.weight"
    with HubTestServer({"org/tiny": HubRepo(folder_files(base))}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        remote = open_checkpoint("hf:org/tiny")
        hub.reset()
        hub.add_faults("cut", "503", "429", "cut")
        np.testing.assert_array_equal(remote.read(emb), local.read(emb))
        gets = hub.requests("GET", "model.safetensors")
        starts = [int(r.range.split("=")[1].split("-")[0]) for r in gets if r.range]
        assert len(gets) >= 5 and starts == sorted(starts)  # each retry asks for what is still missing
        assert len(set(starts)) >= 3  # after a cut, the next request starts where the body stopped
        assert sum(r.sent for r in gets) == hub.served("org/tiny", "model.safetensors")
        nbytes = int(np.prod(local.tensors[emb].shape)) * 2
        assert nbytes <= hub.served("org/tiny", "model.safetensors") < nbytes + (64 << 10)  # no byte fetched twice


def test_a_warm_range_cache_fetches_nothing_and_a_failed_run_resumes(hub_env, tiny_models, monkeypatch) -> None:
    from audit.checkpoint import hub as hubmod

    base = tiny_models["base"]
    emb = "model.embed_tokens.weight"
    with HubTestServer({"org/tiny": HubRepo(folder_files(base))}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        first = open_checkpoint("hf:org/tiny")
        monkeypatch.setattr(hubmod, "RETRIES", 1)
        hub.add_faults("cut", "503", "503")  # half arrives, then two failures in a row: the run gives up
        with pytest.raises(InputError, match="failed"):
            first.read(emb)
        got_before = hub.served("org/tiny", "model.safetensors")
        hub.reset()
        second = open_checkpoint("hf:org/tiny")  # a new run: what arrived before the failure is not fetched again
        second.read(emb)
        nbytes = int(np.prod(second.tensors[emb].shape)) * 2
        assert 0 < hub.served("org/tiny", "model.safetensors") < nbytes  # only the rest
        assert got_before > 0
        hub.reset()
        third = open_checkpoint("hf:org/tiny")
        for name in third.tensors:
            third.read(name)
        fourth = open_checkpoint("hf:org/tiny")
        np.testing.assert_array_equal(fourth.read(emb), open_checkpoint(base).read(emb))
        assert fourth.io is not None and fourth.io.bytes_fetched == 0 and fourth.io.http_requests == 0
        assert fourth.io.bytes_read > 0
