"""OpenAI Chat Completions: role "tool" messages are the candidates, nothing else changes."""

from __future__ import annotations

import json

import pytest

from ctxgate.conversation import openai_chat
from ctxgate.conversation._base import Edit
from tests.factories import assert_only_spans_changed, openai_chat_request

TURNS = [
    ("user", "fix the bug"),
    ("call", "call_1", "bash", {"command": "ls"}),
    ("call", "call_2", "bash", {"command": "cat a.py"}),
    ("result", "call_1", "a.py\nb.py"),
    ("result", "call_2", "print('x')"),
    ("user", "and now?"),
]


def test_finds_tool_messages_with_their_calls() -> None:
    conv = openai_chat.parse(openai_chat_request(TURNS))
    assert [(b.tool_id, b.tool_name, b.text, b.message) for b in conv.blocks] == [
        ("call_1", "bash", "a.py\nb.py", 3),
        ("call_2", "bash", "print('x')", 4),
    ]
    assert json.loads(conv.calls["call_2"].args) == {"command": "cat a.py"}
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert conv.messages[2].tool_ids == ("call_1", "call_2")
    assert conv.last_assistant == 2 and conv.query == "and now?"
    assert conv.first_user == "fix the bug"
    assert conv.cache_lifetime_s == 3600


def test_content_parts_and_24h_retention() -> None:
    body = {"prompt_cache_retention": "24h", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "out"}]},
    ]}
    conv = openai_chat.parse(json.dumps(body).encode())
    assert [(b.part, b.text, b.tool_name) for b in conv.blocks] == [(0, "out", "f")]
    assert conv.cache_lifetime_s == 86400 and conv.query == "q"


def test_splice_leaves_everything_else_byte_identical() -> None:
    raw = openai_chat_request(TURNS, temperature=0.25, stream=True)
    conv = openai_chat.parse(raw)
    edits = [Edit(b.start, b.end, "x" * b.index) for b in conv.blocks]
    out = openai_chat.splice(raw, edits)
    assert_only_spans_changed(raw, out, [(e.start, e.end) for e in edits])
    after = json.loads(out)
    assert [m.get("content") for m in after["messages"] if m["role"] == "tool"] == ["", "x"]
    assert {k: v for k, v in after.items() if k != "messages"} == {"model": "gpt-4o", "temperature": 0.25, "stream": True}


def test_rejects_bodies_without_messages() -> None:
    with pytest.raises(ValueError):
        openai_chat.parse(b'{"input": []}')
    assert openai_chat.find_blocks(openai_chat_request([("user", "hi")])) == []


def test_a_tool_message_without_its_call_keeps_its_name() -> None:
    body = {"messages": [{"role": "tool", "tool_call_id": "gone", "name": "Read", "content": "x"}]}
    (block,) = openai_chat.parse(json.dumps(body).encode()).blocks
    assert (block.tool_name, block.tool_args) == ("Read", "")


def test_parse_reusing_an_earlier_request_equals_a_fresh_parse() -> None:
    prev = None
    for k in range(1, len(TURNS) + 1):  # a growing session, each request parsed with the previous one
        raw = openai_chat_request(TURNS[:k])
        conv = openai_chat.parse(raw, prev)
        assert conv == openai_chat.parse(raw) and conv.blocks == openai_chat.parse(raw).blocks
        if prev is not None and len(prev.messages) > 1:  # the walk resumed: earlier messages are taken over
            assert conv.messages[0] is prev.messages[0]
        prev = conv
    for other in (openai_chat_request([("user", "something else"), *TURNS[1:]]), openai_chat_request(TURNS[:2]), openai_chat_request(TURNS[::-1][:1])):
        assert openai_chat.parse(other, prev) == openai_chat.parse(other)
    # a short request, then one whose message list starts elsewhere (the list's offsets all move)
    short = openai_chat.parse(openai_chat_request(TURNS[:1]))
    moved = openai_chat_request([], model="a-longer-model-name")
    assert openai_chat.parse(moved, short) == openai_chat.parse(moved)
    # the same body again: nothing is walked anew, and the next one still resumes
    again = openai_chat.parse(openai_chat_request(TURNS), prev)
    assert again == prev and again.checkpoints and openai_chat.parse(openai_chat_request(TURNS), again) == prev
