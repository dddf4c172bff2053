"""The report's inline SVG charts: well-formed, drawn from the record's numbers, with their nulls, and inert."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from audit.reporting.charts import BLUE, GREEN, GREY, RED, layer_similarity_svg
from tests.reporting.test_reporting import EVIL_NAME, FLAG_RULE, render, sample_record

SVG = "{http://www.w3.org/2000/svg}"
TOK_NULL = {"mean": 0.163, "sd": 0.149, "n": 222}


def _svgs(html: str) -> list[ET.Element]:
    """Every inline SVG of a page, parsed as XML (so a malformed chart fails here)."""
    return [ET.fromstring(text.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))
            for text in re.findall(r"<svg\b.*?</svg>", html, re.S)]


def _chart(html: str, label: str) -> ET.Element:
    return next(s for s in _svgs(html) if s.get("aria-label", "").startswith(label))


def _bars(svg: ET.Element) -> list[tuple[str, str]]:
    """(tooltip, fill) of each bar of a bar chart."""
    return [(r.find(f"{SVG}title").text, r.get("fill")) for r in svg.iter(f"{SVG}rect")
            if r.find(f"{SVG}title") is not None and not r.find(f"{SVG}title").text.startswith("null")]


def _with_registry_and_probes() -> dict:
    record = sample_record()
    record["registry"] = {"entries": 3, "architecture": [], "weights": [], "skipped": [], "errors": [],
                          "tokenizer": [
                              {"name": "smollm2-135m", "family": "smollm2", "score": 0.97, "null": TOK_NULL,
                               "p_value": 0.004},
                              {"name": EVIL_NAME, "family": "gpt-2", "score": 0.12, "null": TOK_NULL, "p_value": 0.6},
                          ]}
    record["probe_run"] = {
        "backend": {"kind": "fake"},
        "settings": {"samples": 1, "max_new_tokens": 64, "temperature": 0.7, "seed": 0, "batch_size": 8},
        "declared": {"vendors": ["huggingface"]},
        "answers": 126,
        "errors": 0,
        "vendor_tests": [
            {"vendor": "openai", "name": "OpenAI", "count": 41, "of": 126, "share": 0.3254, "prompts": 30,
             "p_value": 1e-40, "log10_p": -40.0, "declared": False, "flagged": True, "reason": "above the rule"},
            {"vendor": "huggingface", "name": "Hugging Face", "count": 3, "of": 126, "share": 0.0238,
             "prompts": 3, "p_value": 0.4, "log10_p": -0.4, "declared": True, "flagged": False,
             "reason": "declared"},
            {"vendor": "meta", "name": "Meta", "count": 1, "of": 126, "share": 0.0079, "prompts": 1,
             "p_value": 0.9, "log10_p": -0.05, "declared": False, "flagged": False, "reason": "too few"},
        ],
        "flag_rule": FLAG_RULE,
    }
    record["probes"] = [{"suite": "self-identity", "answered": 126, "failed": 0, "prompts": [], "responses": []}]
    return record


def test_every_chart_is_well_formed_and_present() -> None:
    svgs = _svgs(render(_with_registry_and_probes()))
    assert [s.get("aria-label") for s in svgs] == [
        "layer map: candidate layer against matched reference layer",
        "per-layer similarity against the null band",
        "tokenizer overlap with the nearest families",
        "share of answers claiming each vendor",
    ]


def test_layer_similarity_separates_layers_above_the_null_band() -> None:
    rows = [(0, 0, 0.95), (1, 1, 0.9), (2, None, 0.01), (3, 3, 0.02)]
    svg = _svgs(str(layer_similarity_svg(rows, (0.0, 0.01))))[0]
    dots = {int(c.find(f"{SVG}title").text.split()[1]): c for c in svg.iter(f"{SVG}circle")}
    assert {k: d.get("fill") for k, d in dots.items()} == {0: BLUE, 1: BLUE, 2: GREY, 3: GREY}
    band = next(r for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None)
    top, bottom = float(band.get("y")), float(band.get("y")) + float(band.get("height"))
    ys = {k: float(d.get("cy")) for k, d in dots.items()}
    assert ys[0] < ys[1] < top  # above the band, higher similarity drawn higher
    assert top <= ys[3] <= bottom  # 0.02 lies inside mean ± 3 sd = [-0.03, 0.03]
    assert "-0.03 to 0.03" in band.find(f"{SVG}title").text


def test_layer_similarity_without_a_null_draws_no_band() -> None:
    svg = _svgs(str(layer_similarity_svg([(0, 0, 0.5), (1, 1, 0.6)], None)))[0]
    assert all(r.find(f"{SVG}title") is None for r in svg.iter(f"{SVG}rect"))
    assert "shaded" not in ET.tostring(svg, encoding="unicode")


def test_report_shows_similarity_against_null_for_each_layer_map() -> None:
    html = render(sample_record())
    svgs = re.findall(r'<svg class="layersim".*?</svg>', html, re.S)
    assert len(svgs) == 1  # only the comparison with a layer map
    assert svgs[0].count("<circle") == 28
    assert "Per-layer similarity against the null" in html


def test_tokenizer_chart_shows_overlap_over_the_family_null() -> None:
    html = render(_with_registry_and_probes())
    chart = _chart(html, "tokenizer")
    bars = _bars(chart)
    assert bars[0] == ("smollm2 (smollm2-135m): 0.970, p 0.004", BLUE)  # above mean + 3 sd = 0.61
    assert bars[1][1] == GREY and bars[1][0].startswith("gpt-2 (<script>")  # inside the null, name escaped
    assert [f for _, f in bars[2:]] == [GREEN, GREEN]  # exact overlap with the two compared references
    assert "n=222" in ET.tostring(chart, encoding="unicode")
    assert "<script>" not in html


def test_tokenizer_chart_needs_its_null() -> None:
    record = _with_registry_and_probes()
    for row in record["registry"]["tokenizer"]:
        del row["null"]
    assert "tokenizer overlap with the nearest" not in render(record)


def test_claims_chart_marks_flagged_declared_and_the_rule() -> None:
    html = render(_with_registry_and_probes())
    chart = _chart(html, "share of answers")
    fills = [f for _, f in _bars(chart)]
    assert fills == [RED, GREEN, GREY]
    assert _bars(chart)[0][0] == "OpenAI: 41/126, p 1.0e-40, flagged"
    lines = {ln.find(f"{SVG}title").text: float(ln.get("x1")) for ln in chart.iter(f"{SVG}line")}
    rate = next(x for t, x in lines.items() if "false-claim rate 2%" in t)
    need = next(x for t, x in lines.items() if "needed to flag 5%" in t)
    assert rate < need  # 2% left of 5% on the same axis
    widths = [float(r.get("width")) for r in chart.iter(f"{SVG}rect") if r.get("fill") in (RED, GREEN, GREY)]
    assert widths[0] > widths[1] > widths[2]


def test_no_probe_run_no_claims_chart() -> None:
    assert "share of answers claiming" not in render(sample_record())


def test_probe_only_record_explains_itself_and_how_answers_were_made() -> None:
    record = _with_registry_and_probes()
    record.update(comparisons=[], references=[], registry=None,
                  verdict={"label": "inconclusive", "parent": None, "confidence": None, "references_checked": 0,
                           "summary": "Black-box probes only."})
    record["probes"][0].update(source="bundled:self-identity.yaml", version=1, sha256="f" * 64)
    record["probe_run"].update(backend={"kind": "transformers", "model": EVIL_NAME, "device": "cpu",
                                        "dtype": "float32"},
                               settings={"samples": 2, "seeds": [0, 1], "temperature": 0.7, "max_new_tokens": 160,
                                         "seed": 0, "batch_size": 8})
    html = render(record)
    assert "No weights were compared: this record holds black-box probe answers only" in html
    assert "mixed or too thin" not in html and "0 references checked (" not in html
    settings = re.search(r"How the answers were produced</h3>\s*<dl.*?</dl>", html, re.S).group(0)
    assert "<dd class=\"mono\">[0, 1]</dd>" in settings and "bundled:self-identity.yaml v1, sha256 " + "f" * 64 in settings
    assert "&lt;script&gt;" in settings and "<script" not in html
    assert _chart(html, "share of answers") is not None
