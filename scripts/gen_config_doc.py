"""Regenerate the settings table of docs/CONFIGURATION.md from ctxgate/settings.py.

Run after adding or changing a setting: ``.venv/bin/python scripts/gen_config_doc.py``.
tests/test_docs.py fails when the file is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from ctxgate.settings import ENV_PREFIX, Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "CONFIGURATION.md"
BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} names (see below)"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{_default(field)}` | {field.description} |")
    return "\n".join(rows)


def render(current: str) -> str:
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    text = render(DOC.read_text())
    if "--check" in sys.argv:
        sys.exit(0 if text == DOC.read_text() else 1)
    DOC.write_text(text)
