"""A rendered report and a batch index open in real headless Chromium and give a non-blank screenshot.

Skipped when no Chromium is installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.batch.conftest import index_rows, write_manifest

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of raw pixel bytes) of an 8-bit, non-interlaced RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, depth, colour = 8, b"", 0, 0, 0, 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def screenshot(page: Path, png: Path) -> None:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           f"--screenshot={png}", "--window-size=1200,2000", page.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, timeout=120)
    assert png.is_file(), res.stderr.decode(errors="replace")[-2000:]


def assert_non_trivial(png: Path) -> None:
    data = png.read_bytes()
    assert len(data) > 10_000
    width, height, rows = png_pixels(data)
    assert (width, height) == (1200, 2000)
    bpp = len(rows[0]) // width
    colours, ink = set(), 0
    for row in rows[::4]:
        for x in range(0, width * bpp, bpp * 2):
            px = row[x:x + 3]
            colours.add(px)
            ink += px != b"\xff\xff\xff"
    assert len(colours) > 20, "the page looks blank"
    assert ink > 2_000, "almost nothing drawn"


def test_report_and_index_render_in_chromium(run_cli, models: Path, tmp_path: Path) -> None:
    manifest = write_manifest(models, name="chromium.csv")
    out = tmp_path / "out"
    res = run_cli("batch", manifest, "--out", out, "--no-registry", "--workers", "2", "-q")
    assert res.code == 0, res.err
    report = out / index_rows(out)[1]["report"]  # perm: derived, with a layer map
    assert json.loads((out / index_rows(out)[1]["record"]).read_text())["verdict"]["label"] == "derived"
    for page in (report, out / "index.html"):
        png = tmp_path / f"{page.stem}.png"
        screenshot(page, png)
        assert_non_trivial(png)
