"""OpenAI Chat Completions bodies: ``role: "tool"`` messages answering ``tool_calls``.

A tool message's ``content`` is a string or a list of text parts; only those text
values are candidates. System/developer/user/assistant messages, ``tool_calls``
(ids, names, arguments) and every other field are never edited.
"""

from __future__ import annotations

import re
from typing import Any

from ctxgate.conversation._base import (
    Block,
    Conversation,
    Edit,
    Node,
    Outline,
    ToolCall,
    _str,
    note_user,
    open_messages,
    output_texts,
    splice,
    text_blocks,
    walk,
)

__all__ = ["LIST_KEY", "Edit", "find_blocks", "outline", "parse", "splice"]

#: OpenAI keeps cached prefixes 5 to 10 minutes, up to an hour off-peak: assume the hour;
#: 24 hours with ``"prompt_cache_retention": "24h"``
CACHE_LIFETIME_S = 3600.0
CACHE_LIFETIME_24H_S = 86400.0
_RETENTION_24H = re.compile(r'"prompt_cache_retention"\s*:\s*"24h"')


#: the top-level key of the message (item) list, the only top-level value read; the others are
#: checked by the C scanner
LIST_KEY = "messages"


def parse(raw: bytes, prev: Conversation | None = None) -> Conversation:
    """The messages, tool calls and tool-output blocks of a Chat request. Raises ValueError.

    ``prev``: an earlier request of the same conversation, whose scan is reused where the
    bodies share a prefix (an optimization only: the result is the same without it).
    """
    conv, items, start, first_user = open_messages(raw, prev, "openai_chat", LIST_KEY)
    walk(conv, items, start, first_user, _visit)
    conv.cache_lifetime_s = CACHE_LIFETIME_24H_S if _RETENTION_24H.search(conv.text) else CACHE_LIFETIME_S
    return conv


def _visit(conv: Conversation, mi: int, m: Node, first_user: str | None) -> tuple[str, list[str], str | None]:
    role = m.str_of("role") or "?"
    content = m.get("content")
    ids: list[str] = []
    if role == "assistant":
        conv.last_assistant = mi
        calls = m.get("tool_calls")
        for tc in calls.items() if calls is not None else []:
            fn = tc.get("function")
            tid = tc.str_of("id") or ""
            name = fn.str_of("name") if fn is not None else None
            args = fn.str_of("arguments") if fn is not None else None
            conv.calls[tid] = ToolCall(tid, name or "", args or "", mi)
            ids.append(tid)
    elif role == "tool":
        tid = m.str_of("tool_call_id") or ""
        ids.append(tid)
        call = conv.calls.get(tid)
        name = m.str_of("name")
        if call is None and name:  # the call is not in this request: the message may still name the tool
            call = ToolCall(tid, name, "", mi)
        conv.blocks += text_blocks(
            content, message=mi, tool_id=tid, call=call, is_error=False, first=len(conv.blocks)
        )
    elif role == "user" and content is not None:
        first_user = note_user(conv, content, first_user)
    return role, ids, first_user


def find_blocks(raw: bytes) -> list[Block]:
    return parse(raw).blocks


def outline(data: Any) -> Outline:
    """Roles and tool ids of every message, and the tool-output texts, of a ``json.loads``-ed body."""
    shape: list[tuple[str, tuple[str, ...]]] = []
    texts: list[str] = []
    for m in data["messages"]:
        role = _str(m.get("role")) or "?"
        ids: tuple[str, ...] = ()
        if role == "assistant":
            calls = m.get("tool_calls")
            ids = tuple(_str(c.get("id")) or "" for c in calls if isinstance(c, dict)) if isinstance(calls, list) else ()
        elif role == "tool":
            ids = (_str(m.get("tool_call_id")) or "",)
            texts += output_texts(m.get("content"))
        shape.append((role, ids))
    return shape, texts
