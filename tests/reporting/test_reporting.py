"""Tests for the record views: atomic JSON writer, HTML report, console summary."""

from __future__ import annotations

import copy
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from rich.console import Console

from audit.errors import InputError
from audit.record.io import parse_record
from audit.record.models import Null, Record
from audit.record.names import FlagKind, Label, Operation
from audit.reporting.console import condense_layer_map, format_p, print_summary
from audit.reporting.html import render_html
from audit.reporting.writer import write_atomic, write_json

EVIL_NAME = "<script>alert(1)</script>"
EVIL_FILE = "model\"&<>'.safetensors"


def _sha(c: str) -> str:
    return c * 64


FLAG_RULE = {"min_count": 3, "min_prompts": 2, "min_share": 0.05, "false_claim_rate": 0.02, "alpha": 0.01,
             "correction": "bonferroni", "test": "one-sided binomial"}


def sample_record() -> dict:
    """A derived-from-smollm2 record with two comparisons, following docs/record.md (a plain JSON dict)."""
    arch = {
        "model_type": "llama",
        "hidden_size": 576,
        "num_layers": 30,
        "num_heads": 9,
        "num_kv_heads": 3,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "parameters": 134515008,
        "naming_scheme": "hf-llama",
        "storage_dtypes": ["F32"],
    }
    tok = {
        "kind": "bpe",
        "vocab_size": 49152,
        "vocab_sha256": _sha("a"),
        "merges_sha256": _sha("b"),
        "special": {"bos": "<|im_start|>"},
    }
    # candidate has 28 layers: reference layers 5 and 6 were pruned
    layer_map = [[i, i if i < 5 else i + 2, 0.99 - 0.001 * i] for i in range(28)]
    return {
        "schema": "provaudit.record/2",
        "tool": {"name": "provaudit", "version": "0.1.0"},
        "created": "2026-11-23T09:00:00+00:00",
        "command": {
            "name": "compare",
            "argv": ["provaudit", "compare", EVIL_FILE, "refs/smollm2"],
            "seed": 0,
        },
        "subject": {
            "name": EVIL_NAME,
            "path": "/models/" + EVIL_FILE,
            "format": "safetensors",
            "files": [{"path": "/models/" + EVIL_FILE, "bytes": 538_090_408, "sha256": _sha("c")}],
            "architecture": {**arch, "num_layers": 28, "naming_scheme": "unknown"},
            "tokenizer": tok,
        },
        "references": [
            {
                "name": "smollm2",
                "path": "/refs/smollm2",
                "format": "hf-folder",
                "files": [
                    {"path": "/refs/smollm2/model.safetensors", "bytes": 269_060_552, "sha256": _sha("d")}
                ],
                "architecture": arch,
                "tokenizer": tok,
            },
            {
                "name": "indep-135m",
                "path": "/refs/indep",
                "format": "safetensors",
                "files": [
                    {"path": "/refs/indep/model.safetensors", "bytes": 269_060_552, "sha256": _sha("e")}
                ],
                "architecture": arch,
                "tokenizer": tok,
            },
        ],
        "verdict": {
            "label": "derived",
            "parent": "smollm2",
            "confidence": 0.97,
            "operations": ["renamed-tensors", "layer-pruning"],
            "summary": "Derived from smollm2: its weights are inside, with tensors renamed and 2 layers pruned.",
            "references_checked": 2,
        },
        "comparisons": [
            {
                "reference": "indep-135m",
                "statistics": [
                    {
                        "name": "layer-gram-similarity",
                        "value": 0.004,
                        "null": {"mean": 0.0, "sd": 0.01, "n": 400, "kind": "permutation of hidden units"},
                        "p_value": 0.41,
                        "log10_p": math.log10(0.41),
                        "meaning": "no shared weights",
                    },
                ],
                "layer_map": [],  # no comparable layers
                "tokenizer": {"jaccard": 1.0, "shared": 49152, "candidate_only": 0, "reference_only": 0,
                              "identical": True},
                "architecture_match": True,
                "operations": [],
                "verdict": {
                    "label": "original",
                    "parent": None,
                    "confidence": 0.9,
                    "operations": [],
                    "summary": "No sign of indep-135m's weights.",
                },
                "seconds": 2.1,
            },
            {
                "reference": "smollm2",
                "statistics": [
                    {
                        "name": "layer-gram-similarity",
                        "value": 0.98,
                        "null": {"mean": 0.0, "sd": 0.01, "n": 400, "kind": "permutation of hidden units"},
                        "p_value": 0.0,
                        "log10_p": -300.0,
                        "meaning": "weights carried over, " + EVIL_NAME,
                        "detail": "28 of 28 candidate layers above the null band",
                    },
                    {
                        "name": "norm-weights-centred",
                        "value": 0.95,
                        "null": {"mean": 0.01, "sd": 0.02, "n": 200, "kind": "shuffle of norm weights"},
                        "p_value": 3.2e-12,
                        "log10_p": math.log10(3.2e-12),
                        "meaning": "shared token rows match",
                    },
                ],
                "layer_map": layer_map,
                "layer_null": {"mean": 0.0, "sd": 0.01, "n": 400, "kind": "unrelated layer pairs"},
                "alignment": {
                    "method": "embedding-anchors",
                    "shared_tokens": 49152,
                    "matched_units": 576,
                    "fixed_points": 576,
                    "hidden_size": [576, 576],
                },
                "tokenizer": {"jaccard": 1.0, "shared": 49152, "candidate_only": 0, "reference_only": 0,
                              "identical": True},
                "architecture_match": True,
                "operations": [
                    {"name": "renamed-tensors", "detail": "names follow no known scheme"},
                    {"name": "layer-pruning", "detail": "reference layers 5, 6 dropped"},
                ],
                "verdict": {
                    "label": "derived",
                    "parent": "smollm2",
                    "confidence": 0.97,
                    "operations": ["renamed-tensors", "layer-pruning"],
                    "summary": "Derived.",
                },
                "seconds": 3.2,
            },
        ],
        "flags": [
            {
                "kind": "architecture-borrowed",
                "detail": "llama architecture",
                "evidence": {"references": ["indep-135m"]},
            },
            {
                "kind": "distillation-leak",
                "detail": f"claims to be {EVIL_NAME}",
                "evidence": {
                    "vendor": "openai",
                    "vendor_name": "OpenAI",
                    "models": {"ChatGPT": 3},
                    "count": 3,
                    "of": 5,
                    "share": 0.6,
                    "prompts": 3,
                    "languages": {"en": {"count": 3, "of": 5}},
                    "p_value": 1e-6,
                    "log10_p": -6.0,
                    "rule": FLAG_RULE,
                    "examples": [
                        {"suite": "self-identity", "probe": "who-1", "sample": 0, "seed": 11,
                         "prompt": "Who made you?", "response": f"I am {EVIL_NAME}, made by OpenAI.",
                         "claims": [{"vendor": "openai", "model": "ChatGPT"}]},
                    ],
                },
            },
        ],
        "probes": [],
    }


# ---------------------------------------------------------------- HTML

NETWORK_ASSET = re.compile(r"""(?:src|href|action|srcset)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def typed(record: dict) -> Record:
    """A hand-built record dict as the views take it: validated (and upgraded) by parse_record."""
    return parse_record(record, "test record")


def render(record: dict) -> str:
    return render_html(typed(record))


def minimal_record(label: str = "inconclusive") -> dict:
    """Only what a record must hold."""
    return {
        "schema": "provaudit.record/2",
        "tool": {"version": "0.1.0"},
        "created": "2026-11-23T09:00:00+00:00",
        "command": {"name": "audit"},
        "subject": {"name": "m", "format": "fake"},
        "verdict": {"label": label, "summary": ""},
    }


def test_html_escapes_untrusted_text() -> None:
    html = render(sample_record())
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL_FILE not in html  # quotes, ampersand and brackets are all escaped
    assert "model&#34;&amp;&lt;&gt;&#39;.safetensors" in html


def test_html_shows_verdict_parent_and_evidence() -> None:
    html = render(sample_record())
    assert ">derived<" in html
    assert "smollm2" in html
    assert "0.97" in html
    assert "no derivation" not in html  # that wording is for 'original'
    assert "&lt; 1e-300" in html  # p clamped at 1e-300 is shown as a bound
    assert "3.2e-12" in html
    assert "<svg" in html and "null+3sd" in html
    assert "cand 0-4 -&gt; ref 0-4, cand 5-27 -&gt; ref 7-29; ref not matched: 5, 6" in html
    assert _sha("c") in html and "513.2 MiB" in html


def test_html_statistic_shows_its_meaning_and_detail() -> None:
    html = render(sample_record())
    row = re.search(r"<tr>\s*<td>layer-gram-similarity</td>\s*<td class=\"num\">0.98</td>.*?</tr>", html, re.S)
    assert row is not None
    assert "weights carried over, &lt;script&gt;" in row.group(0)
    assert "28 of 28 candidate layers above the null band" in row.group(0)
    other = re.search(r"<td>norm-weights-centred</td>.*?</tr>", html, re.S)
    assert other is not None and "shared token rows match" in other.group(0)
    assert '<br><span class="muted"></span>' not in html  # no empty detail line where there is none


def test_html_has_no_external_assets_or_scripts() -> None:
    record = sample_record()
    record["subject"]["path"] = "https://evil.example/x.png"
    html = render(record)
    assert not NETWORK_ASSET.search(html)
    assert "<script" not in html.lower()
    assert "@import" not in html and "url(" not in html
    clean = render(sample_record())
    assert "http://" not in clean and "https://" not in clean


def test_html_original_names_n_references() -> None:
    record = sample_record()
    record["verdict"].update(label="original", parent=None, operations=[], summary="Original.")
    html = render(record)
    assert "no derivation from any of the 2 references checked" in html
    assert "flag" in html and "not as a derivation" in html


@pytest.mark.parametrize("label", list(Label))
def test_html_explains_each_label_with_its_meaning(label: Label) -> None:
    record = sample_record()
    record["verdict"].update(label=label.value, summary="s.")
    html = render(record)
    expected = label.meaning[1:].replace("N references checked", "2 references checked (indep-135m, smollm2)")
    assert str(escape(expected)) in html
    if label in (Label.DERIVED, Label.FINE_TUNED):
        assert "Here the parent is smollm2" in html


def test_html_shows_the_meaning_of_every_operation() -> None:
    record = sample_record()
    ops = [op.value for op in Operation]
    record["verdict"]["operations"] = ops
    record["comparisons"][1]["operations"] = [{"name": op, "detail": f"detail of {op}"} for op in ops]
    html = render(record)
    for op in Operation:
        meaning = str(escape(op.meaning))
        assert f"<strong>{op.value}</strong> <span class=\"muted\">({meaning})</span>" in html  # verdict list
        assert f"<strong>{op.value}</strong>: detail of {op.value} <span class=\"muted\">({meaning})</span>" in html


def test_html_renders_typed_flags() -> None:
    record = sample_record()
    record["flags"] += [
        {"kind": "tokenizer-borrowed", "detail": "same vocabulary as smollm2",
         "evidence": {"references": {"smollm2": {"jaccard": 1.0, "shared": 49152, "candidate_only": 0,
                                                 "reference_only": 0, "identical": True}}}},
        {"kind": "wrapper-suspected", "detail": "bills with the gpt2 tokenizer",
         "evidence": {"tokenizer_inference": {"status": "matched", "family": "gpt-2"},
                      "tokenizer_vendors": ["openai"], "claimed": ["openai"]}},
        {"kind": "non-finite-weights", "detail": "3 rows of up_proj hold NaN",
         "evidence": {"models": [{"model": "smollm2", "nonfinite": {"model.layers.0.mlp.up_proj.weight": 3},
                                  "tensors_nonfinite": 1}]}},
        {"kind": "hidden-prompt-suspected", "detail": "about 60 hidden prompt tokens billed",
         "evidence": {"reference": "smollm2", "hidden_tokens": 61.0, "hidden_tokens_se": 1.5}},
    ]
    html = render(record)
    flags = re.search(r"<h2>Flags</h2>.*?<h2>", html, re.S).group(0)
    for kind in FlagKind:
        assert f'<span class="flag-kind">{kind.value}</span>' in flags
        assert str(escape(kind.meaning)) in flags
    # distillation-leak: examples as prompt/response pairs, the rest of its evidence as compact JSON
    assert "1 example answers" in flags and "<pre>Who made you?</pre>" in flags
    assert "<pre>I am &lt;script&gt;alert(1)&lt;/script&gt;, made by OpenAI.</pre>" in flags
    assert "self-identity / who-1 · sample 0 · seed 11" in flags
    assert "&#34;vendor_name&#34;: &#34;OpenAI&#34;" in flags and "&#34;examples&#34;" not in flags
    assert "&#34;tokenizer_vendors&#34;: [&#34;openai&#34;]" in flags
    assert "&#34;references&#34;: [&#34;indep-135m&#34;]" in flags
    assert "null" not in re.sub(r"<span class=\"muted\">.*?</span>", "", flags)  # absent fields are left out


def test_html_renders_a_minimal_record() -> None:
    html = render(minimal_record())
    assert ">inconclusive<" in html and "No comparisons in this record." in html


@pytest.mark.parametrize("bad", [
    {"schema": "provaudit.record/1", "verdict": {"label": "inconclusive"}},
    {**minimal_record(), "verdict": {"label": "maybe", "summary": ""}},
    {**minimal_record(), "flags": [{"kind": "distillation-leak", "detail": "x", "evidence": {"count": 3}}]},
    {**minimal_record(), "comparisons": [{"reference": "r", "statistics": "many"}]},
])
def test_malformed_records_are_rejected_before_the_views(bad: dict) -> None:
    with pytest.raises(InputError) as info:
        typed(bad)
    assert "malformed record" in str(info.value) and "\n" not in str(info.value)


def test_html_renders_probes() -> None:
    record = sample_record()
    record["probes"] = [
        {
            "suite": "self-identity",
            "answered": 5,
            "failed": 0,
            "prompts": [{"id": "who-1", "language": "en",
                         "messages": [{"role": "user", "content": "Who are you?"}]}],
            "responses": [{"probe": "who-1", "language": "en", "sample": 0, "seed": 11, "text": EVIL_NAME,
                           "claims": [{"vendor": "OpenAI", "model": "ChatGPT"}]}],
            "claims": [{"vendor": "OpenAI", "model": "ChatGPT", "language": "en", "count": 3, "of": 5}],
            "detectors": ["distillation-leak"],
        }
    ]
    html = render(record)
    assert "self-identity" in html and "ChatGPT" in html
    assert "<pre>Who are you?</pre>" in html
    assert "who-1 · en · sample 0 · seed 11 · claims: OpenAI (ChatGPT)" in html
    assert "<pre>&lt;script&gt;alert(1)&lt;/script&gt;</pre>" in html
    assert "<script" not in html.lower()


# ---------------------------------------------------------------- console


def _console_text(record: dict) -> str:
    console = Console(
        width=80, record=True, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    print_summary(typed(record), console)
    return console.export_text()


def test_console_fits_80_columns_and_shows_label() -> None:
    text = _console_text(sample_record())
    assert all(len(line) <= 80 for line in text.splitlines()), max(text.splitlines(), key=len)
    assert "DERIVED" in text
    assert "smollm2" in text
    assert "cand 0-4 -> ref 0-4" in text
    assert "ref not matched: 5, 6" in text
    assert "< 1e-300" in text
    assert "architecture-borrowed" in text
    assert EVIL_NAME in text  # printed literally, not interpreted


def test_console_does_not_interpret_rich_markup_in_names() -> None:
    record = sample_record()
    record["subject"]["name"] = "[/red] [bold]x"
    record["verdict"]["summary"] = "[link=https://e.x]click[/link]"
    text = _console_text(record)
    assert "[/red] [bold]x" in text
    assert "[link=https://e.x]click[/link]" in text


def test_console_minimal_and_original_records() -> None:
    assert "INCONCLUSIVE" in _console_text(minimal_record())
    record = sample_record()
    record["verdict"].update(label="original", parent=None)
    text = _console_text(record)
    assert "ORIGINAL" in text and "any of the 2 references" in text


def test_console_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary(typed(sample_record()))
    out = capsys.readouterr().out
    assert "DERIVED" in out


def test_condense_layer_map_in_order() -> None:
    null = Null(mean=0.0, sd=0.01, n=400, kind="unrelated layer pairs")
    lm = [(i, i, 0.9) for i in range(30)]
    assert condense_layer_map(lm, null) == "cand 0-29 -> ref 0-29 in order; 30/30 above null+3sd (0.03)"
    dup = [(0, 0, 0.9), (1, 1, 0.9), (2, 1, 0.9), (3, 2, 0.9)]
    assert "ref used twice or more: 1" in condense_layer_map(dup)
    assert "ref not matched: 3" in condense_layer_map(dup, reference_layers=4)
    gaps = [(0, 0, 0.9), (1, None, 0.1), (2, None, 0.1), (3, 1, 0.0)]
    assert condense_layer_map(gaps, null) == (
        "cand 0 -> ref 0, cand 3 -> ref 1; unmatched cand: 1, 2; 1/2 above null+3sd (0.03)"
    )
    assert condense_layer_map([]) == "no layer map"


@pytest.mark.parametrize(
    ("p", "lg", "want"),
    [
        (0.0, -512.3, "5.0e-513"),  # exact p-values carry their magnitude far below floats
        (0.0, -300.0, "< 1e-300"),  # provaudit 0.1 clamped normal-fit p-values at 1e-300
        (0.0, -250.5, "3.2e-251"),
        (0.41, None, "0.410"),
        (3.2e-12, None, "3.2e-12"),
        (0.0, None, "< 1e-300"),
        (None, None, "—"),
        (1e-310, -310.0, "1.0e-310"),
        (0.0, -1e-5, "1.0e0"),
    ],
)
def test_format_p(p: float | None, lg: float | None, want: str) -> None:
    assert format_p(p, lg) == want


# ---------------------------------------------------------------- writer


def test_write_atomic_creates_parents_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "record.json"
    write_atomic(target, "first ünïcode\n")
    write_atomic(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert [p.name for p in target.parent.iterdir()] == ["record.json"]


def test_write_atomic_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        write_atomic(target, 123)  # type: ignore[arg-type]
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_write_json_does_not_clobber_on_unserialisable(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    write_json(str(target), {"ok": 1})
    before = target.read_text(encoding="utf-8")
    record = sample_record()
    record["verdict"]["bad"] = object()
    with pytest.raises(TypeError):
        write_json(str(target), record)
    assert target.read_text(encoding="utf-8") == before
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_write_json_handles_numpy_and_non_finite(tmp_path: Path) -> None:
    record = copy.deepcopy(sample_record())
    record["extra"] = {
        "inf": float("inf"),
        "nan": float("nan"),
        "np_f32": np.float32(0.5),
        "np_nan": np.float64("nan"),
        "np_int": np.int64(7),
        "np_bool": np.bool_(True),
        "arr": np.array([1.0, np.inf]),
        "path": Path("x/y"),
    }
    target = tmp_path / "out" / "record.json"
    write_json(target, record)
    text = target.read_text(encoding="utf-8")
    assert EVIL_NAME in text  # ensure_ascii=False keeps text readable
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["extra"] == {
        "inf": None,
        "nan": None,
        "np_f32": 0.5,
        "np_nan": None,
        "np_int": 7,
        "np_bool": True,
        "arr": [1.0, None],
        "path": "x/y",
    }
    assert text.startswith('{\n  "schema"')


def test_write_json_dash_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    write_json("-", {"schema": "provaudit.record/1", "x": float("nan")})
    assert json.loads(capsys.readouterr().out) == {"schema": "provaudit.record/1", "x": None}
