"""OpenAI Responses: function_call_output items are the candidates, nothing else changes."""

from __future__ import annotations

import json

from ctxgate.conversation import openai_responses
from ctxgate.conversation._base import Edit
from tests.factories import assert_only_spans_changed, openai_responses_request

TURNS = [
    ("user", "list files"),
    ("call", "fc_1", "shell", {"command": ["bash", "-lc", "ls"]}),
    ("result", "fc_1", "a.py\nb.py"),
    ("user", "thanks"),
]


def test_finds_function_call_outputs() -> None:
    conv = openai_responses.parse(openai_responses_request(TURNS))
    assert [(b.tool_id, b.tool_name, b.text) for b in conv.blocks] == [("fc_1", "shell", "a.py\nb.py")]
    assert [m.role for m in conv.messages] == ["user", "function_call", "function_call_output", "user"]
    assert conv.last_assistant == 1 and conv.query == "thanks"
    assert conv.first_user == "list files"


def test_reasoning_items_count_as_model_output_and_parts_are_blocks() -> None:
    body = {"input": [
        {"role": "user", "content": "go"},
        {"type": "reasoning", "id": "rs_1", "encrypted_content": "xyz", "summary": []},
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "done"}]},
    ]}
    conv = openai_responses.parse(json.dumps(body).encode())
    assert conv.last_assistant == 2
    assert [(b.tool_name, b.tool_id, b.part, b.text) for b in conv.blocks] == [("apply", "c1", 0, "done")]
    assert conv.calls["c1"].args == "*** Begin Patch"
    assert conv.messages[0].role == "user" and conv.query == "go"


def test_string_input_has_no_blocks() -> None:
    conv = openai_responses.parse(b'{"model": "gpt-5", "input": "hello"}')
    assert conv.blocks == [] and conv.query == "hello" and conv.first_user == "hello"
    assert openai_responses.find_blocks(b'{"model": "gpt-5"}') == []


def test_splice_leaves_everything_else_byte_identical() -> None:
    raw = openai_responses_request(TURNS)
    conv = openai_responses.parse(raw)
    edits = [Edit(b.start, b.end, "short") for b in conv.blocks]
    out = openai_responses.splice(raw, edits)
    assert_only_spans_changed(raw, out, [(e.start, e.end) for e in edits])
    assert json.loads(out)["input"][2]["output"] == "short"


def test_parse_reusing_an_earlier_request_equals_a_fresh_parse() -> None:
    prev = None
    for k in range(1, len(TURNS) + 1):  # a growing session, each request parsed with the previous one
        raw = openai_responses_request(TURNS[:k])
        conv = openai_responses.parse(raw, prev)
        assert conv == openai_responses.parse(raw) and conv.blocks == openai_responses.parse(raw).blocks
        if prev is not None and len(prev.messages) > 1:  # the walk resumed: earlier messages are taken over
            assert conv.messages[0] is prev.messages[0]
        prev = conv
    for other in (openai_responses_request([("user", "something else"), *TURNS[1:]]), openai_responses_request(TURNS[:2]), openai_responses_request(TURNS[::-1][:1])):
        assert openai_responses.parse(other, prev) == openai_responses.parse(other)
    # a short request, then one whose message list starts elsewhere (the list's offsets all move)
    short = openai_responses.parse(openai_responses_request(TURNS[:1]))
    moved = openai_responses_request([], model="a-longer-model-name")
    assert openai_responses.parse(moved, short) == openai_responses.parse(moved)
    # the same body again: nothing is walked anew, and the next one still resumes
    again = openai_responses.parse(openai_responses_request(TURNS), prev)
    assert again == prev and again.checkpoints and openai_responses.parse(openai_responses_request(TURNS), again) == prev
