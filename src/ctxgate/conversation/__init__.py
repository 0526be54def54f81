"""Wire formats (Anthropic Messages, OpenAI Chat, OpenAI Responses): find the
compressible blocks, apply the protection policy, splice results into the raw bytes.

Public surface: ``parse(raw, fmt, prev=None) -> Conversation``, ``splice(raw, edits) -> bytes``,
``Block``, ``Conversation``, ``Edit``, ``FORMATS``. Pure: no I/O, no clock.
"""

from __future__ import annotations

from types import ModuleType

from ctxgate.conversation import anthropic, openai_chat, openai_responses
from ctxgate.conversation._base import (
    Block,
    Conversation,
    Edit,
    Message,
    ToolCall,
    shared_prefix,
    splice,
    splice_shifts,
)

#: wire format name -> module exposing ``parse(raw)``, ``find_blocks(raw)`` and ``splice(raw, edits)``
FORMATS: dict[str, ModuleType] = {
    "anthropic": anthropic,
    "openai_chat": openai_chat,
    "openai_responses": openai_responses,
}


def parse(raw: bytes, fmt: str, prev: Conversation | None = None) -> Conversation:
    """The conversation of a request body in wire format ``fmt``. Raises ValueError.

    ``prev``, an earlier result of ``parse`` in the same format (typically the session's previous
    request), makes the cost grow with what the body adds to it: the nodes of the prefix the two
    bodies share are reused, only the rest is scanned. The result is the same without it.
    """
    module = FORMATS.get(fmt)
    if module is None:
        raise ValueError(f"unknown wire format {fmt!r}")
    conv: Conversation = module.parse(raw, prev)
    return conv


__all__ = [
    "FORMATS",
    "Block",
    "Conversation",
    "Edit",
    "Message",
    "ToolCall",
    "parse",
    "shared_prefix",
    "splice",
    "splice_shifts",
]
