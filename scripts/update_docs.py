"""Regenerate what the docs derive from the code: the names' glossary in README.md and docs/record.md,
and docs/record.schema.json (the JSON Schema of the record). tests/record/test_docs.py checks they are current."""

from __future__ import annotations

from pathlib import Path

from audit.record.glossary import with_glossary
from audit.record.io import json_schema_text

ROOT = Path(__file__).resolve().parent.parent
GLOSSARY_FILES = (ROOT / "README.md", ROOT / "docs" / "record.md")
SCHEMA_FILE = ROOT / "docs" / "record.schema.json"


def main() -> None:
    for path in GLOSSARY_FILES:
        path.write_text(with_glossary(path.read_text(encoding="utf-8")), encoding="utf-8")
    SCHEMA_FILE.write_text(json_schema_text(), encoding="utf-8")
    print(f"updated {', '.join(p.relative_to(ROOT).as_posix() for p in (*GLOSSARY_FILES, SCHEMA_FILE))}")


if __name__ == "__main__":
    main()
