"""Which items of a long list of records to keep, shared by JSON arrays, NDJSON and tables.

A record is a flat mapping of field path to scalar (``{"status.phase": "Running"}``)
plus its text. Kept, in this order of priority:

1. the first two and the last item (where a reader looks first);
2. items with error words or error-like fields (``error``, ``failed``, ``exit_code: 1``);
3. items matching the request (terms from ``ctx.query`` and ``ctx.tool_args`` that pick
   out few items; a term that matches most items says nothing);
4. anomalies: the only item with a value of a low-cardinality field ("exactly one
   has type == X"), the items with the largest and smallest value of each numeric field,
   items whose set of fields is rare;
5. an even sample of the rest, up to the budget.

Everything else becomes one omission marker per gap, in place. The summary says what
the omitted items had in common ("all type=PushEvent").
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ctxgate.engine._api import Context

Scalar = str | int | float | bool | None

#: error words in values; matched case-insensitively on word boundaries
ERROR_WORDS = re.compile(
    r"\b(?:error|errors|errored|fail|failed|failing|failure|fatal|exception|panic|traceback|denied|"
    r"refused|timeout|timed out|crash(?:ed|loopbackoff)?|oomkilled|unauthorized|forbidden|"
    r"unhealthy|backoff|evicted|critical|segfault|abort(?:ed)?)\b",
    re.I,
)
#: cheap substring pre-check: ERROR_WORDS can only match where one of these occurs
_ERROR_STEMS = (
    "err",
    "fail",
    "fatal",
    "exception",
    "panic",
    "traceback",
    "denied",
    "refused",
    "time",
    "crash",
    "oomkilled",
    "unauthorized",
    "forbidden",
    "unhealthy",
    "backoff",
    "evicted",
    "critical",
    "segfault",
    "abort",
)
_ERROR_KEYS = re.compile(r"(?:^|[._])(?:error|errors|exception|failure|failures|stderr)$", re.I)
_STATUS_KEYS = re.compile(r"(?:^|[._])(?:status|state|level|severity|conclusion|result|outcome|phase)$", re.I)
_BAD_STATUS = re.compile(
    r"^(?:error|err|fail|failed|failure|fatal|critical|crit|alert|emerg|warn|warning|cancelled|"
    r"canceled|timed_out|timeout|unknown|pending|crashloopbackoff|false|unhealthy|degraded|down)$",
    re.I,
)
_TERM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:/-]{2,}")
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "into",
        "what",
        "which",
        "when",
        "where",
        "show",
        "list",
        "get",
        "all",
        "are",
        "was",
        "were",
        "has",
        "have",
        "not",
        "but",
        "you",
        "your",
        "can",
        "any",
        "how",
        "why",
        "who",
        "does",
        "did",
        "use",
        "using",
        "http",
        "https",
        "www",
        "com",
        "json",
        "true",
        "false",
        "null",
        "none",
        "curl",
        "api",
        "post",
        "put",
        "delete",
        "head",
        "items",
        "item",
        "data",
        "page",
        "per",
    ]
)

#: lists up to this long are kept whole
KEEP_ALL = 12


@dataclass(frozen=True, slots=True)
class Selection:
    kept: tuple[int, ...]
    #: what the omitted items have in common, e.g. ``"all type=PushEvent"``; may be empty
    summary: str

    def gaps(self, n: int) -> list[tuple[int, int]]:
        """(start, stop) index ranges of omitted items, in order."""
        out: list[tuple[int, int]] = []
        prev = -1
        for i in (*self.kept, n):
            if i - prev > 1:
                out.append((prev + 1, i))
            prev = i
        return out


def budget(n: int) -> int:
    """How many items to keep of ``n``: all up to KEEP_ALL, then slowly growing."""
    if n <= KEEP_ALL:
        return n
    return min(n, 8 + math.ceil(math.sqrt(n)))


def request_terms(ctx: Context) -> tuple[str, ...]:
    """Lower-cased search terms from the request text and the tool call's arguments."""
    texts: list[str] = []
    if ctx.query:
        texts.append(ctx.query)
    if ctx.tool_args:
        try:
            args = json.loads(ctx.tool_args)
        except ValueError:
            texts.append(ctx.tool_args)
        else:
            texts.extend(_strings(args))
    seen: dict[str, None] = {}
    for text in texts:
        for t in _TERM.findall(text[:4000]):
            t = t.strip(".:/-").lower()
            if len(t) >= 3 and t not in _STOP and not t.isdigit():
                seen.setdefault(t, None)
    return tuple(seen)[:40]


def _strings(v: object) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in _strings(x)]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


def _key_kind(path: str) -> int:
    """0: plain, 1: error field, 2: status field, 3: exit code, 4: HTTP status code."""
    if _ERROR_KEYS.search(path):
        return 1
    if _STATUS_KEYS.search(path):
        return 2
    last = path.rsplit(".", 1)[-1].lower()
    if last in ("exit_code", "exitcode", "returncode", "return_code"):
        return 3
    if last in ("status_code", "statuscode", "http_status"):
        return 4
    return 0


def is_error(fields: Mapping[str, Scalar], kinds: dict[str, int] | None = None) -> bool:
    """Whether a record looks like an error: error words, an error field, a bad status or exit code.

    ``kinds`` caches the kind of each field path across the records of one list.
    """
    kinds = {} if kinds is None else kinds
    strings: list[str] = []
    for path, value in fields.items():
        kind = kinds.get(path)
        if kind is None:
            kind = kinds[path] = _key_kind(path)
        if isinstance(value, str):
            strings.append(value[:2000])
        if kind == 0:
            continue
        if kind == 1 and value not in (None, False, "", 0, "null"):
            return True
        if kind == 2 and isinstance(value, str) and _BAD_STATUS.match(value.strip()):
            return True
        number = isinstance(value, int) and not isinstance(value, bool)
        if number and ((kind == 3 and value != 0) or (kind == 4 and value >= 400)):  # type: ignore[operator]
            return True
    if not strings:
        return False
    joined = "\n".join(strings)
    low = joined.lower()
    return any(stem in low for stem in _ERROR_STEMS) and ERROR_WORDS.search(joined) is not None


def select(
    records: Sequence[Mapping[str, Scalar]],
    texts: Sequence[str],
    ctx: Context,
    keysets: Sequence[frozenset[str]] | None = None,
) -> Selection:
    """Choose the items of a long list to keep (see the module docstring)."""
    n = len(records)
    want = budget(n)
    if want >= n:
        return Selection(tuple(range(n)), "")
    must: dict[int, None] = dict.fromkeys((0, 1, n - 1))
    important: dict[int, None] = {}
    kinds: dict[str, int] = {}
    for i, rec in enumerate(records):
        if is_error(rec, kinds):
            important[i] = None
    terms = request_terms(ctx)
    if terms:
        lowered = [t.lower() for t in texts]
        for term in terms:
            hits = [i for i, t in enumerate(lowered) if term in t]
            if 0 < len(hits) <= max(1, n // 5):
                important.update(dict.fromkeys(hits))
    important.update(dict.fromkeys(_anomalies(records)))
    if keysets is not None:
        freq = Counter(keysets)
        common = freq.most_common(1)[0][0] if freq else frozenset()
        for i, ks in enumerate(keysets):
            if ks != common and freq[ks] <= max(1, n // 10):
                important[i] = None
    chosen = dict(must)
    cap = max(want, n // 2)
    for i in important:
        if len(chosen) >= cap:
            break
        chosen[i] = None
    if len(chosen) < want:
        slots = want - len(chosen)
        step = n / (slots + 1)
        for k in range(1, slots + 1):
            i = min(n - 1, int(k * step))
            while i in chosen and i < n - 1:
                i += 1
            chosen[i] = None
    kept = tuple(sorted(chosen))
    if len(kept) >= n - 1:
        return Selection(tuple(range(n)), "")
    dropped = [records[i] for i in range(n) if i not in chosen]
    return Selection(kept, _common(dropped))


def _anomalies(records: Sequence[Mapping[str, Scalar]]) -> list[int]:
    n = len(records)
    by_path: dict[str, list[tuple[int, Scalar]]] = {}
    for i, rec in enumerate(records):
        for path, value in rec.items():
            by_path.setdefault(path, []).append((i, value))
    out: list[int] = []
    for values in by_path.values():
        if len(values) < max(3, n // 2):
            continue
        nums = [(v, i) for i, v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(nums) == len(values):
            lo, hi = min(nums), max(nums)
            if lo[0] != hi[0]:
                out.extend((hi[1], lo[1]))
            continue
        cats = Counter(
            v for _, v in values if isinstance(v, str | bool) and (not isinstance(v, str) or len(v) <= 80)
        )
        if 2 <= len(cats) <= max(2, n // 3):
            rare = {v for v, c in cats.items() if c == 1}
            out.extend(i for i, v in values if v in rare)
    return out


def _common(dropped: Sequence[Mapping[str, Scalar]], uniform: frozenset[str] = frozenset()) -> str:
    """Up to two ``field=value`` pairs that every dropped record shares (fields in ``uniform``,
    the same in the whole list, say nothing about the dropped ones and are left out)."""
    if len(dropped) < 2:
        return ""
    first = dropped[0]
    shared: list[str] = []
    for path, value in first.items():
        if value is None or isinstance(value, float) or (isinstance(value, str) and not 0 < len(value) <= 40):
            continue
        if path in uniform:
            continue
        if all(rec.get(path) == value for rec in dropped[1:]):
            shared.append(
                f"{path}={json.dumps(value, ensure_ascii=False) if isinstance(value, str) and ' ' in value else value}"
            )
            if len(shared) == 2:
                break
    return "all " + ", ".join(shared) if shared else ""


#: fields that name a record, most telling first (compared lower-cased, last path part)
NAME_FIELDS = (
    "name",
    "title",
    "login",
    "full_name",
    "key",
    "path",
    "filename",
    "file",
    "id",
    "sha",
    "number",
)
_MAX_NAMES = 40


def names(dropped: Sequence[Mapping[str, Scalar]]) -> str:
    """``name: a, b, c`` for the omitted records, so that the reader knows what exists.

    The field is the first of NAME_FIELDS that every dropped record has with a short
    value, shortest path first (``metadata.name`` before ``spec.containers.name``).
    """
    if not dropped:
        return ""
    candidates: dict[str, int] = {}
    for path in dropped[0]:
        last = path.rsplit(".", 1)[-1].lower()
        if last in NAME_FIELDS:
            candidates[path] = NAME_FIELDS.index(last) * 10 + path.count(".")
    usable: list[tuple[str, list[Scalar]]] = []
    for path in sorted(candidates, key=lambda p: (candidates[p], p)):
        values = [rec.get(path) for rec in dropped]
        if all(
            isinstance(v, str | int) and not isinstance(v, bool) and 0 < len(str(v)) <= 60 for v in values
        ):
            usable.append((path, values))
    if not usable:
        return ""
    path, values = next(((p, v) for p, v in usable if len(set(v)) == len(v)), usable[0])
    shown = ", ".join(str(v) for v in values[:_MAX_NAMES])
    more = f", ... {len(values) - _MAX_NAMES} more" if len(values) > _MAX_NAMES else ""
    return f"{path}: {shown}{more}"


def uniform_fields(records: Sequence[Mapping[str, Scalar]]) -> frozenset[str]:
    """Fields with one and the same value in every record."""
    if not records:
        return frozenset()
    first = records[0]
    return frozenset(p for p, v in first.items() if all(p in r and r[p] == v for r in records[1:]))


def describe(dropped: Sequence[Mapping[str, Scalar]], uniform: frozenset[str] = frozenset()) -> str:
    """What a run of omitted records is: the values they share (beyond ``uniform``), then their names."""
    return "; ".join(x for x in (_common(dropped, uniform), names(dropped)) if x)


def flatten(value: object, depth: int = 3, prefix: str = "") -> dict[str, Scalar]:
    """Scalar leaves of nested objects as ``{"a.b.c": value}``; lists are skipped."""
    out: dict[str, Scalar] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                if depth > 1:
                    out.update(flatten(v, depth - 1, path))
            elif not isinstance(v, list):
                out[path] = v
    elif not isinstance(value, list) and prefix == "":
        out["value"] = value  # type: ignore[assignment]
    return out
