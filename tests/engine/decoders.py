"""Decoders of the lossless transforms: each rebuilds the original from the output.

They live in the tests on purpose: the proof that a transform is lossless is that a
reader with nothing but the output (and these few documented rules) gets the data back.
"""

from __future__ import annotations

import json
from typing import Any

from ctxgate.engine.json import COLUMNS, ROWS


def untable(v: Any) -> Any:
    """Expand every ``{"@columns": [...], "@rows": [...]}`` back into an array of objects."""
    if isinstance(v, dict):
        if set(v) == {COLUMNS, ROWS}:
            cols = v[COLUMNS]
            out = []
            for row in v[ROWS]:
                if isinstance(row, list):
                    item = dict(zip(cols, (untable(x) for x in row[: len(cols)]), strict=True))
                    if len(row) == len(cols) + 1:
                        item.update({k: untable(x) for k, x in row[-1].items()})
                    else:
                        assert len(row) == len(cols), row
                    out.append(item)
                else:
                    out.append(untable(row))
            return out
        return {k: untable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [untable(x) for x in v]
    return v


def decode_json(output: str) -> Any:
    """The value of a losslessly compressed JSON document."""
    return untable(json.loads(output))


def decode_ndjson(output: str) -> list[Any]:
    """The values of a compressed NDJSON stream: one per line, or one table of them."""
    if output.startswith('{"@columns":'):
        value = decode_json(output)
        assert isinstance(value, list)
        return value
    return [decode_json(line) for line in output.split("\n") if line.strip()]


def table_cells(text: str) -> list[list[str]]:
    """What a table's lossless transform keeps: every row's cells, in order."""
    return [line.split() for line in text.rstrip("\n").split("\n")]


def terminal_lines(text: str) -> list[str]:
    """The lines a terminal shows, without trailing whitespace (ANSI and CR resolved)."""
    from ctxgate.engine.wrappers import clean

    return [ln.rstrip() for ln in clean(text)[0].split("\n")]
