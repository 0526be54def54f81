"""Request bodies for tests, as raw bytes (the way clients send them).

``anthropic_request(turns)`` and ``openai_chat_request(turns)`` take a list of turns:
``("user", text)``, ``("call", id, tool_name, args_dict)`` for an assistant tool call
and ``("result", id, output_text)`` (``("error", id, text)`` for an error result).
"""

from __future__ import annotations

import json
from typing import Any

Turn = tuple[Any, ...]


def big_json(n: int = 60, seed: str = "item") -> str:
    """A pretty-printed JSON array that the engine can shrink."""
    return json.dumps([{"id": i, "name": f"{seed} {i}", "status": "ok", "tags": ["a", "b"]} for i in range(n)], indent=2)


def big_log(n: int = 200, word: str = "handled") -> str:
    return "\n".join(f"2024-01-01 12:00:{i % 60:02d} INFO request {word} path=/api/x status=200" for i in range(n))


def anthropic_messages(turns: list[Turn], *, thinking: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def push(role: str, block: dict[str, Any]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"].append(block)
        else:
            out.append({"role": role, "content": [block]})

    for t in turns:
        if t[0] == "user":
            push("user", {"type": "text", "text": t[1]})
        elif t[0] == "call":
            if thinking and (not out or out[-1]["role"] != "assistant"):
                push("assistant", {"type": "thinking", "thinking": "let me think", "signature": "c2ln"})
            push("assistant", {"type": "tool_use", "id": t[1], "name": t[2], "input": t[3]})
        else:
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": t[1], "content": t[2]}
            if t[0] == "error":
                block["is_error"] = True
            push("user", block)
    return out


def anthropic_request(turns: list[Turn], *, model: str = "claude-sonnet-4-5", thinking: bool = False,
                      indent: int | None = None, **extra: Any) -> bytes:
    body = {"model": model, "max_tokens": 1024, "system": "You are a coding agent.", **extra,
            "messages": anthropic_messages(turns, thinking=thinking)}
    return json.dumps(body, indent=indent, ensure_ascii=False).encode()


def openai_chat_messages(turns: list[Turn]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": "You are a coding agent."}]
    for t in turns:
        if t[0] == "user":
            out.append({"role": "user", "content": t[1]})
        elif t[0] == "call":
            call = {"id": t[1], "type": "function", "function": {"name": t[2], "arguments": json.dumps(t[3])}}
            if out[-1]["role"] == "assistant":
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            out.append({"role": "tool", "tool_call_id": t[1], "content": t[2]})
    return out


def openai_chat_request(turns: list[Turn], *, model: str = "gpt-4o", **extra: Any) -> bytes:
    return json.dumps({"model": model, **extra, "messages": openai_chat_messages(turns)}).encode()


def openai_responses_request(turns: list[Turn], *, model: str = "gpt-5") -> bytes:
    items: list[dict[str, Any]] = []
    for t in turns:
        if t[0] == "user":
            items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": t[1]}]})
        elif t[0] == "call":
            items.append({"type": "function_call", "call_id": t[1], "name": t[2], "arguments": json.dumps(t[3])})
        else:
            items.append({"type": "function_call_output", "call_id": t[1], "output": t[2]})
    return json.dumps({"model": model, "instructions": "Be brief.", "input": items}).encode()


def assert_only_spans_changed(raw: bytes, out: bytes, spans: list[tuple[int, int]]) -> None:
    """``out`` equals ``raw`` outside the given character ranges (of the decoded ``raw``)."""
    a, b = raw.decode(), out.decode()
    pos_a = pos_b = 0
    for start, end in sorted(spans):
        assert b[pos_b : pos_b + start - pos_a] == a[pos_a:start]
        pos_b += start - pos_a
        # the replacement is one JSON string literal: skip it in the output
        _, lit_end = json.JSONDecoder().raw_decode(b, pos_b)
        pos_a, pos_b = end, lit_end
    assert b[pos_b:] == a[pos_a:]
