"""OpenAI Responses API bodies: ``function_call_output`` items in ``input``.

An output is a string or a list of ``input_text`` parts; only those text values are
candidates. Messages, ``instructions``, ``function_call`` items (ids, names,
arguments), reasoning items and every other item type are never edited.
"""

from __future__ import annotations

import re
from typing import Any

from ctxgate.conversation._base import (
    ARRAY,
    OBJECT,
    Block,
    Conversation,
    Edit,
    Node,
    Outline,
    ToolCall,
    _str,
    decode,
    note_user,
    output_texts,
    rescan,
    resume,
    splice,
    text_blocks,
    text_of,
    walk,
)

__all__ = ["LIST_KEY", "Edit", "find_blocks", "outline", "parse", "splice"]

#: OpenAI keeps cached prefixes 5 to 10 minutes, up to an hour off-peak: assume the hour;
#: 24 hours with ``"prompt_cache_retention": "24h"``
CACHE_LIFETIME_S = 3600.0
CACHE_LIFETIME_24H_S = 86400.0
_RETENTION_24H = re.compile(r'"prompt_cache_retention"\s*:\s*"24h"')

_CALLS = {"function_call": "arguments", "custom_tool_call": "input"}
_OUTPUTS = ("function_call_output", "custom_tool_call_output")
#: items the model produced: a tool output after the last of them is new
_MODEL_ITEMS = {
    "function_call", "custom_tool_call", "reasoning", "local_shell_call", "web_search_call",
    "file_search_call", "computer_call", "code_interpreter_call", "image_generation_call", "mcp_call",
}


#: the top-level key of the message (item) list, the only top-level value read; the others are
#: checked by the C scanner
LIST_KEY = "input"
_WALK = frozenset({LIST_KEY})


def parse(raw: bytes, prev: Conversation | None = None) -> Conversation:
    """The items, tool calls and tool-output blocks of a Responses request. Raises ValueError.

    ``prev``: an earlier request of the same conversation, whose scan is reused where the
    bodies share a prefix (an optimization only: the result is the same without it).
    """
    text = decode(raw)
    root, shared = rescan(text, _WALK, prev)
    if root.kind != OBJECT:
        raise ValueError("openai_responses: body is not an object")
    items = root.get("input")
    conv = Conversation(text=text, messages=[], blocks=[], root=root, shared=shared, cache_lifetime_s=CACHE_LIFETIME_S)
    if items is None or items.kind != ARRAY:
        if items is not None:
            conv.first_user = text_of(items)
            conv.query = text_of(items)
            conv.messages_end = items.end
        return conv
    conv.messages_end = items.start + 1
    nodes = items.items()
    start, first_user = resume(conv, nodes, prev, LIST_KEY)
    walk(conv, nodes, start, first_user, _visit)
    conv.cache_lifetime_s = CACHE_LIFETIME_24H_S if _RETENTION_24H.search(text) else CACHE_LIFETIME_S
    return conv


def _visit(conv: Conversation, mi: int, it: Node, first_user: str | None) -> tuple[str, list[str], str | None]:
    kind = it.str_of("type") or ("message" if it.get("role") is not None else "?")
    role = it.str_of("role") or kind if kind == "message" else kind
    ids: list[str] = []
    if kind in _CALLS:
        tid = it.str_of("call_id") or ""
        args = it.get(_CALLS[kind])
        args_text = args.value if args is not None and args.kind == "s" else ""
        conv.calls[tid] = ToolCall(tid, it.str_of("name") or "", str(args_text), mi)
        ids.append(tid)
    elif kind in _OUTPUTS:
        tid = it.str_of("call_id") or ""
        ids.append(tid)
        conv.blocks += text_blocks(
            it.get("output"), message=mi, tool_id=tid, call=conv.calls.get(tid), is_error=False,
            first=len(conv.blocks),
        )
    if kind in _MODEL_ITEMS or (kind == "message" and role == "assistant"):
        conv.last_assistant = mi
    if kind == "message" and role == "user":
        content = it.get("content")
        if content is not None:
            first_user = note_user(conv, content, first_user)
    return role, ids, first_user


def find_blocks(raw: bytes) -> list[Block]:
    return parse(raw).blocks


def outline(data: Any) -> Outline:
    """Roles (or item types) and call ids of every item, and the tool-output texts, of a ``json.loads``-ed body."""
    shape: list[tuple[str, tuple[str, ...]]] = []
    texts: list[str] = []
    items = data.get("input")
    for it in items if isinstance(items, list) else []:
        kind = _str(it.get("type")) or ("message" if it.get("role") is not None else "?")
        role = (_str(it.get("role")) or kind) if kind == "message" else kind
        ids: tuple[str, ...] = ()
        if kind in _CALLS or kind in _OUTPUTS:
            ids = (_str(it.get("call_id")) or "",)
        if kind in _OUTPUTS:
            texts += output_texts(it.get("output"))
        shape.append((role, ids))
    return shape, texts
