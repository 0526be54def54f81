"""Anthropic Messages API bodies: ``tool_result`` blocks in user messages.

A ``tool_result``'s ``content`` is a string or a list of blocks; only its text values
are candidates. ``system``, ``tools``, text, ``thinking``/``redacted_thinking``,
``tool_use`` inputs, images and documents are never edited.
"""

from __future__ import annotations

import re
from typing import Any

from ctxgate.conversation._base import (
    ARRAY,
    Block,
    Conversation,
    Edit,
    Node,
    Outline,
    ToolCall,
    _str,
    open_messages,
    output_texts,
    splice,
    text_blocks,
    text_of,
    walk,
)

__all__ = ["LIST_KEY", "Edit", "find_blocks", "outline", "parse", "splice"]

_TTL_1H = re.compile(r'"ttl"\s*:\s*"1h"')
#: Anthropic's prompt cache lives 5 minutes after its last use, 1 hour with ``"ttl": "1h"``
CACHE_LIFETIME_S = 300.0
CACHE_LIFETIME_1H_S = 3600.0


#: the top-level key of the message (item) list, the only top-level value read; the others are
#: checked by the C scanner
LIST_KEY = "messages"


def parse(raw: bytes, prev: Conversation | None = None) -> Conversation:
    """The messages, tool calls and tool-output blocks of a Messages request. Raises ValueError.

    ``prev``: an earlier request of the same conversation, whose scan is reused where the
    bodies share a prefix (an optimization only: the result is the same without it).
    """
    conv, items, start, first_user = open_messages(raw, prev, "anthropic", LIST_KEY)
    walk(conv, items, start, first_user, _visit)
    conv.cache_lifetime_s = CACHE_LIFETIME_1H_S if _TTL_1H.search(conv.text) else CACHE_LIFETIME_S
    return conv


def _visit(conv: Conversation, mi: int, m: Node, first_user: str | None) -> tuple[str, list[str], str | None]:
    role = m.str_of("role") or "?"
    content = m.get("content")
    ids: list[str] = []
    if role == "assistant":
        conv.last_assistant = mi
        for b in content.items() if content is not None else []:
            if b.str_of("type") == "tool_use":
                inp = b.get("input")
                tid = b.str_of("id") or ""
                args = conv.text[inp.start : inp.end] if inp is not None else ""
                conv.calls[tid] = ToolCall(tid, b.str_of("name") or "", args, mi)
                ids.append(tid)
    elif role == "user" and content is not None:
        if first_user is None:
            first_user = text_of(content)
        texts = [b.str_of("text") for b in content.items() if b.str_of("type") == "text"]
        if content.kind != ARRAY:
            conv.query = str(content.value)
        elif any(texts):
            conv.query = "\n".join(t for t in texts if t)
        for b in content.items():
            if b.str_of("type") != "tool_result":
                continue
            tid = b.str_of("tool_use_id") or ""
            ids.append(tid)
            err = b.get("is_error")
            conv.blocks += text_blocks(
                b.get("content"),
                message=mi,
                tool_id=tid,
                call=conv.calls.get(tid),
                is_error=err is not None and err.value is True,
                first=len(conv.blocks),
            )
    return role, ids, first_user


def find_blocks(raw: bytes) -> list[Block]:
    return parse(raw).blocks


def outline(data: Any) -> Outline:
    """Roles and tool ids of every message, and the tool-output texts, of a ``json.loads``-ed body.

    An independent reading of the same structure ``parse`` finds: the pipeline validates its
    output by comparing the two.
    """
    shape: list[tuple[str, tuple[str, ...]]] = []
    texts: list[str] = []
    for m in data["messages"]:
        role = _str(m.get("role")) or "?"
        content = m.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        ids: list[str] = []
        if role == "assistant":
            ids = [_str(b.get("id")) or "" for b in blocks if b.get("type") == "tool_use"]
        elif role == "user":
            for b in blocks:
                if b.get("type") == "tool_result":
                    ids.append(_str(b.get("tool_use_id")) or "")
                    texts += output_texts(b.get("content"))
        shape.append((role, tuple(ids)))
    return shape, texts
