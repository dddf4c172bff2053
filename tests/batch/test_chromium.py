"""A rendered report and a batch index open in real headless Chromium and give a non-blank screenshot.

Skipped when no Chromium is installed (Debian: `apt-get install chromium`), unless PROVAUDIT_REQUIRE_CHROMIUM=1
(set by .ci/run, which installs it), where a missing browser fails the test instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageColor

from audit.reporting.charts import BLUE
from tests.batch.conftest import index_rows, write_manifest

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
REQUIRED = os.environ.get("PROVAUDIT_REQUIRE_CHROMIUM") == "1"
pytestmark = pytest.mark.skipif(CHROMIUM is None and not REQUIRED, reason="chromium is not installed")


def screenshot(page: Path, png: Path, height: int = 2000) -> None:
    assert CHROMIUM is not None, "PROVAUDIT_REQUIRE_CHROMIUM=1 but no chromium on PATH"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           f"--screenshot={png}", f"--window-size=1200,{height}", page.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, timeout=120)
    assert png.is_file(), res.stderr.decode(errors="replace")[-2000:]


def assert_non_trivial(png: Path, height: int = 2000) -> set[tuple[int, int, int]]:
    """Assert the screenshot is a drawn page, not a blank or error page; return the colours it holds."""
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (1200, height)
        rgb = img.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 20) or []
    ink = sum(n for n, c in colours if c != (255, 255, 255))
    assert len(colours) > 20, "the page looks blank"
    assert ink > 20_000, "almost nothing drawn"
    return {c for _, c in colours}


def test_report_and_index_render_in_chromium(run_cli, models: Path, tmp_path: Path) -> None:
    manifest = write_manifest(models, name="chromium.csv")
    out = tmp_path / "out"
    res = run_cli("batch", manifest, "--out", out, "--no-registry", "--workers", "2", "-q")
    assert res.code == 0, res.err
    report = out / index_rows(out)[1]["report"]  # perm: derived, with a layer map
    assert json.loads((out / index_rows(out)[1]["record"]).read_text())["verdict"]["label"] == "derived"
    drawn = {}
    for page, height in ((report, 4000), (out / "index.html", 2000)):
        png = tmp_path / f"{page.stem}.png"
        screenshot(page, png, height)
        drawn[page] = assert_non_trivial(png, height)
    assert ImageColor.getrgb(BLUE) in drawn[report]  # the per-layer similarity chart's matched-layer dots
