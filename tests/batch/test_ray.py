"""`provaudit batch --executor ray` on a local Ray cluster (2 CPUs) gives the same index as local workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.batch.conftest import index_rows, stable

pytestmark = pytest.mark.real


def test_ray_executor_matches_local_workers(run_cli, first_run: tuple[Path, Path], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'provaudit[ray]'")
    manifest, local_out = first_run
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        out = tmp_path / "ray"
        res = run_cli("batch", manifest, "--out", out, "--no-registry", "--executor", "ray", "--workers", "2", "-q")
        assert res.code == 0, res.err
        assert ray.is_initialized()  # the batch used the cluster it found and left it running
    finally:
        ray.shutdown()
    summary = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert (summary["audited"], summary["failed"], summary["executor"]) == (6, 1, "ray")
    assert stable(index_rows(out)) == stable(index_rows(local_out))
    assert all(r["source"] == "audit" for r in index_rows(out))
