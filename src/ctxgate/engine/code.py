"""Source code: recognised so that no other compressor touches it, then left as it is.

Agents read files to edit them; an edit tool matches exact strings, so a file read
that lost a line, a blank or a comment would make the next edit fail. The dispatcher
sees ``verbatim = True`` and returns such content byte for byte.

Recognised: the output of file-read tools (by tool name), line-numbered file views
(Claude Code's ``   12→``, ``nl``/``cat -n``'s ``    12<TAB>``, SWE-agent's ``[File: ...]``
header with ``12:`` lines), and
text whose lines mostly look like code (keywords at line start, statements ending in
``;``, ``{`` or ``:``, consistent indentation).
"""

from __future__ import annotations

import re

from ctxgate.engine._api import Context, Result

#: tool names whose output is the content of a file (lower-cased, compared exactly)
READ_TOOLS = frozenset(
    {"read", "read_file", "readfile", "view", "view_file", "open_file", "cat", "str_replace_editor:view"}
)

_NUMBERED = re.compile(r"^\s*\d+(?:→|\t|:)")
_SWE_VIEW = re.compile(r"^\[File: [^\]]+\]")
_KEYWORD = re.compile(
    r"^\s*+(?:def |class |import |from \S+ import |return\b|if |elif |else\b|for |while |try:|except\b|"
    r"with |async |await |function\b|const |let |var |public |private |protected |static |package |"
    r"func |fn |pub |use |impl |struct |enum |interface |type |#include|#define|namespace |"
    r"module |defmodule |defp? |end$|end\)|@\w+|//|/\*|\* |\*/|#!|\"\"\"|''')"
)
#: a statement ends with one of these (``foo();``, ``if x {``, ``def f():``, ``call(``) ...
_ENDS = frozenset(";{}:,([")
#: ... or the line closes a bracket and nothing else (``}``, ``);``, ``],``)
_CLOSERS = frozenset(c + s + t for c in ")}]" for s in ("", ";") for t in ("", ","))


#: the least share of code-like lines for text that is not a file read to count as code
_CODE_FLOOR = 0.55


def _code_share(lines: list[str], floor: float = 0.0) -> float:
    """Share of non-blank lines that look like code; 0.0 as soon as it cannot reach ``floor``."""
    body = [ln for ln in lines if ln.strip()]
    if not body:
        return 0.0
    hits = len(body)
    for ln in body:
        # ends like a statement (string tests: a regex ``\s*$`` scans the whole line), else
        # starts like one; the line is not blank
        end = ln.rstrip()
        last = end[-1]
        if not (last in _ENDS or (last in ")]" and end.lstrip() in _CLOSERS) or _KEYWORD.match(ln)):
            hits -= 1
            if hits / len(body) < floor:
                return 0.0
    return hits / len(body)


class CodeCompressor:
    name = "code"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.97
    verbatim = True
    min_tokens = 0

    def max_score_for(self, ctx: Context) -> float:
        """0.97 for a file read, else 0.9 (``registry.detect`` then lets a final JSON score win at once)."""
        return self.max_score if (ctx.tool_name or "").lower() in READ_TOOLS else 0.9

    def score(self, text: str, ctx: Context) -> float:
        tool = (ctx.tool_name or "").lower()
        if tool in READ_TOOLS:
            return 0.97
        lines = text.split("\n", 400)[:400]
        if len(lines) < 3:
            return -1.0
        if _SWE_VIEW.match(lines[0]):
            return 0.9
        if "→" in text[:2000] or "\t" in text[:2000]:
            numbered = sum(1 for ln in lines if _NUMBERED.match(ln))
            if numbered >= 0.9 * len([ln for ln in lines if ln]):
                return 0.9
        share = _code_share(lines, _CODE_FLOOR)
        if share < _CODE_FLOOR:
            return -1.0
        indented = sum(1 for ln in lines if ln.startswith(("    ", "\t")))
        return min(0.6, 0.3 + share * 0.3 + (0.05 if indented > len(lines) / 4 else 0.0))

    def compress(self, text: str, ctx: Context) -> Result:
        return Result(text, (), (), ("code: source is left untouched",))
