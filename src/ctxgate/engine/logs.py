"""Build, test and application logs: keep what went wrong, fold what repeats.

Lossless (levels ``lossless`` and ``balanced``): progress bars reduced to their
final frame, trailing whitespace removed, runs of identical lines folded into
one line plus a repeat note.

Lossy (``balanced``), each drop announced in place by ``omission_marker``:

* nested shell trace (``set -x`` lines at depth two or more, e.g. the inside of
  ``conda activate``) is setup noise: each run becomes one marker; top-level
  ``+ cmd`` lines stay, they say what the script did;
* lines that share a template (same text once numbers, ids, timestamps, paths
  and hex are masked) are folded when a template has five or more lines: the
  first and last line and the numeric extremes stay, with one marker naming the
  template; lines that start with two plain words and have the same shape
  (``Creating table x``, ``Requirement already satisfied: ...``) fold the same way;
* protected, never folded: the first and last lines, errors, failures,
  warnings and their context, stack traces and tracebacks, pytest failure
  sections, test result lines (pass or fail), summary lines, and lines naming
  a term from the request or the tool arguments. Of an error template that
  repeats, the first ten lines (three for warnings) keep their context; the
  rest fold like other lines, keeping first, last and extremes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import partial

from ctxgate.engine._api import Context, Original, Result, omission_marker, retrieval_key
from ctxgate.engine._lines import (
    DIGIT_OR_SLASH,
    Plan,
    fold_runs,
    line_starts,
    lines_matching,
    normalize,
    plan_templates,
    query_terms,
    template,
    templates,
    worth,
)

# Line classes. They run on lowercased lines (faster than IGNORECASE); severity only on
# lines that hold one of its trigger words (see ``lines_matching``).
_SEVERITY = re.compile(
    r"(?:errors?|fatal|severe|critical|panic(?:ked)?|exception|"
    r"fail(?:ed|ure|ures|s)?|warn(?:ing|ings)?|traceback|denied|refused|timed? ?out|abort(?:ed)?|"
    r"segfault|assert(?:ion)?(?:error)?)\b|^e[ \t]{2,}|^[ \t]*(?:raise|caused by:)[ \t]"
)
_SEVERITY_TRIGGERS = (
    "error",
    "fatal",
    "severe",
    "critical",
    "panic",
    "exception",
    "fail",
    "warn",
    "traceback",
    "denied",
    "refused",
    "timed out",
    "timeout",
    "time out",
    "abort",
    "segfault",
    "assert",
    "e  ",
    "e\t",
    "raise",
    "caused by",
)
#: test result, summary and stack-frame lines, matched at the line start ...
_KEEP_START = re.compile(
    r"(?:passed|failed|error|xfail|xpass|skipped)[ \t]"
    r"|[ \t]*[✓✔✕✗×√][ \t]"
    r"|[ \t]*--- (?:pass|fail|skip):"
    r"|(?:ok|fail|pass)[ \t]+\S+[ \t]+[\d.]+s"
    r"|test \S+ \.\.\. "
    r"|=+ .*\b(?:passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?|"
    r"no tests ran|failures|short test summary)\b"
    r"|ran \d+ tests? in|(?:ok|failed)\b(?: \(.*\))?$"
    r"|test result:|(?:pass|fail|ok)[ \t]*$|(?:pass|fail)[ \t]+\S+\.\w+\b"
    r"|(?:summary|total|finished|completed|done)\b"
    r"|[ \t]+at [\w$.<>/]+\(|[ \t]+\.\.\. \d+ more$|[ \t]+at .+:\d+:\d+\)?$"
)
#: the first characters a ``_KEEP_START`` match can begin with (a line starting otherwise is not tried)
_KEEP_FIRST = frozenset(" \t✓✔✕✗×√-=")
#: after leading blanks, the first character of a match (of the forms that allow blanks)
_KEEP_AFTER_BLANKS = frozenset("✓✔✕✗×√-a.")
#: ... or with these two (the other forms start with a word)
_KEEP_FIRST2 = frozenset(["pa", "fa", "er", "xf", "xp", "sk", "ok", "te", "ra", "su", "to", "fi", "co", "do"])
#: ... and anywhere in the line (no leading ``\b``: it makes the scan slow), each form with the
#: literals of which every match holds one, so that a substring scan finds its candidate lines
#: (one regex over every line of a test run, where "test" is on most lines, is slow)
_KEEP_ANY = (
    (
        re.compile(r"\.\.\. ?(?:ok|fail|error|skipped|expected failure|unexpected success|passed|failed)\b"),
        ("...",),
    ),
    (re.compile(r"::\S*[ \t]+(?:passed|failed|error|skipped|xfail|xpass)\b"), ("::",)),
    (
        re.compile(r"\d (?:passed|failed|tests?|examples?|failures?)\b"),
        (" passed", " fail", " test", " example"),  # " fail" finds " failed" and " failure"
    ),
    (re.compile(r"(?:tests?(?: run)?|suites?):[ \t]"), ("test:", "tests:", " run:", "suite")),
    (re.compile(r"build (?:success|failure|failed|successful)"), ("build ",)),
)


def _keep_lines(low: list[str], lowered: str, starts: list[int]) -> set[int]:
    """Indexes of the lowercased lines that are test results, summaries or stack frames."""
    found = {
        i
        for i, ln in enumerate(low)
        if (
            ln[:2] in _KEEP_FIRST2
            or (ln[:1] in _KEEP_FIRST and (ln[:1] not in " \t" or ln.lstrip(" \t")[:1] in _KEEP_AFTER_BLANKS))
        )
        and _KEEP_START.match(ln)
    }
    for pattern, triggers in _KEEP_ANY:
        found |= lines_matching(low, lowered, starts, triggers, pattern.search)
    return found


_XTRACE = re.compile(r"^(\++) ")
#: shell internals in a trace: assignments, tests, builtins, private ``_functions`` (not the
#: commands the script ran)
_XTRACE_INTERNAL = re.compile(
    r"^\++ (?:local\b|export\b|eval\b|\[|'\[|case\b|shift\b|unset\b|set\b|readonly\b|declare\b|"
    r"typeset\b|return\b|hash\b|: |_\w*\b|[A-Za-z_][A-Za-z0-9_]*=)"
)
_TIMESTAMP = re.compile(
    r"^\W{0,3}+(?:\d{2,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{6} \d{6}|\d{9,}|\d{2}:\d{2}:\d{2}[.,]\d{3}\b|"
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\w* )"
)
#: the letters a ``_TIMESTAMP`` match can start with when the line starts with a letter
_STAMP_LETTERS = frozenset("MTWFSJAOND")


def _may_be_stamped(line: str) -> bool:
    """False only where ``_TIMESTAMP`` cannot match: a line that starts with a letter (a word
    character, so no ``\\W`` is skipped) other than a day or month name's first."""
    first = line[:1]
    return not first.isalpha() or first in _STAMP_LETTERS


_LEVEL = re.compile(r"\b(?:INFO|DEBUG|TRACE|WARN|WARNING|ERROR|FATAL|SEVERE|NOTICE|CRITICAL)\b")
_LEVEL_TRIGGERS = ("INFO", "DEBUG", "TRACE", "WARN", "ERROR", "FATAL", "SEVERE", "NOTICE", "CRITICAL")
_MD_HEADING = re.compile(r"^#{1,6} \w")
_LEAD_WORD = re.compile(r"^(\s*)([A-Za-z]{3,})\s+(\S+)")
_SECTION = re.compile(r"^=+ .+ =+$")
_FAILURE_SECTION = re.compile(r"\b(?:FAILURES|ERRORS)\b")
_ENTRY = re.compile(r"^_{2,} .+ _{2,}$|^(?:ERROR|FAIL): \S")
_ENTRY_END = re.compile(r"^(?:={5,}|-{20,})(?: .* =+)?$")
_ERROR_LINE = re.compile(r"^E\s|^[A-Za-z_][\w.]*(?:Error|Exception|Failure)\b")

_EDGE = 3  # first and last lines always kept
#: occurrences of one error (warning) template kept with their context before the rest fold
_KEEP_ERRORS, _KEEP_WARNINGS = 10, 3
_WARNING_ONLY = re.compile(
    r"^(?!.*(?:error|fatal|severe|critical|panic|exception|fail|traceback|denied|refused|abort|segfault))"
    r".*warn"
)
_CONTEXT = 2  # lines kept on each side of a rare error
#: a request term protects the lines naming it unless it is on more than this share of them
_TERM_SHARE, _TERM_MIN = 0.3, 20
_FREE, _ERROR, _KEPT = 0, 1, 2


class LogCompressor:
    name = "logs"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.85
    min_tokens = 100

    def score(self, text: str, ctx: Context) -> float:
        sample = text[:20000].split("\n")[:300]
        lines = [ln for ln in sample if ln.strip()]
        if len(lines) < 5:
            return -1.0
        joined = "\n".join(lines)
        starts = line_starts(lines)
        levels = lines_matching(lines, joined, starts, _LEVEL_TRIGGERS, _LEVEL.search)
        stamped = len(levels | {i for i, ln in enumerate(lines) if _may_be_stamped(ln) and _TIMESTAMP.match(ln)})
        if stamped < 0.3 * len(lines) and sum(1 for ln in lines if ln[:1] == "#" and _MD_HEADING.match(ln)) >= 2:
            return -1.0  # a markdown document that talks about tests is prose
        low = [ln.lower() for ln in lines]
        tests = len(_keep_lines(low, "\n".join(low), line_starts(low)))  # lower() may change lengths
        traced = sum(1 for ln in lines if ln[:1] == "+" and _XTRACE.match(ln))
        frac = (stamped + 2 * tests + traced) / len(lines)
        if frac < 0.2:
            # no stamps, levels or test lines: still a log when most lines are one of a few
            # templates (``Requirement already satisfied: ...``, ``Cloning test database ...``)
            # and it is not laid out in paragraphs (a test report with blank-line separated
            # entries reads better as prose, whose near-duplicate rule keeps each entry's lines)
            if len(lines) < (1 - _PARAGRAPHED) * len(sample) or _repetition_bound(lines) < _REPETITIVE:
                return -1.0
            rep = _repetition(lines)
            return 0.35 + rep / 4 if rep >= _REPETITIVE else -1.0
        return min(0.85, 0.35 + frac / 2)

    def compress(self, text: str, ctx: Context) -> Result:
        lines, stats = normalize(text)
        transforms = [f"logs:{k}" for k, v in stats.items() if v]
        if ctx.level != "balanced":
            out, folded = fold_runs(lines)
            if folded:
                transforms.append("logs:runs")
            return Result("\n".join(out), tuple(transforms))
        if _nothing_to_fold(lines):
            return Result("\n".join(lines), tuple(transforms))  # what the plan below would give
        key = retrieval_key(text)
        plan = Plan()
        lazy = _Templates(lines)
        keep = _protected(lines, lazy, ctx)
        _plan_xtrace(lines, keep, key, plan)
        _plan_failure_repeats(lines, lazy, key, plan)
        # the groupings below read the templates of lines not planned away yet, and only those
        drop = plan.drop
        tpls = lazy.listed(i for i in range(len(lines)) if i not in drop)
        free = [k == _FREE for k in keep]
        plan_templates(lines, free, key, plan, keys=tpls)
        loose = [
            _loose_key(ln, t) if f and i not in drop else ""
            for i, (ln, t, f) in enumerate(zip(lines, tpls, free, strict=True))
        ]
        plan_templates(lines, free, key, plan, keys=loose)
        errors = [k == _ERROR for k in keep]
        plan_templates(lines, errors, key, plan, keys=tpls, min_group=6, what="error/warning lines")
        if plan.drop:
            transforms.append("logs:templates")
        out, folded = fold_runs(plan.render(lines))
        if folded:
            transforms.append("logs:runs")
        originals = (Original(key, text),) if plan.drop else ()
        return Result("\n".join(out), tuple(transforms), originals)


#: share of lines in repeated templates from which text without other log signs is a log
_REPETITIVE = 0.4
_WORDY = re.compile(r"[A-Za-z]{3}")
#: share of blank lines from which repetitive text counts as laid out in paragraphs
_PARAGRAPHED = 0.2


def _repetition(lines: list[str]) -> float:
    """Share of ``lines`` whose template (or, for lines that start with words, loose shape)
    is shared by at least four others: the mark of machine output (installers, test
    runners, build steps), which prose and code rarely have."""
    tpls = templates(lines)
    # a line that is all variable parts (a path list, ``12-`` grep context) is no template
    keys = [(t, _loose_key(ln, t)) for ln, t in zip(lines, tpls, strict=True) if _WORDY.search(t)]
    exact = Counter(t for t, _ in keys)
    loose = Counter(k for _, k in keys)
    return sum(1 for t, k in keys if exact[t] >= 5 or loose[k] >= 5) / len(lines)


def _repetition_bound(lines: list[str]) -> float:
    """An upper bound of ``_repetition(lines)``, without templating whole lines.

    Lines that share a template, or a loose key, have as many words and the same first word
    once templated (``_shape``): a line whose shape is shared by fewer than four others is in
    no group of five.
    """
    shapes = Counter(_shape(ln) for ln in lines)
    return sum(n for n in shapes.values() if n >= 5) / len(lines)


def _shape(line: str) -> tuple[int, str]:
    """Word count and templated first word: what a line's template and loose key both keep
    (templating masks runs of word characters inside words, never across a blank)."""
    words = line.split()
    first = words[0] if words else ""
    # a word of letters only holds no digit or slash: not searched
    return len(words), first if first.isalpha() or not DIGIT_OR_SLASH.search(first) else template(first)


def _nothing_to_fold(lines: list[str]) -> bool:
    """Whether the lossy plan cannot drop a line nor ``fold_runs`` fold one: no trace line,
    fewer than two failure entries, no three equal lines in a row, and no shape shared by
    five lines (every template group, loose or not, has five lines of one shape)."""
    seen: dict[tuple[int, str], int] = {}
    for line in lines:
        if line:
            shape = _shape(line)
            n = seen[shape] = seen.get(shape, 0) + 1
            if n >= 5:
                return False
    entries = 0
    for line in lines:
        if line.startswith("+"):
            return False
        if (line.startswith("_") or line[:5] in ("ERROR", "FAIL:")) and _ENTRY.match(line):
            entries += 1
    return entries < 2 and not any(a == b == c and a for a, b, c in zip(lines, lines[1:], lines[2:], strict=False))


def _loose_key(line: str, tpl: str) -> str:
    """Shape key for lines that start with a plain word: ``Creating table <*>``.

    The first word, the second when it is a plain word, the token count and a
    short plain last word (``OK``, ``done``) must agree; other tokens may differ.
    Lines that start otherwise (timestamps, numbers) keep their exact template.
    """
    m = _LEAD_WORD.match(line)
    if not m or m.group(3)[:1].isdigit():
        return tpl
    parts = line.split()
    second = m.group(3) if m.group(3).isalpha() else "<*>"
    last = parts[-1] if len(parts) > 2 and parts[-1].isalpha() and len(parts[-1]) <= 8 else ""
    middle = " <*>" * (len(parts) - 2 - (1 if last else 0))
    return f"{m.group(1)}{m.group(2)} {second}{middle}{' ' + last if last else ''}"


def _names(term: str, line: str) -> bool:
    return term in line


class _Templates:
    """The ``template`` of each line, made when first needed: a trace that the plan drops
    (most of a ``set -x`` setup) is never templated. ``fill`` makes many in one regex pass."""

    __slots__ = ("_lines", "_done")

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines
        self._done: list[str | None] = [None] * len(lines)

    def __getitem__(self, i: int) -> str:
        t = self._done[i]
        if t is None:
            t = self._done[i] = template(self._lines[i])
        return t

    def fill(self, indexes: Iterable[int]) -> None:
        todo = [i for i in indexes if self._done[i] is None]
        for i, t in zip(todo, templates([self._lines[i] for i in todo]), strict=True):
            self._done[i] = t

    def listed(self, indexes: Iterable[int]) -> list[str]:
        """Every template, made for ``indexes`` (``""`` for the lines not asked for)."""
        self.fill(indexes)
        return [t or "" for t in self._done]

    def counts(self) -> Counter[str]:
        self.fill(range(len(self._lines)))
        return Counter(t or "" for t in self._done)


def _protected(lines: list[str], tpls: _Templates, ctx: Context) -> list[int]:
    """Per line: ``_FREE``, ``_ERROR`` (an error line that may fold when it repeats), ``_KEPT``."""
    n = len(lines)
    keep = [_FREE] * n
    low = [ln.lower() for ln in lines]
    lowered = "\n".join(low)
    starts = line_starts(low)  # not ``lines``: lower() may change a line's length ("İ")
    severe = lines_matching(low, lowered, starts, _SEVERITY_TRIGGERS, _SEVERITY.search)
    tpls.fill(sorted(severe))
    for i in _keep_lines(low, lowered, starts):
        keep[i] = _KEPT
    counts: Counter[str] | None = None  # of every line's template: only when an error repeats
    in_trace = in_failures = False
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        if line.startswith("+") and _XTRACE.match(line):
            if line.startswith("+ ") and not _XTRACE_INTERNAL.match(line):
                keep[i] = _KEPT
            continue
        if line.startswith("Traceback (most recent call last)"):
            in_trace = True
        elif in_trace and line and not line[0].isspace() and not line.startswith("During"):
            in_trace = False
            keep[i] = _KEPT  # the exception line that ends the traceback
        if line.startswith("=") and _SECTION.match(line):
            in_failures = _FAILURE_SECTION.search(line) is not None
        if in_trace or in_failures:
            keep[i] = _KEPT
        elif i in severe:
            tpl = tpls[i]
            seen[tpl] = seen.get(tpl, 0) + 1
            limit = _KEEP_WARNINGS if _WARNING_ONLY.search(low[i]) else _KEEP_ERRORS
            if seen[tpl] > limit and (counts := counts or tpls.counts())[tpl] >= 5:
                keep[i] = max(keep[i], _ERROR)
            else:
                keep[i] = _KEPT
                for j in range(max(0, i - _CONTEXT), min(n, i + _CONTEXT + 1)):
                    if keep[j] != _KEPT and not _XTRACE.match(lines[j]):
                        keep[j] = _KEPT
    terms = query_terms(ctx)
    joined, line_at = ("\n".join(lines), line_starts(lines)) if terms else ("", [])
    for t in sorted(terms):
        hits = lines_matching(lines, joined, line_at, (t,), partial(_names, t))  # the lines naming t
        if len(hits) <= max(_TERM_MIN, _TERM_SHARE * n):
            for i in hits:  # a term on most lines (the project path in every pip line) tells nothing
                keep[i] = _KEPT
    for i in [*range(min(_EDGE, n)), *range(max(0, n - _EDGE), n)]:
        keep[i] = _KEPT
    return keep


def _plan_xtrace(lines: list[str], keep: list[int], key: str, plan: Plan) -> None:
    """Drop runs of shell-internal ``set -x`` lines, with their multi-line quoted values."""
    n = len(lines)
    i = 0
    while i < n:
        m = _XTRACE.match(lines[i]) if lines[i][:1] == "+" else None
        if not m or keep[i] == _KEPT or not _droppable_trace(lines[i], m):
            i += 1
            continue
        start = i
        open_quote = False
        while i < n:
            m = _XTRACE.match(lines[i])
            if not open_quote and (not m or keep[i] == _KEPT or not _droppable_trace(lines[i], m)):
                break
            if lines[i].count("'") % 2:
                open_quote = not open_quote
            i += 1
        what = "shell trace of nested calls and variable set-up (set -x)"
        marker = omission_marker(i - start, n, "lines", what, key)
        if i - start >= 3 and worth(lines[start:i], marker):
            plan.drop.update(range(start, i))
            plan.mark(i - 1, marker)


def _droppable_trace(line: str, m: re.Match[str]) -> bool:
    return len(m.group(1)) >= 2 or _XTRACE_INTERNAL.match(line) is not None


def _plan_failure_repeats(lines: list[str], tpls: _Templates, key: str, plan: Plan) -> None:
    """Failure entries (pytest ``____ name ____``, unittest ``ERROR: name``) whose error
    lines (``E ...``, ``FooError: ...``; the whole body when there are none) repeat an
    earlier entry's, once numbers and ids are masked, keep their header line only."""
    starts = [
        i
        for i, ln in enumerate(lines)
        if (ln.startswith("_") or ln[:5] in ("ERROR", "FAIL:")) and _ENTRY.match(ln)
    ]
    seen: dict[tuple[str, ...], str] = {}
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(lines)
        for j in range(start + 1, min(end, len(lines) - 1)):
            if _ENTRY_END.match(lines[j]) and not lines[j + 1].startswith(("ERROR", "FAIL")):
                end = j
                break
        if end - start < 5:
            continue
        tpls.fill(range(start + 1, end))
        body = tuple(tpls[j] for j in range(start + 1, end) if _ERROR_LINE.match(lines[j]))
        if not body:
            body = tuple(tpls[j] for j in range(start + 1, end))
        first = seen.get(body)
        if first is None:
            seen[body] = lines[start].strip("_ ")
            continue
        what = f"same error as {first[:120]}"
        marker = omission_marker(end - start - 1, end - start - 1, "lines", what, key)
        if worth(lines[start + 1 : end], marker):
            plan.drop.update(range(start + 1, end))
            plan.mark(start, marker)
