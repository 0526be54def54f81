"""The shared block model, a JSON scanner that keeps offsets, and the splice helper.

A request body is never re-serialized. ``scan(text)`` parses the decoded body into
``Node`` objects that remember where each value starts and ends; the wire-format
modules walk those nodes to find tool outputs (``Block``) and the messages around
them (``Message``). ``splice(raw, edits)`` then replaces only the JSON string
literals named by the edits; every other byte is copied from the input.

Offsets are character offsets in the decoded body. UTF-8 decoding and re-encoding of
valid input is exact, so the bytes outside the edited spans are the input's bytes.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_MAX_DEPTH = 256

OBJECT, ARRAY, STRING, SCALAR, OPAQUE = "o", "a", "s", "n", "x"


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


#: the C scanner of ``json``, as strict as ``_Scanner`` (no NaN or Infinity, no control characters)
_C_SCAN = json.scanner.make_scanner(json.JSONDecoder(parse_constant=_no_constant))  # type: ignore[arg-type]


class Node:
    """One JSON value and the half-open character range ``[start, end)`` it occupies."""

    __slots__ = ("end", "kind", "start", "value")

    def __init__(self, kind: str, start: int, end: int, value: Any) -> None:
        self.kind = kind
        self.start = start
        self.end = end
        #: dict[str, Node] (last key wins, as in json.loads), list[Node], str, a scalar, or None (OPAQUE)
        self.value = value

    def get(self, key: str) -> Node | None:
        return self.value.get(key) if self.kind == OBJECT else None

    def str_of(self, key: str) -> str | None:
        n = self.get(key)
        return n.value if n is not None and n.kind == STRING else None

    def items(self) -> list[Node]:
        return self.value if self.kind == ARRAY else []


class _Scanner:
    """Recursive descent over ``text``; ``walk`` limits which top-level values become node trees.

    ``old`` is the node an earlier scan found at the same offset of a text whose first
    ``shared`` characters are this one's: a node that ends before ``shared`` is taken as it
    is (the same characters parse to the same value), and one that straddles it lends its
    children. Only the part of the text after ``shared`` is scanned anew.
    """

    def __init__(self, text: str, walk: frozenset[str] | None, shared: int) -> None:
        self.text = text
        self.walk = walk
        self.shared = shared

    def value(self, i: int, depth: int, old: Node | None = None) -> tuple[Node, int]:
        text = self.text
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if old is not None and old.start == i:
            if old.end < self.shared:
                return old, old.end
        else:
            old = None
        if i >= len(text):
            raise ValueError("unexpected end of JSON")
        c = text[i]
        if c == '"':
            s, end = scanstring(text, i + 1, True)
            return Node(STRING, i, end, s), end
        if c == "{":
            return self.obj(i, depth + 1, old)
        if c == "[":
            return self.arr(i, depth + 1, old)
        m = _NUMBER.match(text, i)
        if m:
            lit = m.group()
            num: Any = float(lit) if any(ch in lit for ch in ".eE") else int(lit)
            return Node(SCALAR, i, m.end(), num), m.end()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, i):
                return Node(SCALAR, i, i + len(word), val), i + len(word)
        raise ValueError(f"invalid JSON at offset {i}")

    def opaque(self, i: int, old: Node | None) -> tuple[Node, int]:
        """A value checked and skipped by the C scanner: its range only."""
        i = _WS.match(self.text, i).end()  # type: ignore[union-attr]
        if old is not None and old.start == i and old.end < self.shared:
            return old, old.end
        try:
            _, end = _C_SCAN(self.text, i)
        except StopIteration as exc:
            raise ValueError(f"invalid JSON at offset {i}") from exc
        return Node(OPAQUE, i, end, None), end

    def obj(self, start: int, depth: int, old: Node | None) -> tuple[Node, int]:
        if depth > _MAX_DEPTH:
            raise ValueError("JSON nested too deeply")
        text, ws = self.text, _WS
        walk = self.walk if depth == 1 else None
        before: dict[str, Node] = old.value if old is not None and old.kind == OBJECT else {}
        out: dict[str, Node] = {}
        i = ws.match(text, start + 1).end()  # type: ignore[union-attr]
        if text.startswith("}", i):
            return Node(OBJECT, start, i + 1, out), i + 1
        while True:
            if not text.startswith('"', i):
                raise ValueError(f"expected a key at offset {i}")
            key, i = scanstring(text, i + 1, True)
            i = ws.match(text, i).end()  # type: ignore[union-attr]
            if not text.startswith(":", i):
                raise ValueError(f"expected ':' at offset {i}")
            if walk is None or key in walk:
                node, i = self.value(i + 1, depth, before.get(key))
            else:
                node, i = self.opaque(i + 1, before.get(key))
            out[key] = node
            i = ws.match(text, i).end()  # type: ignore[union-attr]
            if text.startswith(",", i):
                i = ws.match(text, i + 1).end()  # type: ignore[union-attr]
                continue
            if text.startswith("}", i):
                return Node(OBJECT, start, i + 1, out), i + 1
            raise ValueError(f"expected ',' or '}}' at offset {i}")

    def arr(self, start: int, depth: int, old: Node | None) -> tuple[Node, int]:
        if depth > _MAX_DEPTH:
            raise ValueError("JSON nested too deeply")
        text, ws = self.text, _WS
        before: list[Node] = old.value if old is not None and old.kind == ARRAY else []
        out: list[Node] = []
        i = ws.match(text, start + 1).end()  # type: ignore[union-attr]
        if text.startswith("]", i):
            return Node(ARRAY, start, i + 1, out), i + 1
        while True:
            k = len(out)
            node, i = self.value(i, depth, before[k] if k < len(before) else None)
            out.append(node)
            i = ws.match(text, i).end()  # type: ignore[union-attr]
            if text.startswith(",", i):
                i += 1
                continue
            if text.startswith("]", i):
                return Node(ARRAY, start, i + 1, out), i + 1
            raise ValueError(f"expected ',' or ']' at offset {i}")


def decode(raw: bytes) -> str:
    """The body as text; raises ValueError when it is not valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not valid UTF-8: {exc.reason}") from exc


def shared_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (compared in C, chunk by chunk)."""
    n = min(len(a), len(b))
    lo, step = 0, 8192
    while lo < n:  # gallop to the first chunk that differs
        hi = min(n, lo + step)
        if a[lo:hi] != b[lo:hi]:
            break
        lo, step = hi, step * 2
    else:
        return n
    while hi - lo > 64:  # a[:lo] == b[:lo] and the chunk [lo, hi) differs somewhere
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    while lo < hi and a[lo] == b[lo]:
        lo += 1
    return lo


def scan(
    text: str, *, walk: frozenset[str] | None = None, prev: Node | None = None, shared: int = 0
) -> Node:
    """Parse a JSON document, keeping the offsets of every value. Raises ValueError.

    ``walk``: when the document is an object, only its values under these keys become node
    trees; the others are checked by the C scanner and kept as ``OPAQUE`` nodes (range only).
    ``prev`` and ``shared``: the root of an earlier scan (with the same ``walk``) of a text whose
    first ``shared`` characters equal this one's; its nodes that end before ``shared`` are reused.
    """
    try:
        node, end = _Scanner(text, walk, shared if prev is not None else 0).value(0, 0, prev)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    if _WS.match(text, end).end() != len(text):  # type: ignore[union-attr]
        raise ValueError(f"extra data after JSON at offset {end}")
    return node


def rescan(text: str, walk: frozenset[str], prev: Conversation | None) -> tuple[Node, int]:
    """``scan(text, walk=walk)`` reusing what ``text`` shares with an earlier request's text, and
    the length of that shared prefix (0 without ``prev``)."""
    if prev is None or prev.root is None:
        return scan(text, walk=walk), 0
    shared = shared_prefix(prev.text, text)
    return scan(text, walk=walk, prev=prev.root, shared=shared), shared


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call made by the model: its id, tool name and arguments (JSON text)."""

    id: str
    name: str
    args: str
    message: int


@dataclass(frozen=True, slots=True)
class Message:
    """One message (or Responses item): its role and the range of its JSON object."""

    role: str
    start: int
    end: int
    #: tool ids this message carries: calls of an assistant message, results of the others
    tool_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Block:
    """One tool output (or one text part of it) that the policy may compress."""

    index: int  # position among the request's blocks
    message: int  # index of the message holding it
    tool_id: str
    part: int  # index of the text part in a list content; -1 for a plain string
    text: str  # the decoded string value
    start: int  # range of the JSON string literal, quotes included
    end: int
    tool_name: str | None = None
    tool_args: str | None = None
    is_error: bool = False


@dataclass(slots=True)
class Conversation:
    """What a wire-format module found in one request body."""

    text: str
    messages: list[Message]
    blocks: list[Block]
    calls: dict[str, ToolCall] = field(default_factory=dict)
    #: index of the last assistant message (or model output item), -1 when none
    last_assistant: int = -1
    #: text of the first user message ("" when none), for session fingerprints; only the text, so
    #: that a ``cache_control`` a client adds or moves does not change it
    first_user: str = ""
    #: text of the latest user message, the query for query-aware compression
    query: str | None = None
    #: how long the provider keeps this request's prompt cache when idle (seconds)
    cache_lifetime_s: float = 300.0
    #: offset just past the last message (where a longer request's next message would start)
    messages_end: int = 0
    #: the scanned body, for ``parse(raw, prev=this)`` to reuse what a longer request shares with it
    root: Node | None = field(default=None, repr=False, compare=False)
    #: how many characters at the start of ``text`` equal those of the ``prev`` it was parsed with
    shared: int = field(default=0, compare=False)
    #: the walk's state before each of the last messages, for ``resume`` (a later parse's start)
    checkpoints: list[Checkpoint] = field(default_factory=list, repr=False, compare=False)

    def top_level(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """The values of these top-level fields of the body (those it has), as ``json.loads`` reads them.

        Only the fields' own ranges are parsed, so a caller that needs ``model`` or ``stream``
        does not parse the whole body again. Raises ValueError when a field's range is not JSON.
        """
        root = self.root
        if root is None or root.kind != OBJECT:
            return {}
        out: dict[str, Any] = {}
        for key in keys:
            node = root.value.get(key)
            if node is None:
                continue
            if node.kind in (STRING, SCALAR):
                out[key] = node.value
            else:
                out[key] = json.loads(self.text[node.start : node.end])
        return out


#: checkpoints a parse keeps: before each of its last messages, and after the last one
CHECKPOINTS = 4


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The state of a wire module's walk over the message list just before message ``index``."""

    index: int
    blocks: int
    calls: dict[str, ToolCall]
    last_assistant: int
    first_user: str | None
    query: str | None
    messages_end: int


def checkpoint(conv: Conversation, index: int, first_user: str | None) -> None:
    """Record the walk's state before message ``index`` (see ``resume``)."""
    conv.checkpoints.append(
        Checkpoint(index, len(conv.blocks), dict(conv.calls), conv.last_assistant, first_user, conv.query,
                   conv.messages_end)
    )


def open_messages(
    raw: bytes, prev: Conversation | None, fmt: str, key: str = "messages", **fields: Any
) -> tuple[Conversation, list[Node], int, str | None]:
    """Scan a body whose ``key`` is a list of messages, and start its walk (Anthropic, OpenAI Chat).

    Returns the conversation (messages and blocks taken over from ``prev`` where it can be), the
    message nodes, the index of the first message to walk and the first user text so far.
    Raises ValueError naming ``fmt`` when the body is not an object with that list.
    """
    text = decode(raw)
    root, shared = rescan(text, frozenset({key}), prev)
    msgs = root.get(key)
    if root.kind != OBJECT or msgs is None or msgs.kind != ARRAY:
        raise ValueError(f"{fmt}: body has no {key} array")
    conv = Conversation(
        text=text, messages=[], blocks=[], root=root, shared=shared, messages_end=msgs.start + 1, **fields
    )
    items = msgs.items()
    start, first_user = resume(conv, items, prev, key)
    return conv, items, start, first_user


#: what a wire format reads from one message (item) ``mi``: its role, the tool ids it carries, and the
#: first user text so far; it adds the message's tool calls and blocks to the conversation itself
Visit = Callable[[Conversation, int, Node, "str | None"], tuple[str, list[str], "str | None"]]


def walk(conv: Conversation, items: list[Node], start: int, first_user: str | None, visit: Visit) -> None:
    """Walk messages ``[start, len(items))`` with a format's ``visit``; the bookkeeping every format shares.

    Keeps checkpoints before each of the last messages and after the last (for ``resume``), records
    each message's role, range and tool ids, and the end of the message list.
    """
    for mi in range(start, len(items)):
        if mi >= len(items) - CHECKPOINTS:
            checkpoint(conv, mi, first_user)
        node = items[mi]
        role, ids, first_user = visit(conv, mi, node, first_user)
        conv.messages.append(Message(role, node.start, node.end, tuple(ids)))
        conv.messages_end = node.end
    checkpoint(conv, len(items), first_user)
    conv.first_user = first_user or ""


def note_user(conv: Conversation, content: Node, first_user: str | None) -> str | None:
    """A user message's text becomes the query (when it has any); the first one is kept too."""
    said = text_of(content)
    conv.query = said or conv.query
    return said if first_user is None else first_user


def resume(conv: Conversation, items: list[Node], prev: Conversation | None, key: str) -> tuple[int, str | None]:
    """Start ``conv``'s walk where ``prev``'s can be taken over: (first message to walk, first user text).

    The walk's state before message ``k`` depends only on messages ``[0, k)``. When those are the
    very nodes of ``prev``'s scan (reused as they are: same characters at the same offsets) and
    ``prev`` kept a checkpoint at ``k``, ``conv`` starts from that checkpoint with ``prev``'s
    messages and blocks before it, and walks only the rest.
    """
    old = prev.root.get(key) if prev is not None and prev.root is not None else None
    if prev is None or old is None or old.kind != ARRAY or not prev.checkpoints:
        return 0, None
    same = 0
    for a, b in zip(items, old.value, strict=False):
        if a is not b:
            break
        same += 1
    best = None
    for c in prev.checkpoints:
        if 0 < c.index <= same and (best is None or c.index > best.index):
            best = c
    if best is None:
        return 0, None
    conv.messages = prev.messages[: best.index]
    conv.blocks = prev.blocks[: best.blocks]
    conv.calls = dict(best.calls)
    conv.last_assistant, conv.query, conv.messages_end = best.last_assistant, best.query, best.messages_end
    conv.checkpoints = [c for c in prev.checkpoints if c.index < best.index and c.index >= len(items) - CHECKPOINTS]
    return best.index, best.first_user


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the JSON string literal at ``[start, end)`` by one holding ``text``."""

    start: int
    end: int
    text: str


def quote(text: str) -> str:
    """The JSON string literal of ``text``: deterministic, UTF-8 kept, lone surrogates escaped."""
    literal = json.dumps(text, ensure_ascii=False)
    try:
        literal.encode("utf-8")
    except UnicodeEncodeError:
        literal = json.dumps(text)
    return literal


def splice_text(text: str, edits: list[Edit]) -> str:
    """Replace the string literals named by ``edits``; everything else is copied."""
    return splice_shifts(text, edits)[0]


def splice_shifts(text: str, edits: list[Edit]) -> tuple[str, list[tuple[int, int]]]:
    """``splice_text`` and, for each edit in order, (its end in ``text``, the total length change up to it).

    An offset ``x`` of ``text`` outside every edit is ``x + shift`` in the output, ``shift`` being
    the total of the last edit that ends at or before ``x`` (0 when none does).
    """
    out: list[str] = []
    shifts: list[tuple[int, int]] = []
    pos = total = 0
    for e in sorted(edits, key=lambda e: e.start):
        if e.start < pos or e.end > len(text) or text[e.start] != '"' or text[e.end - 1] != '"':
            raise ValueError(f"edit [{e.start}, {e.end}) is not a string literal of the body")
        out.append(text[pos : e.start])
        lit = quote(e.text)
        out.append(lit)
        total += len(lit) - (e.end - e.start)
        shifts.append((e.end, total))
        pos = e.end
    out.append(text[pos:])
    return "".join(out), shifts


def splice(raw: bytes, edits: list[Edit]) -> bytes:
    """``raw`` with the string literals named by ``edits`` replaced (offsets as in ``scan``)."""
    if not edits:
        return raw
    return splice_text(decode(raw), edits).encode("utf-8")


def text_of(node: Node | None) -> str:
    """Plain text of a message content: a string, or the text parts of a list."""
    if node is None:
        return ""
    if node.kind == STRING:
        return str(node.value)
    parts = []
    for part in node.items():
        t = part.str_of("text")
        if t is not None:
            parts.append(t)
    return "\n".join(parts)


def output_texts(content: Any) -> list[str]:
    """The replaceable texts of a tool output as ``json.loads`` returns it (same order as ``text_blocks``)."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [
        p["text"]
        for p in content
        if isinstance(p, dict) and isinstance(p.get("text"), str) and p.get("type") in ("text", "input_text", "output_text")
    ]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


Outline = tuple[list[tuple[str, tuple[str, ...]]], list[str]]


def text_blocks(
    content: Node | None, *, message: int, tool_id: str, call: ToolCall | None, is_error: bool, first: int
) -> list[Block]:
    """The replaceable text values of a tool output's content (a string or a list of text parts)."""
    if content is None:
        return []
    name, args = (call.name, call.args) if call else (None, None)
    if content.kind == STRING:
        return [Block(first, message, tool_id, -1, content.value, content.start, content.end, name, args, is_error)]
    out: list[Block] = []
    for k, part in enumerate(content.items()):
        t = part.get("text")
        kind = part.str_of("type")
        if t is not None and t.kind == STRING and kind in ("text", "input_text", "output_text"):
            out.append(Block(first + len(out), message, tool_id, k, t.value, t.start, t.end, name, args, is_error))
    return out
