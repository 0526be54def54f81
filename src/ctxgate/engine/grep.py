"""grep / ripgrep results: ``path:line:text``, ``-C`` context, ``--heading`` groups.

Every kept match line keeps its ``path:line:`` prefix exactly (editors and agents
parse it); in ``--heading`` output the file heading and the ``line:`` prefixes stay.

Lossless (levels ``lossless`` and ``balanced``): trailing whitespace removed.

Lossy (``balanced``), announced per file by one ``omission_marker`` placed after
the file's last kept line, saying how many matches and context lines of that file
were dropped:

* context lines (``path-line-text``) more than one line away from a kept match are
  dropped (the agent sees the gap in the line numbers, and the marker counts it);
* matches beyond ``PER_FILE`` in one file, or ``TOTAL`` overall, are dropped;
  the ones kept are the first and last of the file, then definitions (``def``,
  ``class``, ...), lines naming a term of the request or the tool arguments,
  assignments, and an even sample of the rest;
* very long lines (minified files, data) keep a window around the first term of
  the request or their head, with an inline marker counting the characters cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ctxgate.engine._api import Context, Original, Result, omission_marker, retrieval_key
from ctxgate.engine._lines import query_terms, worth

PER_FILE = 40
TOTAL = 300
LONG_LINE = 400
_CONTEXT_KEEP = 1

#: ``path:12:`` (``path:12:5:`` with a column); the path has no colon or whitespace and
#: holds a letter (so that ``10:00:00`` times are not paths)
_MATCH = re.compile(r"^(?P<path>[^\s:]++):(?P<ln>\d+):(?:\d+:)?")
_PATHLIKE = re.compile(r"[A-Za-z_./]")
#: a ``--heading`` file line: one path-like word with a dot or a slash
_HEADING_PATH = re.compile(r"^[\w.@+~-]*[./][\w./@+~-]*$")
_NUMBERED = re.compile(r"^(?P<ln>\d+)(?P<sep>[:-])")
#: what grep says besides matches (kept as they are): ``grep: x.pyc: binary file matches``,
#: ``Binary file x matches``, ``grep: x: No such file or directory``, ``grep: x: Is a directory``
_NOTICE = re.compile(
    r"^(?:(?:e|f|z|xz|bz)?grep|rg): .+: (?:[Bb]inary file matches|No such file or directory|Is a directory|"
    r"Permission denied)$|^Binary file .+ matches$"
)
_NOTICE_STARTS = ("grep", "egrep", "fgrep", "zgrep", "xzgrep", "bzgrep", "rg:", "Binary file ")
_DEFINITION = re.compile(
    r"^\s*(?:export\s+)?(?:async\s+def|def|class|func|fn|function|interface|type|struct|enum|const|let|var)\s"
)
_ASSIGNMENT = re.compile(r"^\s*(?:self\.)?\w+\s*(?::\s*[^=]+)?=(?!=)")


@dataclass(slots=True)
class _Entry:
    index: int  # line index in the output
    line_no: int
    is_match: bool
    text: str  # the part after the prefix


@dataclass(slots=True)
class _File:
    path: str
    entries: list[_Entry] = field(default_factory=list)


def _parse(lines: list[str], need: int = 0) -> tuple[list[_File], int]:
    """Files in order of first appearance, and how many lines were understood.

    ``need``: with fewer possible match lines than that (lines whose path is a path, and
    ``12:`` lines, the ``--heading`` form's), nothing is parsed and ``([], 0)`` is returned
    (the scorer's answer is then known).
    """
    files: dict[str, _File] = {}
    understood = 0
    found = [_MATCH.match(line) for line in lines]
    paths = {m.group("path") for m in found if m and _PATHLIKE.search(m.group("path"))}
    if need and sum(1 for m in found if m and m.group("path") in paths) + sum(
        1 for line in lines if line[:1].isdigit() and (n := _NUMBERED.match(line)) and n.group("sep") == ":"
    ) < need:
        return [], 0
    #: paths none of whose cuts at a dash is another path (``a-b`` where ``a`` is one is not)
    plain = {p for p in paths if not any(p[:k] in paths for k in range(1, len(p)) if p[k] == "-")}
    last: str | None = None  # the path of the previous match or context line, when plain
    heading: _File | None = None
    for i, line in enumerate(lines):
        if line == "--" or not line or (line.startswith(_NOTICE_STARTS) and _NOTICE.match(line)):
            understood += 1
            if not line:
                heading = None
            continue
        m = found[i]
        if m and m.group("path") in paths:
            _file(files, m.group("path")).entries.append(_Entry(i, int(m.group("ln")), True, line[m.end() :]))
            understood += 1
            last = m.group("path") if m.group("path") in plain else None
            continue
        ctx = None
        if last is not None and line.startswith(last) and line[len(last) : len(last) + 1] == "-":
            # the usual case, the same file as the line before: no shorter dash-cut path can
            # claim the line first (checked once per path), so this is what the scan would find
            m = _CONTEXT_NUMBER.match(line, len(last) + 1)
            if m:
                ctx = last, int(m.group(1)), line[m.end() :]
        if ctx is None and paths:  # a context line names a path seen in a match line
            ctx = _context_of(line, paths)
        if ctx is not None:
            path, ln, rest = ctx
            _file(files, path).entries.append(_Entry(i, ln, False, rest))
            understood += 1
            last = path if path in plain else None
            continue
        n = _NUMBERED.match(line)
        if n and heading is not None:
            heading.entries.append(_Entry(i, int(n.group("ln")), n.group("sep") == ":", line[n.end() :]))
            understood += 1
            continue
        if i + 1 < len(lines) and _NUMBERED.match(lines[i + 1]) and _HEADING_PATH.match(line):
            heading = files.setdefault(line, _File(line))
            understood += 1
            continue
        heading = None
    return list(files.values()), understood


def _file(files: dict[str, _File], path: str) -> _File:
    f = files.get(path)
    if f is None:
        f = files[path] = _File(path)
    return f


_CONTEXT_NUMBER = re.compile(r"(\d+)-")
_PATH_END = re.compile(r"[\s:]")


def _context_of(line: str, paths: set[str]) -> tuple[str, int, str] | None:
    """``path-12-text`` for a path already seen in a match line."""
    stop = _PATH_END.search(line)  # a path holds no whitespace or colon: no dash after one ends it
    end = stop.start() if stop else len(line)
    pos = line.find("-", 0, end)
    while pos > 0:
        if line[:pos] in paths:
            m = _CONTEXT_NUMBER.match(line, pos + 1)
            if m:
                return line[:pos], int(m.group(1)), line[m.end() :]
        pos = line.find("-", pos + 1, end)
    return None


class GrepCompressor:
    name = "grep"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.85
    min_tokens = 100

    def score(self, text: str, ctx: Context) -> float:
        lines = text[:20000].split("\n")[:200]
        if len(lines) > 1 and len(text) > 20000:
            lines = lines[:-1]  # the cut may split the last line
        lines = [ln.rstrip() for ln in lines]
        files, understood = _parse(lines, need=3)  # fewer match lines: fewer than 3 matches
        numbered = [(f.path, e.line_no) for f in files for e in f.entries]
        matches = sum(1 for f in files for e in f.entries if e.is_match)
        if matches < 3 or len(set(numbered)) < 0.9 * len(numbered):
            return -1.0  # grep never repeats a (file, line) pair; logs with "name:12:" stamps do
        frac = understood / max(1, len(lines))
        return 0.85 * frac if frac >= 0.8 else -1.0

    def compress(self, text: str, ctx: Context) -> Result:
        lines = [ln.rstrip() for ln in text.split("\n")]
        transforms = (
            ["grep:trailing"]
            if any(len(a) != len(b) for a, b in zip(lines, text.split("\n"), strict=True))
            else []
        )
        if ctx.level != "balanced":
            return Result("\n".join(lines), tuple(transforms))
        files, understood = _parse(lines)
        if understood < len(lines) * 0.8:
            raise ValueError("not grep output")
        key = retrieval_key(text)
        terms = sorted(query_terms(ctx), key=lambda t: (-len(t), t))
        drop: set[int] = set()
        after: dict[int, str] = {}
        budget = TOTAL
        for f in files:
            budget -= _plan_file(f, lines, terms, key, budget, drop, after)
        out: list[str] = []
        cut = 0
        for i, line in enumerate(lines):
            if line == "--" and (not out or out[-1] == "--"):
                continue
            if i not in drop:
                if len(line) > LONG_LINE:
                    line = _shorten(line, terms, key)
                    cut += 1
                out.append(line)
            if i in after:
                out.append(after[i])
        if drop:
            transforms.append("grep:cap")
        if cut:
            transforms.append("grep:long-lines")
        originals = (Original(key, text),) if drop or cut else ()
        return Result("\n".join(out), tuple(transforms), originals)


def _plan_file(
    f: _File, lines: list[str], terms: list[str], key: str, budget: int, drop: set[int], after: dict[int, str]
) -> int:
    """Choose what to drop in one file; returns how many matches were kept."""
    matches = [e for e in f.entries if e.is_match]
    cap = max(1, min(PER_FILE, budget)) if budget > 0 else 0
    keep = set(range(len(matches)))
    if len(matches) > cap:
        keep = _choose(matches, cap, terms)
    dropped_matches = {matches[k].index for k in range(len(matches)) if k not in keep}
    kept_numbers = [matches[k].line_no for k in sorted(keep)]
    context = [e for e in f.entries if not e.is_match]
    near = {n + d for n in kept_numbers for d in range(-_CONTEXT_KEEP, _CONTEXT_KEEP + 1)}
    far = {e.index for e in context if e.line_no not in near}
    if not dropped_matches and not far:
        return len(keep)
    if dropped_matches:
        what = f"in {f.path}" + (f", and {len(far)} of {len(context)} context lines" if far else "")
        marker = omission_marker(len(dropped_matches), len(matches), "matches", what, key)
    else:
        marker = omission_marker(len(far), len(context), "context lines", f"in {f.path}", key)
    if not worth([lines[i] for i in dropped_matches | far], marker):
        return len(matches)  # the marker would cost more than what it replaces
    drop.update(dropped_matches)
    drop.update(far)
    last_kept = max((e.index for e in f.entries if e.index not in drop), default=f.entries[-1].index)
    after[last_kept] = marker
    return len(keep)


def _choose(matches: list[_Entry], cap: int, terms: list[str]) -> set[int]:
    """Indexes of the matches to keep: edges, definitions, query hits, an even sample."""
    n = len(matches)
    chosen = {0, n - 1}
    tiers = (
        lambda text: _DEFINITION.match(text) is not None,
        lambda text: bool(terms) and any(t in text for t in terms),
        lambda text: _ASSIGNMENT.match(text) is not None,
    )
    for tier in tiers:
        for k, e in enumerate(matches):
            if len(chosen) >= cap:
                return chosen
            if tier(e.text):
                chosen.add(k)
    room = cap - len(chosen)
    if room > 0:
        step = n / (room + 1)
        for j in range(1, room + 1):
            chosen.add(min(n - 1, int(j * step)))
    return chosen


def _shorten(line: str, terms: list[str], key: str) -> str:
    """A window of a very long line, around the first request term when there is one."""
    m = _MATCH.match(line)
    head = m.end() if m else 0
    body = line[head:]
    start = 0
    for t in terms:
        pos = body.find(t)
        if pos >= 0:
            start = max(0, pos - 100)
            break
    window = body[start : start + 300]
    cut = len(body) - len(window)
    pre = "..." if start else ""
    return f"{line[:head]}{pre}{window}... " + omission_marker(cut, len(body), "chars", "long line", key)
