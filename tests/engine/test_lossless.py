"""Level ``lossless`` is recoverable: a decoder rebuilds the original from the output.

JSON is value-equal after the tables are expanded; tables keep every cell of every
row; YAML/TOML and text keep every line (trailing whitespace aside, as the terminal
shows it, with runs of identical lines expanded back). Checked on the whole corpus
(outputs and trajectory tool messages) and on generated inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxgate.engine import Context, Outcome, compress
from ctxgate.engine.json import parse
from ctxgate.engine.wrappers import clean, unwrap
from tests.engine.decoders import decode_json, decode_ndjson, table_cells, terminal_lines

TOOLS = {"html": "WebFetch", "prose": "WebFetch", "source": "Read"}


def _decoded_lines(text: str) -> list[str]:
    from ctxgate.engine._lines import expand_runs

    return [ln.rstrip() for ln in expand_runs(text.split("\n"))]


def assert_recoverable(original: str, out: Outcome) -> None:
    assert not out.originals
    if not out.changed:
        assert out.text == original
        return
    body_in = clean(unwrap(original).body)[0]
    body_out = unwrap(out.text).body
    kind = out.content_type
    if kind == "json":
        form, value = parse(body_in)
        decoded: Any = decode_ndjson(body_out) if form == "ndjson" else decode_json(body_out)
        assert decoded == value
    elif kind == "table":
        assert table_cells(body_out) == table_cells(body_in)
    elif kind == "config":
        assert body_out.split("\n") == [ln.rstrip() for ln in body_in.split("\n")]
    elif kind == "sections":
        pytest.skip("sections: each part is checked by its own compressor's decoder")
    else:
        assert _decoded_lines(body_out) == [ln.rstrip() for ln in terminal_lines(body_in)], kind


def _corpus_texts(corpus: Path) -> list[tuple[str, str, str]]:
    out = []
    for t in sorted(d for d in (corpus / "outputs").iterdir() if d.is_dir()):
        for f in sorted(t.iterdir()):
            if f.name in ("samples.jsonl", "questions.jsonl"):
                continue
            out.append(
                (
                    f"{t.name}/{f.name}",
                    f.read_text(encoding="utf-8", errors="replace"),
                    TOOLS.get(t.name, "Bash"),
                )
            )
    for path in sorted((corpus / "trajectories").glob("*.jsonl")):
        if path.name == "needles.jsonl":
            continue
        for line in path.open(encoding="utf-8"):
            conv = json.loads(line)
            for i, m in enumerate(conv["messages"]):
                if m["role"] == "tool" and isinstance(m.get("content"), str):
                    out.append((f"{conv['id']}#{i}", m["content"], m.get("name") or "tool"))
    return out


@pytest.mark.corpus
def test_whole_corpus_is_recoverable_at_lossless(corpus: Path) -> None:
    failures = []
    checked = 0
    for name, text, tool in _corpus_texts(corpus):
        out = compress(text, Context(tool_name=tool, level="lossless"))
        if out.content_type == "sections" and out.changed:
            continue
        try:
            assert_recoverable(text, out)
        except AssertionError as exc:
            failures.append(f"{name} ({out.content_type}): {str(exc)[:200]}")
        checked += out.changed
    assert not failures, "\n".join(failures[:20])
    assert checked > 50


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=6),
    max_leaves=80,
)
records = st.lists(
    st.dictionaries(st.sampled_from(["id", "name", "ok", "n", "tags", "@x"]), json_values, min_size=1),
    min_size=2,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(st.one_of(json_values, records, st.dictionaries(st.text(max_size=5), records, max_size=3)))
def test_generated_json_is_recoverable(value: Any) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    assert_recoverable(text, compress(text, Context(level="lossless")))


@settings(max_examples=40, deadline=None)
@given(records)
def test_generated_ndjson_is_recoverable(items: list[dict[str, Any]]) -> None:
    text = "\n".join(json.dumps(x, indent=None, separators=(", ", ": ")) for x in items) + "\n"
    out = compress(text, Context(level="lossless"))
    if out.content_type == "json":
        assert_recoverable(text, out)


cell = st.from_regex(r"[a-z][a-z0-9./-]{0,12}", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(cell, st.integers(0, 99), cell), min_size=3, max_size=60))
def test_generated_aligned_tables_are_recoverable(rows: list[tuple[str, int, str]]) -> None:
    lines = ["NAME" + " " * 12 + "RESTARTS   STATUS"] + [f"{a:<16}{b:<11}{c}" for a, b, c in rows]
    text = "\n".join(lines) + "\n"
    assert_recoverable(text, compress(text, Context(level="lossless")))
