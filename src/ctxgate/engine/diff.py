"""Unified diffs: ``git diff``, ``git show``, ``git log -p``, ``diff -u``.

Every ``+``/``-`` line, every file header and every hunk's section heading
(the text after ``@@ ... @@``: the function or class the hunk touches) is kept.

Lossless: nothing changes at level ``lossless`` (trailing whitespace in a diff is
content).

Lossy (``balanced``), per file, when it saves more than the marker costs:
unchanged context is dropped (``CONTEXT`` lines kept around each run of changes;
a gap of fewer than ``_MIN_GAP`` lines inside a hunk is kept, cheaper than a new
header). A trimmed hunk is re-cut into valid sub-hunks whose ``@@ -a,b +c,d @@``
numbers are recomputed, so every kept line keeps its true line number, like
``git diff -U0``; the first sub-hunk keeps the original section heading. The
file's ``index`` line and its ``---``/``+++`` lines (when they repeat the
``diff --git`` path) go too. One ``omission_marker`` at the end of the file
counts what was dropped there. Diffstat ``+++---`` bars are dropped (the counts
stay), announced by one marker after the stat block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ctxgate.engine._api import Context, Original, Result, omission_marker, retrieval_key
from ctxgate.engine._lines import worth

CONTEXT = 0
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_FILE = re.compile(r"^diff --git a/(.*?) b/|^\+\+\+ (?:b/)?(\S+)|^--- (?:a/)?(\S+)")
_STAT = re.compile(r"^( \S.*?\|\s+\d+) [+-]+$")
_FUNCNAME = re.compile(r"^[A-Za-z_$]")
#: how diff outputs start: git diff, git show / log -p, diff -u, format-patch, a bare hunk
_START = re.compile(r"^(?:diff --git |diff -|commit [0-9a-f]{7,40}\b|--- \S|From [0-9a-f]{40} |Index: |@@ -)")


@dataclass(slots=True)
class _Hunk:
    header: str
    old_start: int
    new_start: int
    heading: str
    body: list[str]


def _parse(lines: list[str]) -> tuple[list[str | _Hunk], int]:
    """Lines and hunks in order; hunk bodies are read by the header's line counts."""
    items: list[str | _Hunk] = []
    hunks = 0
    i = 0
    n = len(lines)
    while i < n:
        m = _HUNK.match(lines[i])
        if not m:
            items.append(lines[i])
            i += 1
            continue
        old_left = int(m.group(2)) if m.group(2) is not None else 1
        new_left = int(m.group(4)) if m.group(4) is not None else 1
        body: list[str] = []
        i += 1
        while i < n and (old_left > 0 or new_left > 0 or lines[i].startswith("\\")):
            line = lines[i]
            tag = line[:1]
            if tag == " " or line == "":
                old_left -= 1
                new_left -= 1
            elif tag == "-":
                old_left -= 1
            elif tag == "+":
                new_left -= 1
            elif tag != "\\":
                break
            body.append(line)
            i += 1
        items.append(_Hunk(m.group(0), int(m.group(1)), int(m.group(3)), m.group(5), body))
        hunks += 1
    return items, hunks


class DiffCompressor:
    name = "diff"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.95
    min_tokens = 100

    def score(self, text: str, ctx: Context) -> float:
        head = text[:4000]
        if "\n@@ -" not in text[:200000] and not head.startswith("@@ -"):
            return -1.0
        first = next((ln for ln in head.split("\n")[:5] if ln.strip()), "")
        if not _START.match(first):
            return -1.0  # a diff quoted inside a document is not a diff output
        if "diff --git " in head or re.search(r"^--- \S.*\n\+\+\+ \S", head, re.M):
            return 0.95
        if first.startswith("commit "):
            return 0.9
        return 0.6 if first.startswith("@@ -") else -1.0

    def compress(self, text: str, ctx: Context) -> Result:
        if ctx.level != "balanced":
            return Result(text)
        lines = text.split("\n")
        items, hunks = _parse(lines)
        if not hunks:
            raise ValueError("no hunks")
        key = retrieval_key(text)
        out: list[str] = []
        transforms: list[str] = []
        items = _strip_stat_bars(items, key, transforms)
        for segment in _segments(items):
            out.extend(_file(segment, key, transforms))
        if not transforms:
            return Result(text)
        return Result("\n".join(out), tuple(dict.fromkeys(transforms)), (Original(key, text),))


def _strip_stat_bars(items: list[str | _Hunk], key: str, transforms: list[str]) -> list[str | _Hunk]:
    """`` path | 12 +++--`` becomes `` path | 12``; one marker after the stat block.

    A block whose bars are shorter than the marker stays as it is.
    """
    out: list[str | _Hunk] = []
    block: list[str] = []  # the stat lines of the current block, as received
    for item in items:
        if isinstance(item, str) and _STAT.match(item):
            block.append(item)
            continue
        if block:
            stripped = [_STAT.match(ln).group(1) for ln in block]  # type: ignore[union-attr]
            done = isinstance(item, str) and _STAT_DONE.match(item) is not None
            marker = omission_marker(len(block), len(block), "diffstat bars", "+/- graphs; counts kept", key)
            cut = [ln[len(st) :] for ln, st in zip(block, stripped, strict=True)]
            if done and worth(cut, marker):
                out.extend(stripped)
                out.append(item)
                out.append(marker)
                transforms.append("diff:stat-bars")
                block = []
                continue
            out.extend(block)
            block = []
        out.append(item)
    out.extend(block)
    return out


def _segments(items: list[str | _Hunk]) -> list[list[str | _Hunk]]:
    """Split at file boundaries (``diff --git``, ``commit``, a ``---`` that starts a file)."""
    segments: list[list[str | _Hunk]] = [[]]
    prev: str | _Hunk | None = None
    for item in items:
        if isinstance(item, str) and (
            item.startswith(("diff --git ", "commit "))
            or (
                item.startswith("--- ")
                and not (isinstance(prev, str) and prev.startswith(_FILE_HEADER_LINES))
            )
        ):
            segments.append([])
        segments[-1].append(item)
        prev = item
    return [s for s in segments if s]


def _file(segment: list[str | _Hunk], key: str, transforms: list[str]) -> list[str]:
    """One file's lines with its hunks' context trimmed, or unchanged when that saves little."""
    path = ""
    for item in segment:
        if isinstance(item, str):
            m = _FILE.match(item)
            if m:
                path = next(g for g in m.groups() if g is not None)
                break
    recut: list[str] = []
    dropped = total = saved = 0
    for item in segment:
        if isinstance(item, _Hunk):
            before = len(recut)
            kept_n, total_n, saved_n = _recut(item, recut)
            dropped += total_n - kept_n
            total += total_n
            saved += saved_n - sum(len(x) for x in recut[before:] if x.startswith("@@")) + len(item.header)
    index = [x for x in segment if isinstance(x, str) and x.startswith("index ")]
    if saved + sum(len(x) for x in index) < _MIN_SAVING or not dropped:
        return _verbatim(segment)
    transforms.append("diff:context")
    out: list[str] = []
    hunk_lines = iter(_split_recut(recut))
    git_header = f"diff --git a/{path} b/{path}"
    redundant = {f"--- a/{path}", f"+++ b/{path}"} if git_header in segment else set()
    dropped_headers = 0
    for item in segment:
        if isinstance(item, _Hunk):
            out.extend(next(hunk_lines))
        elif item.startswith("index ") or item in redundant:
            dropped_headers += not item.startswith("index ")
        else:
            out.append(item)
    what = "@@ renumbered"
    extra = [x for x, n in (("index", len(index)), ("---/+++", dropped_headers)) if n]
    if extra:
        what += "; " + ", ".join(extra) + " lines too"
    tail = len(out)
    while tail > 0 and not out[tail - 1]:
        tail -= 1  # the marker goes before the blank lines that separate commits
    out.insert(tail, omission_marker(dropped, total, "context lines", what, key))
    return out


_MIN_SAVING = 240  # characters; a file's marker costs about 150
_STAT_DONE = re.compile(r"^ \d+ files? changed")
#: lines of a git file header that come before its ``---`` line
_FILE_HEADER_LINES = (
    "diff --git ",
    "index ",
    "new file",
    "deleted file",
    "old mode",
    "new mode",
    "similarity",
    "rename ",
    "copy ",
)


def _verbatim(segment: list[str | _Hunk]) -> list[str]:
    out: list[str] = []
    for item in segment:
        if isinstance(item, _Hunk):
            out.append(item.header)
            out.extend(item.body)
        else:
            out.append(item)
    return out


def _split_recut(recut: list[str]) -> list[list[str]]:
    """``_recut`` output back into one list per original hunk (each starts with a ``\0`` mark)."""
    hunks: list[list[str]] = []
    for line in recut:
        if line == "\0":
            hunks.append([])
        else:
            hunks[-1].append(line)
    return hunks


def _recut(h: _Hunk, out: list[str]) -> tuple[int, int, int]:
    """Append hunk ``h`` to ``out`` (after a ``\0`` mark) with context trimmed.

    Returns (kept, total) context lines and the characters of the dropped ones.
    """
    body = h.body
    n = len(body)
    change = [ln[:1] in ("+", "-", "\\") for ln in body]
    keep = list(change)
    for i in range(n):
        if change[i]:
            for j in range(max(0, i - CONTEXT), min(n, i + CONTEXT + 1)):
                keep[j] = True
    # a gap inside the hunk costs a new header: fill gaps of fewer than _MIN_GAP lines
    i = 0
    while i < n:
        if keep[i]:
            i += 1
            continue
        j = i
        while j < n and not keep[j]:
            j += 1
        if i > 0 and j < n and j - i < _MIN_GAP:
            for k in range(i, j):
                keep[k] = True
        i = j
    total = sum(1 for c in change if not c)
    kept = sum(1 for i in range(n) if keep[i] and not change[i])
    out.append("\0")
    if kept == total or not any(change):
        out.append(h.header)
        out.extend(body)
        return total, total, 0
    saved = sum(len(body[i]) + 1 for i in range(n) if not keep[i])
    old_no, new_no = h.old_start, h.new_start
    first = True
    i = 0
    while i < n:
        if not keep[i]:
            old_no += 1
            new_no += 1
            i += 1
            continue
        j = i
        while j < n and keep[j]:
            j += 1
        out.append(_header(old_no, new_no, body[i:j], h.heading if first else ""))
        first = False
        out.extend(body[i:j])
        for line in body[i:j]:
            tag = line[:1]
            if tag != "+" and tag != "\\":
                old_no += 1
            if tag != "-" and tag != "\\":
                new_no += 1
        i = j
    return kept, total, saved


_MIN_GAP = 3


def _header(old_start: int, new_start: int, body: list[str], heading: str) -> str:
    old_len = sum(1 for ln in body if ln[:1] != "+" and ln[:1] != "\\")
    new_len = sum(1 for ln in body if ln[:1] != "-" and ln[:1] != "\\")
    # an empty side starts one line earlier (``-0,0`` for a new file)
    old_at = old_start if old_len else old_start - 1
    new_at = new_start if new_len else new_start - 1
    return f"@@ -{old_at},{old_len} +{new_at},{new_len} @@{heading}"
