"""Anthropic Messages: which strings are tool outputs, and that nothing else changes."""

from __future__ import annotations

import json

import pytest

from ctxgate.conversation import anthropic
from ctxgate.conversation._base import Edit
from tests.factories import anthropic_request, assert_only_spans_changed

TURNS = [
    ("user", "fix the bug"),
    ("call", "toolu_1", "Bash", {"command": "ls"}),
    ("result", "toolu_1", "a.py\nb.py"),
    ("call", "toolu_2", "Read", {"file_path": "a.py"}),
    ("error", "toolu_2", "no such file"),
    ("user", "try again"),
]


def test_finds_tool_results_with_their_calls() -> None:
    conv = anthropic.parse(anthropic_request(TURNS))
    assert [(b.tool_id, b.tool_name, b.text, b.is_error) for b in conv.blocks] == [
        ("toolu_1", "Bash", "a.py\nb.py", False),
        ("toolu_2", "Read", "no such file", True),
    ]
    assert json.loads(conv.calls["toolu_1"].args) == {"command": "ls"}
    assert [m.role for m in conv.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [m.tool_ids for m in conv.messages][1:3] == [("toolu_1",), ("toolu_1",)]
    assert conv.last_assistant == 3
    assert conv.query == "try again"
    assert conv.first_user == "fix the bug"
    assert conv.cache_lifetime_s == 300
    assert conv.text[conv.messages_end :] == "]}"


def test_list_content_text_parts_are_blocks_and_images_are_not() -> None:
    body = {
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "X", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "text", "text": "first"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "text", "text": "second"},
            ]}]},
        ]
    }
    conv = anthropic.parse(json.dumps(body).encode())
    assert [(b.part, b.text) for b in conv.blocks] == [(0, "first"), (2, "second")]


def test_one_hour_cache_ttl_is_detected() -> None:
    raw = anthropic_request(TURNS, system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    assert anthropic.parse(raw).cache_lifetime_s == 3600


@pytest.mark.parametrize("indent", [None, 2])
def test_splice_leaves_thinking_ids_inputs_and_layout_byte_identical(indent: int | None) -> None:
    raw = anthropic_request(TURNS, thinking=True, indent=indent)
    conv = anthropic.parse(raw)
    edits = [Edit(b.start, b.end, f"short {b.index}") for b in conv.blocks]
    out = anthropic.splice(raw, edits)
    assert_only_spans_changed(raw, out, [(e.start, e.end) for e in edits])
    before, after = json.loads(raw), json.loads(out)
    for m_before, m_after in zip(before["messages"], after["messages"], strict=True):
        for b1, b2 in zip(m_before["content"], m_after["content"], strict=True):
            if b1["type"] == "tool_result":
                assert b2 == {**b1, "content": b2["content"]} and b2["content"].startswith("short")
            else:
                assert b1 == b2  # thinking, tool_use, text untouched
    new = anthropic.parse(out)
    assert [(m.role, m.tool_ids) for m in new.messages] == [(m.role, m.tool_ids) for m in conv.messages]


def test_string_content_user_message_and_unknown_blocks_pass() -> None:
    body = {"messages": [{"role": "user", "content": "hello"},
                         {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web"}]},
                         {"role": "user", "content": [{"type": "web_search_tool_result", "tool_use_id": "s", "content": []}]}]}
    conv = anthropic.parse(json.dumps(body).encode())
    assert conv.blocks == [] and conv.query == "hello" and conv.first_user == "hello"
    assert anthropic.find_blocks(json.dumps(body).encode()) == []


@pytest.mark.parametrize("raw", [b"[]", b'{"model": "x"}', b'{"messages": {}}', b"not json"])
def test_rejects_bodies_without_messages(raw: bytes) -> None:
    with pytest.raises(ValueError):
        anthropic.parse(raw)


def test_fingerprint_text_ignores_a_moved_cache_control() -> None:
    turns = [("user", "fix the bug")]
    body = json.loads(anthropic_request(turns))
    body["messages"][0]["content"][0]["cache_control"] = {"type": "ephemeral"}
    assert anthropic.parse(json.dumps(body).encode()).first_user == anthropic.parse(anthropic_request(turns)).first_user


def test_parse_reusing_an_earlier_request_equals_a_fresh_parse() -> None:
    prev = None
    for k in range(1, len(TURNS) + 1):  # a growing session, each request parsed with the previous one
        raw = anthropic_request(TURNS[:k])
        conv = anthropic.parse(raw, prev)
        assert conv == anthropic.parse(raw) and conv.blocks == anthropic.parse(raw).blocks
        if prev is not None and len(prev.messages) > 1:  # the walk resumed: earlier messages are taken over
            assert conv.messages[0] is prev.messages[0]
        prev = conv
    for other in (anthropic_request([("user", "something else"), *TURNS[1:]]), anthropic_request(TURNS[:2]), anthropic_request(TURNS[::-1][:1])):
        assert anthropic.parse(other, prev) == anthropic.parse(other)
    # a short request, then one whose message list starts elsewhere (the list's offsets all move)
    short = anthropic.parse(anthropic_request(TURNS[:1]))
    moved = anthropic_request([], model="a-longer-model-name")
    assert anthropic.parse(moved, short) == anthropic.parse(moved)
    # the same body again: nothing is walked anew, and the next one still resumes
    again = anthropic.parse(anthropic_request(TURNS), prev)
    assert again == prev and again.checkpoints and anthropic.parse(anthropic_request(TURNS), again) == prev
