"""Line helpers shared by the text-shaped compressors (logs, grep, diff, prose).

Two families:

* lossless clean-up (``normalize``, ``fold_runs``): carriage-return progress bars reduced to
  their final state, trailing whitespace removed, runs of identical lines
  collapsed into one line plus a ``[previous line repeated N more times]`` note.
  ``expand_runs`` is the decoder of the run note.
* line templating (``template``, ``collapse_templates``): lines that differ only
  in numbers, ids, timestamps, paths or hex share one template; big groups keep
  their first and last line (plus numeric extremes) and the rest becomes one
  ``omission_marker`` in place.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ctxgate.engine._api import Context, omission_marker

REPEAT_NOTE = "[previous line repeated {n} more times]"
_REPEAT_RE = re.compile(r"^\[previous line repeated (\d+) more times\]$")

#: a variable token: a run of word-ish characters holding a digit or a slash (numbers,
#: timestamps, ids, hex, paths, urls); anchored at token starts so that it stays linear
_VARIABLE = re.compile(r"(?<![\w.@+:/-])(?=[\w.@+:/-]*?[\d/])[\w.@+:/-]+")
_RULE = re.compile(r"([_=\-*#~.+])\1{3,}")
_DECIMAL = re.compile(r"(?<![\w.])[-+]?\d+\.\d+(?![\d.])")


def final_state(line: str) -> str:
    """The text a terminal shows for ``line``: what follows the last carriage return."""
    if "\r" not in line:
        return line
    parts = [p for p in line.split("\r") if p]
    return parts[-1] if parts else ""


def normalize(text: str) -> tuple[list[str], dict[str, int]]:
    """Split ``text`` into lines with progress frames and trailing whitespace removed.

    Returns the lines and counts: ``progress`` (lines whose carriage-return
    frames were dropped) and ``trailing`` (lines that lost trailing whitespace).
    """
    stats = {"progress": 0, "trailing": 0}
    out: list[str] = []
    for line in text.split("\n"):
        if "\r" in line:
            last = final_state(line)
            if last != line.rstrip("\r"):
                stats["progress"] += 1
            line = last
        stripped = line.rstrip()
        if stripped != line:
            stats["trailing"] += 1
        out.append(stripped)
    return out, stats


def fold_runs(lines: Sequence[str], *, min_run: int = 3) -> tuple[list[str], int]:
    """Runs of ``min_run`` or more identical non-empty lines become one line plus a repeat note.

    Returns the lines and how many lines were folded away.
    """
    out: list[str] = []
    folded = 0
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        j = i + 1
        while j < n and lines[j] == line:
            j += 1
        run = j - i
        out.append(line)
        if run >= min_run and line:
            out.append(REPEAT_NOTE.format(n=run - 1))
            folded += run - 1
        else:
            out.extend([line] * (run - 1))
        i = j
    return out, folded


def expand_runs(lines: Sequence[str]) -> list[str]:
    """Decoder for ``clean_lines``'s repeat notes (used by the tests)."""
    out: list[str] = []
    for line in lines:
        m = _REPEAT_RE.match(line)
        if m and out:
            out.extend([out[-1]] * int(m.group(1)))
        else:
            out.append(line)
    return out


def template(line: str) -> str:
    """``line`` with its variable parts (numbers, ids, paths, hex, urls) as ``<*>``."""
    return _VARIABLE.sub("<*>", line)


#: a ``_VARIABLE`` match holds one of these: a line without any is its own template
DIGIT_OR_SLASH = re.compile(r"[\d/]")


def templates(lines: Sequence[str]) -> list[str]:
    """``template`` of each line, in one regex pass (no line holds a newline, and the
    pattern neither matches nor looks across one, so the lines template independently).
    Only the lines holding a digit or a slash go through it (most prose lines hold none,
    and the pattern is tried at every character)."""
    has = DIGIT_OR_SLASH.search
    if sum(1 for line in lines[:40] if has(line)) >= 30:  # mostly variable lines (a log): all at once
        return template("\n".join(lines)).split("\n")
    todo = [i for i, line in enumerate(lines) if has(line)]
    if not todo:
        return list(lines)
    if len(todo) == len(lines):
        return template("\n".join(lines)).split("\n")
    out = list(lines)
    for i, t in zip(todo, template("\n".join([lines[i] for i in todo])).split("\n"), strict=True):
        out[i] = t
    return out


def _decimals(line: str) -> list[float]:
    return [float(m.group()) for m in _DECIMAL.finditer(line)]


@dataclass(slots=True)
class Plan:
    """Lines to drop and markers to insert, by index into one list of lines."""

    drop: set[int] = field(default_factory=set)
    #: marker text to put right after the line at this index
    after: dict[int, list[str]] = field(default_factory=dict)
    groups: int = 0

    def mark(self, index: int, marker: str) -> None:
        self.after.setdefault(index, []).append(marker)

    def render(self, lines: Sequence[str]) -> list[str]:
        out: list[str] = []
        for i, line in enumerate(lines):
            if i not in self.drop:
                out.append(line)
            out.extend(self.after.get(i, ()))
        return out


def plan_templates(
    lines: Sequence[str],
    eligible: Sequence[bool],
    key: str,
    plan: Plan,
    *,
    min_group: int = 5,
    keys: Sequence[str] | None = None,
    unit: str = "lines",
    what: str = "",
) -> None:
    """Add to ``plan`` the collapse of big groups of same-template ``eligible`` lines.

    ``keys`` gives each line's group key (default: its ``template``). Each group of at least ``min_group`` lines keeps its first and last line and
    the lines holding the largest and smallest decimal value of the group
    (durations, sizes); the other lines become one marker placed right after
    the group's first line.
    """
    groups: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        if eligible[i] and line and i not in plan.drop:
            groups.setdefault(keys[i] if keys is not None else template(line), []).append(i)
    for tpl, idx in groups.items():
        if len(idx) < min_group:
            continue
        if idx[-1] - idx[0] == len(idx) - 1 and all(lines[i] == lines[idx[0]] for i in idx):
            continue  # one run of the same line: ``fold_runs`` says it without losing anything
        kept = {idx[0], idx[-1]}
        # numeric extremes (durations, sizes), when the group's lines carry decimals
        values = [(_decimals(lines[i]), i) for i in idx] if _DECIMAL.search(lines[idx[0]]) else []
        for slot in range(min((len(v) for v, _ in values), default=0)):
            kept.add(max(values, key=lambda vi: vi[0][slot])[1])
            kept.add(min(values, key=lambda vi: vi[0][slot])[1])
        dropped = [i for i in idx if i not in kept]
        if len(dropped) < 2:
            continue
        shown = _RULE.sub(r"\1\1\1", tpl)  # "________ name ________" reads as "___ name ___"
        shown = shown if len(shown) <= 100 else shown[:100] + "..."
        detail = f"{what} like: {shown}" if what else f"like: {shown}"
        marker = omission_marker(len(dropped), len(idx), unit, detail, key)
        if not worth([lines[i] for i in dropped], marker):
            continue
        plan.groups += 1
        plan.drop.update(dropped)
        plan.mark(idx[0], marker)


def worth(dropped: Sequence[str], marker: str) -> bool:
    """Whether dropping these lines for ``marker`` saves enough to be worth a marker."""
    return sum(len(ln) + 1 for ln in dropped) > 1.3 * len(marker)


_TERM = re.compile(r"[A-Za-z_][\w.:/-]{3,}[\w]")
_STOP = frozenset(
    re.findall(
        r"\w+",
        "python python3 pytest tests test grep bash echo true false none null with from that this what "
        "where which there their about into have should would could please file files line lines show find",
    )
)


def query_terms(ctx: Context) -> frozenset[str]:
    """Identifier-like words of the request and the tool arguments, for relevance.

    Only words that look like names (contain ``_``, ``.``, ``/``, ``::``, a digit or
    an inner capital) or are long (8+ characters) count, so that plain English
    does not make every line relevant.
    """
    found: set[str] = set()
    for source in (ctx.query, ctx.tool_args):
        if not source:
            continue
        for m in _TERM.finditer(source[:4000]):
            word = m.group().strip(".:/-")
            if len(word) < 4 or word.lower() in _STOP:
                continue
            if re.search(r"[_./\d]|::|[a-z][A-Z]", word) or len(word) >= 8:
                found.add(word)
    return frozenset(found)


def line_starts(lines: Sequence[str]) -> list[int]:
    """Offset of each line in ``"\\n".join(lines)``."""
    starts = [0] * len(lines)
    pos = 0
    for i, line in enumerate(lines):
        starts[i] = pos
        pos += len(line) + 1
    return starts


def lines_matching(
    lines: Sequence[str],
    joined: str,
    starts: Sequence[int],
    triggers: Sequence[str],
    test: Callable[[str], object],
) -> set[int]:
    """Indexes of lines for which ``test`` is true, found fast.

    ``triggers`` are literals of which every match must contain one; a C-speed
    substring scan of ``joined`` for them picks the candidate lines, and only
    those run ``test``.
    """
    candidates: set[int] = set()
    half = len(lines) // 2
    for lit in triggers:
        pos = joined.find(lit)
        while pos >= 0:
            i = bisect_right(starts, pos) - 1
            candidates.add(i)
            nxt = starts[i + 1] if i + 1 < len(starts) else len(joined)
            pos = joined.find(lit, nxt)
        if len(candidates) > half:  # the scan no longer pays: test every line
            return {i for i, line in enumerate(lines) if test(line)}
    return {i for i in candidates if test(lines[i])}
