"""Replaying shared trajectories turn by turn (used by test_replay.py and its Redis worker).

Request k holds the first k turns. Bodies are built so that request k+1 starts with the
bytes of request k's messages, as a real client sends them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ctxgate.conversation import parse
from tests.factories import assert_only_spans_changed

MODELS = {"anthropic": "claude-sonnet-4-5", "openai_chat": "gpt-4o", "openai_responses": "gpt-5"}
GROUPS = ("claude-code_spotter", "mini-swe-agent_gpt-5-mini", "swe-agent")


def conversations(corpus: Path, group: str) -> list[dict[str, Any]]:
    lines = (corpus / "trajectories" / f"{group}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def to_anthropic(conv: dict[str, Any], corpus: Path) -> dict[str, Any]:
    """score.py's conversion, plus a signed thinking block where the trajectory kept reasoning."""
    sys.path.insert(0, str(corpus))
    import score  # type: ignore[import-not-found]

    body: dict[str, Any] = score.to_anthropic(conv)
    reasoning = [m["reasoning_content"] for m in conv["messages"] if m["role"] == "assistant"
                 and m.get("reasoning_content")]
    for m, thought in zip((m for m in body["messages"] if m["role"] == "assistant"), reasoning, strict=False):
        m["content"].insert(0, {"type": "thinking", "thinking": thought, "signature": "c2lnbmF0dXJl"})
    return body


def to_responses(conv: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenAI Chat messages as Responses API input items."""
    items: list[dict[str, Any]] = []
    for m in conv["messages"]:
        role = m["role"]
        if role in ("system", "user"):
            items.append({"type": "message", "role": role, "content": [{"type": "input_text", "text": m["content"] or ""}]})
        elif role == "assistant":
            if m.get("content"):
                items.append({"type": "message", "role": "assistant",
                              "content": [{"type": "output_text", "text": m["content"]}]})
            for tc in m.get("tool_calls") or []:
                items.append({"type": "function_call", "call_id": tc["id"], "name": tc["function"]["name"],
                              "arguments": tc["function"]["arguments"]})
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": m["content"] or ""})
    return items


def requests_for(conv: dict[str, Any], shape: str, corpus: Path) -> list[bytes]:
    model = MODELS[shape]
    if shape == "openai_responses":
        items = to_responses(conv)
        cuts = [i for i, it in enumerate(items) if i > 0 and it["type"] != "function_call_output"
                and items[i - 1]["type"] == "function_call_output"]
        cuts.append(len(items))
        prefix = json.dumps({"model": model, "store": False}, ensure_ascii=False)[:-1] + ', "input": ['
        parts = [json.dumps(it, ensure_ascii=False) for it in items]
        return [(prefix + ", ".join(parts[:k]) + "]}").encode() for k in cuts]
    if shape == "anthropic":
        body = to_anthropic(conv, corpus)
        msgs = body["messages"]
        head = {"model": model, "max_tokens": 4096, "system": body.get("system", "")}
        cuts = [i + 1 for i, m in enumerate(msgs) if m["role"] == "user"]
    else:
        msgs = conv["messages"]
        head = {"model": model, "max_tokens": 4096}
        cuts = [i for i, m in enumerate(msgs) if m["role"] == "assistant" and i > 0]
        if msgs and msgs[-1]["role"] != "assistant":
            cuts.append(len(msgs))
    prefix = json.dumps(head, ensure_ascii=False)[:-1] + ', "messages": ['
    parts = [json.dumps(m, ensure_ascii=False) for m in msgs]
    return [(prefix + ", ".join(parts[:k]) + "]}").encode() for k in cuts]


def subset(requests: list[bytes], first: int = 8) -> list[bytes]:
    """The first turns one by one, then a jump to the last two (old undecided blocks in between)."""
    if len(requests) <= first + 2:
        return requests
    return requests[:first] + requests[-2:]


def _masked(body: bytes, fmt: str) -> Any:
    data = json.loads(body)
    if fmt == "openai_responses":
        for it in data["input"]:
            if it.get("type") == "function_call_output":
                it["output"] = "<tool output>"
        return data
    for m in data["messages"]:
        if fmt == "openai_chat" and m.get("role") == "tool":
            m["content"] = "<tool output>"
        elif fmt == "anthropic" and isinstance(m.get("content"), list):
            for b in m["content"]:
                if b.get("type") == "tool_result":
                    b["content"] = "<tool output>"
    return data


def check(raw: bytes, out: bytes, fmt: str) -> None:
    """``out`` changes nothing of ``raw`` but tool-output strings: bytes, pairing, thinking."""
    before, after = parse(raw, fmt), parse(out, fmt)
    assert [(m.role, m.tool_ids) for m in after.messages] == [(m.role, m.tool_ids) for m in before.messages]
    assert_only_spans_changed(raw, out, [(b.start, b.end) for b in before.blocks if b.text != _text(after, b.index)])
    assert _masked(out, fmt) == _masked(raw, fmt)


def _text(conv: Any, index: int) -> str:
    return str(conv.blocks[index].text)


def messages_prefix(out: bytes) -> bytes:
    """The bytes of a replay body up to the end of its last message."""
    assert out.endswith(b"]}")
    return out[:-2]
