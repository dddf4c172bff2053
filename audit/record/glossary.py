"""The names' meanings as Markdown tables, written into README.md and docs/record.md between markers.

`python scripts/update_docs.py` rewrites those blocks (and docs/record.schema.json); a test fails when
they are stale, so a name cannot be added or reworded here without the documentation following.
"""

from __future__ import annotations

import re

from audit.record.names import FlagKind, Label, Named, Operation, StatisticName

BEGIN, END = "<!-- names:begin (generated from audit/record/names.py; do not edit) -->", "<!-- names:end -->"
SECTIONS: tuple[tuple[str, type[Named]], ...] = (
    ("Verdict labels", Label),
    ("Operations", Operation),
    ("Flags (reported beside the verdict; never a derivation)", FlagKind),
    ("Statistics (each reported with its null)", StatisticName),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def glossary_markdown() -> str:
    """One table per kind of name: value and plain-language meaning."""
    parts = []
    for title, enum in SECTIONS:
        rows = "\n".join(f"| `{m.value}` | {_cell(m.meaning)} |" for m in enum)
        parts.append(f"**{title}**\n\n| name | meaning |\n|---|---|\n{rows}\n")
    return "\n".join(parts)


def with_glossary(text: str) -> str:
    """`text` with the block between the markers replaced by the current glossary."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError("the glossary markers are missing")
    return pattern.sub(lambda _m: f"{BEGIN}\n{glossary_markdown()}{END}", text)
