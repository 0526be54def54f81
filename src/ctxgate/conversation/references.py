"""References: text a tool output repeats from the conversation, replaced by a pointer to it.

Three kinds, all lossless for the model (the text it points at is in the same request, byte
for byte) and each carrying a retrieval key for the original:

- a **duplicate**: an output identical to an earlier one;
- a **repeat**: a run of lines of an earlier output (a re-run test suite, a polled task, a
  file read again after a small edit);
- an **echo**: a run of lines of a string argument of the output's own tool call (a Write
  that prints the file it wrote, numbered like ``cat -n``; a plan tool that repeats the plan).
  Tool-call inputs are never changed, so what an echo points at always goes upstream as sent.

Which outputs may hold which references is the pipeline's decision (a protected output or
file read may point only at text that went upstream exactly; see ``Policy.protected_runs``).
Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ctxgate.conversation._base import Block, ToolCall
from ctxgate.conversation.policy import arguments

#: a duplicate output shorter than this (tokens) is kept: the reference would not pay
DEDUP_MIN_TOKENS = 40
#: a run of repeated lines is referenced only from this many lines
MIN_LINES = 8
#: earlier outputs searched for repeated runs of lines (the most recent ones)
LOOKBACK = 100
#: lines a protected output may keep besides its references and still count as a whole copy
WHOLE_SLACK = 2
#: a line found at more places than this in the earlier text does not start a run (a blank line,
#: a lone brace); runs still extend through such lines. Bounds the work per output line.
_MAX_ANCHORS = 8
#: a line-number prefix as ``cat -n``, ``nl`` and editors' file views print it ("     1→", "    12\t")
_NUMBER_PREFIX = re.compile(r"( *)(\d+)(→|\t)")


def duplicates(blocks: list[Block]) -> dict[int, Block]:
    """Block index -> the first earlier block with exactly the same text."""
    first: dict[str, Block] = {}
    out: dict[int, Block] = {}
    for b in blocks:
        seen = first.get(b.text)
        if seen is None:
            first[b.text] = b
        elif b.text:
            out[b.index] = seen
    return out


def duplicate_marker(first: Block, key: str) -> str:
    return f"[same output as {_where(first)} above; retrieve: {key}]"


@dataclass(frozen=True, slots=True)
class Repeat:
    """Lines ``[start, end)`` of an output are lines ``[first_start, first_start + end - start)`` of
    ``first``'s text as it went upstream (itself with references in it, or compressed, perhaps),
    or, ``shown`` False, of its full text, which went upstream shortened (a lossy reference: the
    model has only what the earlier output kept; the retrieval key brings the rest back)."""

    first: Block
    first_start: int
    start: int
    end: int
    shown: bool = True

    def marker(self, call: ToolCall | None, key: str) -> str:
        a, b = self.first_start + 1, self.first_start + self.end - self.start
        if self.shown:
            where = f"the output of {_where(self.first)} above"
        else:
            where = f"the full output of {_where(self.first)}, shortened above"
        return f"[{self.end - self.start} lines same as lines {a}-{b} of {where}; retrieve: {key}]"


@dataclass(frozen=True, slots=True)
class Echo:
    """Lines ``[start, end)`` of an output repeat lines ``[arg_start, arg_start + end - start)`` of
    the string argument ``name`` of a tool call, each behind the line number ``number + i``
    formatted ``f"{n:>{width}}{sep}"`` (``number`` None: behind nothing). The call is the
    output's own (``call_id`` None) or the earlier call ``call_id`` to tool ``tool``."""

    name: str
    arg_start: int
    start: int
    end: int
    number: int | None = None
    width: int = 0
    sep: str = ""
    call_id: str | None = None
    tool: str = ""

    def prefix(self, n: int) -> str:
        return "" if self.number is None else f"{n:>{self.width}}{self.sep}"

    def marker(self, call: ToolCall | None, key: str) -> str:
        k = self.end - self.start
        if self.call_id is not None:
            whose = f"the {self.tool} call {self.call_id} above"
        else:
            whose = f"this {call.name} call" if call is not None else "this call"
        what = f'lines {self.arg_start + 1}-{self.arg_start + k} of the "{self.name}" argument of {whose}'
        if self.number is None:
            return f"[{k} lines: {what}, verbatim; retrieve: {key}]"
        shown = self.prefix(self.number).replace("\t", "<tab>")
        return f'[{k} lines numbered {self.number}-{self.number + k - 1} in the form "{shown}": {what}; retrieve: {key}]'


Reference = Repeat | Echo
_R = TypeVar("_R", Repeat, Echo, Reference)


class Indexed:
    """Lines with the places of each line, made once for text that many outputs are compared with."""

    __slots__ = ("lines", "where")

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.where: dict[str, list[int]] = defaultdict(list)
        for j, line in enumerate(lines):
            self.where[line].append(j)


def shared_runs(
    earlier: list[str] | Indexed, lines: list[str], min_lines: int = MIN_LINES
) -> list[tuple[int, int, int]]:
    """Runs ``(earlier_start, start, size)`` of at least ``min_lines`` equal lines, in the order of
    ``lines``, not overlapping there; at each place the longest run wins.

    A run starts at a line found at most ``_MAX_ANCHORS`` times in ``earlier`` and extends both
    ways through any lines, so the work is linear in ``lines`` however repetitive the text is.
    """
    index = earlier if isinstance(earlier, Indexed) else Indexed(earlier)
    earlier, where = index.lines, index.where
    out: list[tuple[int, int, int]] = []
    done = 0  # lines before this one belong to a run already
    i, n, m = 0, len(lines), len(earlier)
    while i < n:
        anchors = where.get(lines[i], ())
        best = None
        if 0 < len(anchors) <= _MAX_ANCHORS:
            for j in anchors:
                back = 0
                while i - back > done and j - back > 0 and earlier[j - back - 1] == lines[i - back - 1]:
                    back += 1
                size = back
                while (
                    i + size - back < n
                    and j + size - back < m
                    and earlier[j + size - back] == lines[i + size - back]
                ):
                    size += 1
                if best is None or size > best[2]:
                    best = (j - back, i - back, size)
        if best is not None and best[2] >= min_lines:
            out.append(best)
            done = i = best[1] + best[2]
        else:
            i += 1
    return out


def repeated_lines(
    block: Block, earlier: Sequence[tuple[Block, str]], unshown: Sequence[tuple[Block, str]] = ()
) -> list[Repeat]:
    """Runs of at least ``MIN_LINES`` lines this output shares with the ``LOOKBACK`` most recent
    earlier outputs, each given with the text that went upstream for it (``unshown``: with its
    full text, for outputs that went upstream shortened): the longest first, not overlapping, in
    the order of the output. Line numbers in a ``Repeat`` are those of that text."""
    lines = block.text.split("\n")
    if len(lines) < MIN_LINES:
        return []
    wanted = set(lines)
    found: list[Repeat] = []
    # on a tie what was shown wins, then the most recent
    sources = [(e, t, True) for e, t in reversed(earlier[-LOOKBACK:])]
    sources += [(e, t, False) for e, t in reversed(unshown[-LOOKBACK:])]
    for e, text, shown in sources:
        other = text.split("\n")
        if len(other) < MIN_LINES or len(wanted.intersection(other)) < MIN_LINES:
            continue
        found += [Repeat(e, a, b, b + size, shown) for a, b, size in shared_runs(other, lines)]
    return _disjoint(found)


class Calls:
    """A request's tool calls, in message order, with their multi-line string arguments split and
    indexed on first use (once per request, however many outputs are compared with them)."""

    def __init__(
        self, calls: Iterable[ToolCall], cache: dict[str, tuple[str, list[tuple[str, Indexed]]]] | None = None
    ) -> None:
        # a JSON argument with a line break in it has the two characters \n in its text
        self._calls = sorted((c for c in calls if "\\n" in c.args or "\n" in c.args), key=lambda c: c.message)
        #: call id -> (its arguments' text, the arguments split and indexed); pass the dict of the
        #: session's previous request to reuse its work (an entry counts only for the same text)
        self.cache = {} if cache is None else cache

    def before(self, message: int) -> list[ToolCall]:
        """The calls made before message ``message`` that may have a multi-line argument."""
        return [c for c in self._calls if c.message < message]

    def args(self, call: ToolCall) -> list[tuple[str, Indexed]]:
        """The call's top-level string arguments of at least ``MIN_LINES`` lines."""
        got = self.cache.get(call.id)
        if got is not None and got[0] == call.args:
            return got[1]
        args = [
            (name, Indexed(value.split("\n")))
            for name, value in arguments(call).items()
            if isinstance(value, str) and value.count("\n") + 1 >= MIN_LINES
        ]
        self.cache[call.id] = (call.args, args)
        return args


class _Output:
    """An output's lines, split once for every call it is compared with: as they are, and without
    their line-number prefixes (``form``: the prefix form, None when no line has one)."""

    __slots__ = ("bare", "bare_set", "form", "line_set", "lines")

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.line_set = set(self.lines)
        self.bare, self.form = _unnumbered(self.lines)
        self.bare_set = set(self.bare) if self.form is not None else self.line_set


def _shares(arg: Indexed, lines: set[str]) -> bool:
    """At least ``MIN_LINES`` distinct lines of ``arg`` are in ``lines`` (or all of them are)."""
    hits = 0
    for line in arg.where:
        hits += line in lines
        if hits >= MIN_LINES:
            return True
    return hits == len(arg.where) and hits > 0


def echoed_arguments(
    block: Block,
    call: ToolCall | None,
    *,
    own: bool = True,
    calls: Calls | None = None,
    out: _Output | None = None,
) -> list[Echo]:
    """Runs of at least ``MIN_LINES`` lines of this output that repeat a string argument of
    ``call`` (its own call, or with ``own`` False an earlier one), plainly or numbered line by
    line as ``cat -n`` prints a file: the longest first, not overlapping, in output order.

    Every line of a run is checked exactly: ``prefix(number + i) + argument line`` equals output
    line ``start + i``, so the reference rebuilds the output byte for byte.
    """
    if call is None:
        return []
    args = (calls or Calls([call])).args(call)
    if not args or block.text.count("\n") + 1 < MIN_LINES:
        return []
    out = out or _Output(block.text)
    found: list[Echo] = []
    for name, arg in args:
        if _shares(arg, out.line_set):
            found += [Echo(name, a, b, b + size) for a, b, size in shared_runs(arg, out.lines)]
        if out.form is not None and _shares(arg, out.bare_set):
            for a, b, size in shared_runs(arg, out.bare):
                found += _numbered_runs(out.lines, name, a, b, size, out.form)
    if not own:
        found = [dataclasses.replace(e, call_id=call.id, tool=call.name) for e in found]
    return _disjoint(found)


def _unnumbered(lines: list[str]) -> tuple[list[str], tuple[int, str] | None]:
    """Each line without a number prefix, and the prefix form (width, separator) of the first
    numbered line (None when no line has one)."""
    form: tuple[int, str] | None = None
    out = []
    for line in lines:
        m = _NUMBER_PREFIX.match(line)
        if m is None:
            out.append(line)
            continue
        if form is None:
            form = (len(m.group(1)) + len(m.group(2)), m.group(3))
        out.append(line[m.end() :])
    return out, form


def _numbered_runs(
    lines: list[str], name: str, a: int, b: int, size: int, form: tuple[int, str]
) -> list[Echo]:
    """Within ``size`` lines from ``b`` whose text after the number matches the argument from
    ``a``: the runs of at least ``MIN_LINES`` lines numbered consecutively in the form ``form``."""
    width, sep = form
    out: list[Echo] = []
    start: int | None = None
    first = 0

    def close(i: int) -> None:
        if start is not None and i - start >= MIN_LINES:
            out.append(Echo(name, a + start, b + start, b + i, first, width, sep))

    for i in range(size):
        line = lines[b + i]
        m = _NUMBER_PREFIX.match(line)
        n = int(m.group(2)) if m is not None else -1
        if m is None or line[: m.end()] != f"{n:>{width}}{sep}":
            close(i)
            start = None
            continue
        if start is not None and n != first + (i - start):  # the numbering jumps: a new run
            close(i)
            start = None
        if start is None:
            start, first = i, n
    close(size)
    return out


def _disjoint(found: Sequence[_R]) -> list[_R]:
    """The longest runs first (on a tie the one found first), not overlapping, in output order."""
    taken: list[_R] = []
    for _, r in sorted(enumerate(found), key=lambda kr: (kr[1].start - kr[1].end, kr[0])):
        if all(r.end <= t.start or r.start >= t.end for t in taken):
            taken.append(r)
    return sorted(taken, key=lambda r: r.start)


def references(
    block: Block,
    call: ToolCall | None,
    earlier: Sequence[tuple[Block, str]] | None,
    calls: Calls | None = None,
    *,
    whole: bool = False,
    unshown: Sequence[tuple[Block, str]] = (),
    exact: Sequence[tuple[Block, str]] = (),
) -> list[Reference]:
    """The runs of this output the request already holds byte for byte: echoes of its own call's
    arguments, echoes of the arguments of the ``LOOKBACK`` most recent earlier ``calls``, and
    (``earlier`` given) repeats of earlier outputs as sent (and of the full text of ``unshown``
    ones, which went upstream shortened: lossy); the longest first, not overlapping, in output order.

    ``whole``: references beyond the own call's echoes count only when they leave the output no
    gap, but for at most ``WHOLE_SLACK`` lines at its start or end: echoes of earlier calls that
    cover it together (a file read that is a whole copy of a file the agent wrote, not a read
    that shares some lines with it), or one run of one of the ``exact`` earlier outputs (those
    that went upstream byte for byte) that is the whole output but for at most ``WHOLE_SLACK``
    lines at its ends that the same output also has (an agent's envelope such as ``<output>``):
    a read of lines the agent read before and has not changed since. So the model finds the
    whole text in one place.
    """
    calls = calls or Calls([call] if call is not None else [])
    out = _Output(block.text)
    found: list[Reference] = [*echoed_arguments(block, call, calls=calls, out=out)]
    if earlier:
        found += repeated_lines(block, earlier, unshown)  # after the own call's echoes: those win a tie
    others = [c for c in calls.before(block.message) if c is not call][-LOOKBACK:]
    wider: list[Reference] = [*found]  # on a tie the output's own call, then the most recent call
    for c in reversed(others):
        wider += echoed_arguments(block, c, own=False, calls=calls, out=out)
    wider = _disjoint(wider)
    if not whole:
        return wider
    n = block.text.count("\n") + 1
    found = _disjoint(found)
    if others and _covers(wider, n):
        return wider
    if exact and not _covers(found, n):
        lines = block.text.split("\n")
        texts = {e.index: text for e, text in exact}
        for r in repeated_lines(block, exact):
            edges = lines[: r.start] + lines[r.end :]  # an envelope ("<output>", "</output>") at most
            if _covers([r], n) and set(edges) <= set(texts[r.first.index].split("\n")):
                return [r]
    return found


def copy_sources(block: Block, texts: Sequence[tuple[Block, str]]) -> list[tuple[Block, str]]:
    """The earlier outputs that may hold this one whole (``references``'s ``exact``): those with
    its longest line and its lines just inside the slack at both ends. Substring tests, to spare
    the full search for the outputs that cannot be copies (most of them)."""
    lines = block.text.split("\n")
    if len(lines) < MIN_LINES:
        return []
    probes = {max(lines, key=len), lines[WHOLE_SLACK], lines[-1 - WHOLE_SLACK]}
    return [(e, text) for e, text in texts if all(p in text for p in probes)]


def _covers(found: Sequence[Reference], n: int) -> bool:
    """The runs (in output order) cover ``n`` lines without a gap, but for at most ``WHOLE_SLACK``
    lines before the first or after the last (a header such as "The file ... has been updated")."""
    if not found or any(a.end != b.start for a, b in zip(found, found[1:], strict=False)):
        return False
    return found[0].start + n - found[-1].end <= WHOLE_SLACK


def reference_text(
    block: Block,
    call: ToolCall | None,
    refs: list[Reference],
    key: str,
    fill: Callable[[str], str] | None = None,
) -> str:
    """The output with each referenced run replaced by its marker line; ``fill`` (given) rewrites
    the text between the markers, each stretch on its own (the engine, for an unprotected output)."""
    lines = block.text.split("\n")
    out: list[str] = []
    pos = 0
    for r in [*refs, None]:
        end = len(lines) if r is None else r.start
        if end > pos:
            gap = "\n".join(lines[pos:end])
            out.append(fill(gap) if fill is not None else gap)
        if r is not None:
            out.append(r.marker(call, key))
            pos = r.end
    return "\n".join(out)


def _where(block: Block) -> str:
    return f"tool call {block.tool_id}" if block.tool_id else "an earlier tool call"
