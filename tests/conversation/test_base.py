"""The offset-keeping JSON scanner and the byte-exact splice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxgate.conversation._base import (
    ARRAY,
    OBJECT,
    OPAQUE,
    STRING,
    Edit,
    Node,
    decode,
    quote,
    scan,
    shared_prefix,
    splice,
    splice_text,
    text_blocks,
    text_of,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


def plain(node: Node) -> Any:
    if node.kind == OBJECT:
        return {k: plain(v) for k, v in node.value.items()}
    if node.kind == ARRAY:
        return [plain(v) for v in node.value]
    return node.value


def strings(node: Node) -> list[Node]:
    if node.kind == STRING:
        return [node]
    children = node.value.values() if node.kind == OBJECT else node.value if node.kind == ARRAY else []
    return [s for c in children for s in strings(c)]


@settings(max_examples=150, deadline=None)
@given(json_values, st.sampled_from([None, 0, 2]), st.booleans())
def test_scan_matches_json_loads_and_offsets_are_exact(value: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    node = scan(text)
    assert plain(node) == json.loads(text)
    assert (node.start, node.end) == (0, len(text))
    for s in strings(node):
        assert json.loads(text[s.start : s.end]) == s.value


@settings(max_examples=150, deadline=None)
@given(json_values, st.sampled_from([None, 1]), st.data())
def test_splice_changes_only_the_named_literals(value: Any, indent: int | None, data: st.DataObject) -> None:
    raw = json.dumps({"v": value, "s": "x"}, indent=indent, ensure_ascii=False).encode()
    text = decode(raw)
    nodes = strings(scan(text))
    chosen = data.draw(st.lists(st.sampled_from(nodes), unique_by=lambda n: n.start, max_size=3))
    edits = [Edit(n.start, n.end, data.draw(st.text(max_size=8))) for n in chosen]
    out = splice(raw, edits).decode()
    # outside the edited ranges every character is the input's
    pos_in = pos_out = 0
    for e in sorted(edits, key=lambda e: e.start):
        gap = e.start - pos_in
        assert out[pos_out : pos_out + gap] == text[pos_in : e.start]
        lit = quote(e.text)
        assert out[pos_out + gap : pos_out + gap + len(lit)] == lit
        pos_in, pos_out = e.end, pos_out + gap + len(lit)
    assert out[pos_out:] == text[pos_in:]
    json.loads(out)


def test_splice_keeps_key_order_whitespace_numbers_and_escapes() -> None:
    raw = b'{ "b" : 1.50e3,\n  "a":"\\u00e9\\/x",   "t" : "old" ,"z":[ 1 ,2 ] }'
    node = scan(decode(raw))
    t = node.get("t")
    assert t is not None
    out = splice(raw, [Edit(t.start, t.end, 'new "q"\n')])
    assert out == b'{ "b" : 1.50e3,\n  "a":"\\u00e9\\/x",   "t" : "new \\"q\\"\\n" ,"z":[ 1 ,2 ] }'
    assert splice(raw, []) is raw


def test_quote_is_deterministic_utf8_and_escapes_lone_surrogates() -> None:
    assert quote("é\n") == '"é\\n"'
    assert quote("a\ud800b") == '"a\\ud800b"'
    assert quote("a\ud800b").encode("utf-8")


@pytest.mark.parametrize(
    "bad",
    ["", "{", '{"a" 1}', '{"a":1,}', "[1 2]", "nul", '{"a":1} x', '"\x01"', "[" * 300 + "]" * 300],
)
def test_scan_rejects_invalid_json(bad: str) -> None:
    with pytest.raises(ValueError):
        scan(bad)


def shape(node: Node) -> Any:
    """Kinds, ranges and values of a node tree, for comparing two scans."""
    if node.kind == OBJECT:
        value: Any = {k: shape(v) for k, v in node.value.items()}
    elif node.kind == ARRAY:
        value = [shape(v) for v in node.value]
    else:
        value = node.value
    return node.kind, node.start, node.end, value


def edited(text: str, data: st.DataObject) -> str:
    """``text`` with a drawn slice replaced: an appended message, a moved marker, a typo..."""
    a = data.draw(st.integers(0, len(text)))
    b = data.draw(st.integers(a, len(text)))
    return text[:a] + data.draw(st.sampled_from(["", "1", "0", "]", "}", ",", '"', ' "x"', '{"k": [1, "é"]}'])) + text[b:]


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([None, 1]), st.data())
def test_a_rescan_reusing_an_earlier_scan_equals_a_fresh_scan(value: Any, indent: int | None, data: st.DataObject) -> None:
    old = json.dumps({"m": value, "tail": [value]}, indent=indent, ensure_ascii=False)
    walk = data.draw(st.sampled_from([None, frozenset({"m"})]))
    prev = scan(old, walk=walk)
    new = data.draw(st.sampled_from([old, old[:-1] + ', "n": 12}', json.dumps({"m": [value, value]})]))
    if data.draw(st.booleans()):
        new = edited(new, data)
    shared = shared_prefix(old, new)
    assert old[:shared] == new[:shared] and (shared == min(len(old), len(new)) or old[shared] != new[shared])
    try:
        fresh = scan(new, walk=walk)
    except ValueError:
        with pytest.raises(ValueError):
            scan(new, walk=walk, prev=prev, shared=shared)
        return
    assert shape(scan(new, walk=walk, prev=prev, shared=shared)) == shape(fresh)


def test_a_rescan_rescans_a_number_that_the_new_text_extends() -> None:
    old, new = '{"a": [1, 2, 3], "b": 12}', '{"a": [1, 2, 3], "b": 123}'
    prev = scan(old)
    again = scan(new, prev=prev, shared=shared_prefix(old, new))
    assert again.value["a"] is prev.value["a"]  # the shared part is taken as it is
    assert again.value["b"].value == 123


def test_shared_prefix_of_long_texts() -> None:
    a = "x" * 100_000
    for k in (0, 1, 63, 64, 65, 8191, 8192, 8193, 50_000, 99_999):
        assert shared_prefix(a, a[:k] + "y" + a[k + 1 :]) == k
    assert shared_prefix(a, a + "z") == len(a) and shared_prefix("", a) == 0
    assert shared_prefix("é" * 10, "é" * 9 + "\U0001f600") == 9


def test_walk_keeps_other_top_level_values_opaque_but_checked() -> None:
    text = '{"tools": [{"name": "x", "schema": {"a": [1, 2]}}], "messages": [{"role": "user"}], "n": null}'
    root = scan(text, walk=frozenset({"messages"}))
    tools = root.value["tools"]
    assert tools.kind == OPAQUE and text[tools.start : tools.end] == '[{"name": "x", "schema": {"a": [1, 2]}}]'
    assert root.value["n"].kind == OPAQUE and root.get("messages") is not None
    assert plain(root.value["messages"]) == [{"role": "user"}]
    for bad in ('{"tools": [1,], "messages": []}', '{"t": NaN, "messages": []}', '{"t": "\x01", "messages": []}',
                '{"t": -Infinity, "messages": []}', '{"t": ' + "[" * 3000 + "]" * 3000 + ', "messages": []}'):
        with pytest.raises(ValueError):
            scan(bad, walk=frozenset({"messages"}))


def test_decode_rejects_invalid_utf8() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        decode(b'{"a":"\xff"}')


def test_splice_rejects_edits_that_are_not_string_literals() -> None:
    text = '{"a": 12, "b": "x"}'
    with pytest.raises(ValueError):
        splice_text(text, [Edit(6, 8, "no")])
    b = scan(text).get("b")
    assert b is not None
    with pytest.raises(ValueError):  # overlapping edits
        splice_text(text, [Edit(b.start, b.end, "1"), Edit(b.start, b.end, "2")])


def test_text_blocks_of_string_and_parts() -> None:
    text = json.dumps({"s": "one", "l": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]})
    node = scan(text)
    (s,) = text_blocks(node.get("s"), message=3, tool_id="t", call=None, is_error=True, first=7)
    assert (s.index, s.message, s.part, s.text, s.is_error) == (7, 3, -1, "one", True)
    parts = text_blocks(node.get("l"), message=0, tool_id="t", call=None, is_error=False, first=0)
    assert [(p.index, p.part, p.text) for p in parts] == [(0, 0, "a"), (1, 2, "b")]
    assert text_of(node.get("l")) == "a\nb" and text_of(None) == ""
    assert text_blocks(None, message=0, tool_id="t", call=None, is_error=False, first=0) == []


def test_package_surface() -> None:
    import ctxgate.conversation as conversation

    assert conversation.__all__
    for name in conversation.__all__:
        assert hasattr(conversation, name), name
    for module in conversation.FORMATS.values():
        assert callable(module.parse) and callable(module.find_blocks) and callable(module.splice)
        assert callable(module.outline)
    with pytest.raises(ValueError, match="unknown wire format"):
        conversation.parse(b"{}", "nope")


def test_top_level_reads_fields_as_json_loads_does_without_parsing_the_rest() -> None:
    from ctxgate.conversation import parse

    body = {"model": "m", "stream": True, "temperature": 0.5, "stream_options": {"include_usage": False},
            "metadata": None, "stop": ["a", "b"], "messages": [{"role": "user", "content": "hi"}]}
    raw = json.dumps(body, indent=1).encode()
    conv = parse(raw, "openai_chat")
    keys = ("model", "stream", "temperature", "stream_options", "metadata", "stop", "messages", "absent")
    assert conv.top_level(keys) == {k: v for k, v in json.loads(raw).items() if k in keys}
    assert conv.top_level(()) == {}
    # the last of duplicate keys wins, as in json.loads
    dup = b'{"model": "a", "messages": [], "model": "b"}'
    assert parse(dup, "anthropic").top_level(("model",)) == {"model": "b"} == {"model": json.loads(dup)["model"]}


def test_open_messages_names_the_format_and_the_list() -> None:
    import pytest

    from ctxgate.conversation._base import open_messages

    conv, items, start, first_user = open_messages(b'{"messages": [{"role": "user", "content": "hi"}]}', None, "x")
    assert len(items) == 1 and start == 0 and first_user is None and conv.messages_end == len('{"messages": [')
    for bad in (b"[]", b'{"messages": {}}', b'{"model": "m"}'):
        with pytest.raises(ValueError, match="x: body has no messages array"):
            open_messages(bad, None, "x")
