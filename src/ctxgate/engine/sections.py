"""Mixed content: prose or command output with fenced code blocks or embedded JSON.

The text is cut into sections: fenced blocks (```` ``` ```` or ``~~~``), JSON values that
start a line and span at least a few hundred characters (an HTTP response body after
its headers, a JSON payload inside a log), and the text between them. Each section goes
through the dispatcher on its own (this compressor excluded), so JSON is minified and
sampled, source in a fence stays untouched, and the text around it is handled as logs
or prose. Separators and fence lines are kept byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ctxgate.engine._api import Context, Original, Result

#: a fenced block; its matches are found by ``fenced_bodies`` (same matches, linear time)
_FENCE = re.compile(r"^(?P<fence>```|~~~)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
_JSON_START = re.compile(r"[ \t]*[\[{]")
#: the same after a line break: a pattern that starts with a literal is found at C speed (a
#: ``^`` under ``re.M`` is tried at every position)
_JSON_LINE = re.compile(r"\n[ \t]*[\[{]")
_MIN_JSON = 200
_MAX_TRIES = 200
_DECODER = json.JSONDecoder()
#: the characters that may follow an opening bracket in JSON (whitespace, a value, the closer)
_VALUE_START = frozenset(' \t\n\r"-0123456789{[tfnIN')
_CAN_FOLLOW = {"[": _VALUE_START | {"]"}, "{": frozenset(' \t\n\r"}')}


@dataclass(frozen=True, slots=True)
class Section:
    start: int
    end: int
    kind: str  # "fenced" (body only), "json" or "text"


def split(text: str) -> list[Section]:
    """Sections covering ``text``; fence lines stay in the text sections around the body."""
    spans = [Section(start, end, "fenced") for start, end in fenced_bodies(text) if end > start]
    tries = 0
    pos = 0
    for start, at in _json_starts(text):
        if start < pos or any(s.start <= start < s.end for s in spans):
            continue
        tries += 1
        if tries > _MAX_TRIES:
            break
        if text[at + 1 : at + 2] not in _CAN_FOLLOW[text[at]]:
            continue  # ``[Sun Dec 04 ...]``, ``{name}``: no JSON value can start so (and no parse is tried)
        try:
            value, end = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError):
            continue
        if end - at < _MIN_JSON or not isinstance(value, dict | list):
            continue
        line_end = text.find("\n", end)
        rest = text[end : len(text) if line_end < 0 else line_end]
        if rest.strip():
            continue
        spans.append(Section(at, end, "json"))
        pos = end
    spans.sort(key=lambda s: s.start)
    out: list[Section] = []
    cursor = 0
    for s in spans:
        if s.start > cursor:
            out.append(Section(cursor, s.start, "text"))
        out.append(s)
        cursor = s.end
    if cursor < len(text):
        out.append(Section(cursor, len(text), "text"))
    return out


_OPENER = re.compile(r"\n(?:```|~~~)")
_CLOSER = {f: re.compile(rf"\n{f}[ \t]*$", re.M) for f in ("```", "~~~")}


def fenced_bodies(text: str) -> Iterator[tuple[int, int]]:
    """``(m.start("body"), m.end("body"))`` for each match of ``_FENCE.finditer(text)``, in
    linear time: the regex looks for a closing line after every opening one, to the end of
    the text when there is none (rst underlines of ``~~~~``), which is quadratic. Here an
    opening line is tried only while a closing line of its kind can still follow."""
    if "```" not in text and "~~~" not in text:
        return
    # the line starts that hold a fence: the first line, then every one after a line break
    first = [0] if text.startswith(("```", "~~~")) else []
    openers = (m.start() + 1 for m in _OPENER.finditer(text))
    pos = 0
    no_closer_after: dict[str, int] = {}  # fence -> a body start from which no closing line follows
    for start in (*first, *openers):
        if start < pos:
            continue  # inside the previous match (matches do not overlap)
        fence = text[start : start + 3]
        newline = text.find("\n", start)
        if newline < 0:
            break  # the opening line needs its line break, and no later line has one
        body = newline + 1
        if no_closer_after.get(fence, len(text) + 1) <= body:
            continue
        close = _CLOSER[fence].search(text, newline)  # its "\n" may be the opening line's own
        if close is None:
            no_closer_after[fence] = body
            continue
        yield body, close.start() + 1
        pos = close.end()


#: up to this many brackets in a text, its bracket lines are found from its brackets
_FEW_BRACKETS = 64


def _json_starts(text: str) -> Iterator[tuple[int, int]]:
    """Each line that starts with ``[`` or ``{`` (after blanks): its offset and the bracket's."""
    m = _JSON_START.match(text)
    if m:
        yield 0, m.end() - 1
    brackets = _brackets(text)
    if brackets is None:  # many: one regex pass, which tries every line break
        for m in _JSON_LINE.finditer(text):
            yield m.start() + 1, m.end() - 1
        return
    # the same lines (``_JSON_LINE`` matches), from the few brackets: one whose line holds
    # only blanks before it, on a line after the first
    for at in brackets:
        start = text.rfind("\n", 0, at) + 1
        if start and not text[start:at].strip(" \t"):
            yield start, at


def _brackets(text: str) -> list[int] | None:
    """The offsets of every ``[`` and ``{`` in ``text``, in order; None past ``_FEW_BRACKETS``."""
    found: list[int] = []
    for ch in "[{":
        at = text.find(ch)
        while at >= 0:
            found.append(at)
            if len(found) > _FEW_BRACKETS:
                return None
            at = text.find(ch, at + 1)
    return sorted(found)


class SectionsCompressor:
    name = "sections"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.65
    min_tokens = 60

    def score(self, text: str, ctx: Context) -> float:
        parts = split(text)  # without fences or bracket lines: one text section, found fast
        structured = [p for p in parts if p.kind != "text"]
        if not structured or len(parts) < 2:
            return -1.0
        if any(p.kind == "json" for p in structured):
            return 0.65
        return 0.45

    def compress(self, text: str, ctx: Context) -> Result:
        from ctxgate.engine import registry  # the dispatcher imports this module

        parts = split(text)
        if len(parts) < 2:
            raise ValueError("no sections")
        pieces: list[str] = []
        transforms: list[str] = ["sections:split"]
        originals: list[Original] = []
        skipped: list[str] = []
        for p in parts:
            chunk = text[p.start : p.end]
            if not chunk.strip():
                pieces.append(chunk)
                continue
            out = registry.compress_part(chunk, ctx, exclude=frozenset({self.name}))
            pieces.append(out.text if out.changed else chunk)
            if out.changed:
                transforms.extend(t for t in out.transforms if t not in transforms)
                originals.extend(o for o in out.originals if o not in originals)
            else:
                skipped.extend(r for r in out.skipped if r not in skipped)
        return Result("".join(pieces), tuple(transforms), tuple(originals), tuple(skipped))
