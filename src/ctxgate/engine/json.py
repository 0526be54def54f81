"""JSON documents and NDJSON streams.

Lossless (every level but ``off``):

* minification: no whitespace between tokens, non-ASCII kept as is; NDJSON keeps one value
  per line, or becomes one table with one row per line when all lines are objects and that is
  shorter;
* tables: an array of objects that mostly share their keys becomes
  ``{"@columns":["id","name"],"@rows":[[1,"a"],[2,"b",{"extra":true}],{"id":3}]}``:
  the column names once, then per item a JSON array of its values in column order
  (values keep their JSON types), with an object of extra keys as a last element
  when the item has more keys, or the item unchanged as an object when it lacks a
  column. Used only where it is shorter, and never when the data itself has
  ``@columns`` or ``@rows`` keys. ``decode_tables`` in the tests rebuilds the value.

Lossy (level ``balanced``), each drop announced in place and the whole original
returned under the marker's retrieval key:

* long arrays keep first/last, error, request-matching and anomalous items and an even
  sample (``_select``); each gap becomes a marker string in the array;
* link fields (``*_url`` keys holding URLs or URL templates, other than ``KEEP_LINKS``:
  ``html_url``, ``web_url``, ``clone_url``) are dropped, listed in one marker line above the JSON;
* long multi-line string values (embedded logs, stack traces) are compressed by the
  dispatcher as text of their own kind, or as logs when no kind claims them;
* inside Kubernetes objects, bookkeeping and plumbing fields (``K8S_PLUMBING``: uids,
  resource versions, runtime ids, scheduler defaults, volumes and mounts) are dropped,
  listed in one marker line;
* repeated values (objects, arrays, strings of 48+ characters) are written once, later
  copies read ``"[same as $.path]"``; strings holding pretty-printed JSON are minified.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from ctxgate.engine import _select
from ctxgate.engine._api import Context, Original, Result, omission_marker, retrieval_key

COLUMNS = "@columns"
ROWS = "@rows"
#: link fields that are kept while other ``*_url`` fields are dropped: the page a person opens
#: and the address an agent clones from
KEEP_LINKS = frozenset({"html_url", "web_url", "clone_url", "url", "href"})
_URLISH = re.compile(r"^(?:https?://|/)\S*$|\{[/?&]?\w+(?:,\w+)*\}")
_LONG_STRING_LINES = 12
_LONG_STRING_CHARS = 600
#: arrays of plain values (paths, names, flags) are the content itself: kept whole up to this length
_KEEP_SCALARS = 100
#: an array is sampled only when that drops at least this many characters, net of its markers
_MIN_SAVED_CHARS = 1200
_MARKER_CHARS = 90
#: repeated values at least this long (minified) are written once, later copies refer to it
#: (when the reference is clearly shorter than the value)
_MIN_REPEAT_CHARS = 48
_SAME_AS = "[same as "

#: Fields of Kubernetes objects that an agent debugging a workload rarely reads: server
#: bookkeeping (ids, versions, self links), runtime ids that repeat the image, scheduler and
#: runtime defaults, volume plumbing. Dropped only inside Kubernetes objects, at level
#: ``balanced``, named in one marker; a field the request names is kept.
K8S_PLUMBING = frozenset(
    {
        "managedFields",
        "selfLink",
        "uid",
        "resourceVersion",
        "generateName",
        "imageID",
        "containerID",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "dnsPolicy",
        "schedulerName",
        "enableServiceLinks",
        "preemptionPolicy",
        "priority",
        "terminationGracePeriodSeconds",
        "serviceAccount",
        "imagePullSecrets",
        "tolerations",
        "volumes",
        "volumeMounts",
        "kubectl.kubernetes.io/last-applied-configuration",
        "blockOwnerDeletion",
        "lastProbeTime",
    }
)


def _is_k8s_object(v: dict[str, Any]) -> bool:
    """A Kubernetes object: ``metadata`` with a ``name``, next to ``spec`` or ``status`` (or ``kind``)."""
    meta = v.get("metadata")
    return isinstance(meta, dict) and "name" in meta and ("spec" in v or "status" in v or "kind" in v)


def dedupe(value: Any) -> tuple[Any, int]:
    """Replace repeated values (objects, arrays, long strings) by ``"[same as $.path]"``.

    The first copy in document order stays; paths count the shown items of an array
    (omission markers are not counted). Returns the new value and the replacements made.
    """
    canon: dict[int, str] = {}
    #: texts of the values long enough to repeat, in post-order: a container's descendants
    #: are the run ``spans[id]`` just before its own entry
    long: list[str] = []
    spans: dict[int, tuple[int, int]] = {}

    def text(v: Any) -> str:
        if isinstance(v, dict):
            first = len(long)
            t = "{" + ",".join(_dump(k) + ":" + text(x) for k, x in v.items()) + "}"
        elif isinstance(v, list):
            first = len(long)
            t = "[" + ",".join(text(x) for x in v) + "]"
        else:
            t = _text(v)
            if len(t) >= _MIN_REPEAT_CHARS and isinstance(v, str):
                long.append(t)
            return t
        canon[id(v)] = t
        spans[id(v)] = (first, len(long))
        if len(t) >= _MIN_REPEAT_CHARS:
            long.append(t)
        return t

    text(value)
    counts = Counter(long)
    if len(counts) == len(long):
        return value, 0  # nothing repeats
    # repeated[: i] counts the entries before i that repeat: a container whose descendants
    # hold none is left as it is, unwalked
    repeated = [0, *accumulate(counts[t] > 1 for t in long)]
    seen: dict[str, str] = {}
    count = 0

    def walk(v: Any, path: str) -> Any:
        nonlocal count
        t = canon.get(id(v)) if isinstance(v, dict | list) else (_text(v) if isinstance(v, str) else None)
        if t is not None and len(t) >= _MIN_REPEAT_CHARS and counts[t] > 1 and not _is_marker(v):
            ref = seen.get(t)
            if ref is not None and len(ref) + len(_SAME_AS) + 16 < len(t):
                count += 1
                return f"{_SAME_AS}{ref}]"
            seen.setdefault(t, path)
        if isinstance(v, dict | list):
            first, stop = spans[id(v)]
            if repeated[stop] == repeated[first]:
                return v  # no repeated value inside
        if isinstance(v, dict):
            return {
                k: walk(x, path + (f".{k}" if _IDENT.match(k) else f"[{_dump(k)}]")) if _walked(x) else x
                for k, x in v.items()
            }
        if isinstance(v, list):
            out, shown = [], 0
            for x in v:
                if _is_marker(x):
                    out.append(x)
                    continue
                out.append(walk(x, f"{path}[{shown}]") if _walked(x) else x)
                shown += 1
            return out
        return v

    return walk(value, "$"), count


def _walked(v: Any) -> bool:
    """Whether ``dedupe`` must look at ``v``: a container, or a string long enough to repeat
    (``walk`` returns any other value as it is, so its path is not even made)."""
    if isinstance(v, str):
        return len(_text(v)) >= _MIN_REPEAT_CHARS
    return isinstance(v, dict | list)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _mentions_same_as(v: Any) -> bool:
    if isinstance(v, str):
        return v.startswith(_SAME_AS)
    if isinstance(v, dict):
        return any(_mentions_same_as(x) for x in v.values())
    if isinstance(v, list):
        return any(_mentions_same_as(x) for x in v)
    return False


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate object key")
    return out


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"non-standard constant {name}")


def loads(text: str) -> Any:
    """Strict parse: duplicate keys, NaN/Infinity and out-of-range numbers are refused."""
    return json.loads(text, object_pairs_hook=_pairs, parse_float=_float, parse_constant=_constant)


def parse(text: str) -> tuple[str, Any]:
    """``("json", value)`` or ``("ndjson", [values])``; ValueError when it is neither."""
    s = text.strip().lstrip("\ufeff")
    if not s or s[0] not in "[{" or s[-1] not in "]}":
        raise ValueError("not json")
    try:
        return "json", loads(s)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as first:
        lines = [ln for ln in s.split("\n") if ln.strip()]
        if len(lines) < 2:
            raise ValueError(f"parse failed: {first}") from None
        values = []
        for ln in lines:
            ln = ln.strip()
            if ln[0] not in "[{":
                raise ValueError(f"parse failed: {first}") from None
            values.append(loads(ln))
        return "ndjson", values


_STRING: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring


def _dump(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)``, with a fast path for scalars (the hot loop)."""
    if isinstance(value, str):
        return str(_STRING(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value, ensure_ascii=False)


def _text(value: Any) -> str:
    """Text of any parsed value, for matching only (YAML may hold dates)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return _dump(value)
    return json.dumps(value, ensure_ascii=False, default=str)


class _Encoder:
    """Minified JSON with tables where they are shorter."""

    def __init__(self, tables: bool) -> None:
        self.tables = tables
        self.tabled = 0

    def encode(self, v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ",".join(_dump(k) + ":" + self.encode(x) for k, x in v.items()) + "}"
        if isinstance(v, list):
            if self.tables and _objects_and_markers(v):
                return self._array_of_objects(v)
            return "[" + ",".join(self.encode(x) for x in v) + "]"
        return _dump(v)

    def _array_of_objects(self, values: list[Any], row_sep: str = ",") -> str:
        """``values`` are objects, plus the omission markers of a sampled array.

        ``row_sep`` ``",\n"`` puts one row per line (an NDJSON stream as a table).
        """
        items = [x for x in values if isinstance(x, dict)]
        encoded = [
            {k: self.encode(x) for k, x in item.items()} if isinstance(item, dict) else None
            for item in values
        ]
        objects = [
            "{" + ",".join(_dump(k) + ":" + x for k, x in e.items()) + "}" if e is not None else _dump(v)
            for e, v in zip(encoded, values, strict=True)
        ]
        plain = "[" + ",".join(objects) + "]"
        freq = Counter(k for item in items for k in item)
        cols = [k for k in dict.fromkeys(k for item in items for k in item) if freq[k] * 2 > len(items)]
        if len(cols) < 2:
            return plain
        colset = set(cols)
        rows = []
        for e, obj in zip(encoded, objects, strict=True):
            if e is None or not colset.issubset(e):
                rows.append(obj)
                continue
            cells = [e[c] for c in cols]
            extra = [_dump(k) + ":" + x for k, x in e.items() if k not in colset]
            if extra:
                cells.append("{" + ",".join(extra) + "}")
            rows.append("[" + ",".join(cells) + "]")
        head = json.dumps(cols, ensure_ascii=False, separators=(",", ":"))
        nl = "\n" if "\n" in row_sep else ""
        table = (
            "{" + _dump(COLUMNS) + ":" + head + "," + _dump(ROWS) + ":[" + nl + row_sep.join(rows) + nl + "]}"
        )
        if len(table) < 0.9 * len(plain):
            self.tabled += 1
            return table
        return plain


def _has_table_keys(v: Any) -> bool:
    if isinstance(v, dict):
        return COLUMNS in v or ROWS in v or any(_has_table_keys(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_table_keys(x) for x in v)
    return False


@dataclass
class Reduction:
    """State of one lossy pass: what was dropped, for the markers."""

    ctx: Context
    key: str
    terms: tuple[str, ...]
    links: Counter[str] = field(default_factory=Counter)
    fields_seen: int = 0
    arrays: int = 0
    items_dropped: int = 0
    strings: int = 0
    inner: int = 0
    plumbing: Counter[str] = field(default_factory=Counter)
    _in_k8s: bool = False
    originals: list[Original] = field(default_factory=list)
    transforms: list[str] = field(default_factory=list)
    #: compressors that long string values must not be handed to (the caller itself)
    exclude: frozenset[str] = frozenset({"json"})

    def link_marker(self) -> str | None:
        """The one marker line for dropped link fields, or None when none were dropped."""
        if not self.links:
            return None
        names = ", ".join(k for k, _ in self.links.most_common(12))
        more = "" if len(self.links) <= 12 else f" and {len(self.links) - 12} more"
        what = f"link fields {names}{more}"
        return omission_marker(sum(self.links.values()), self.fields_seen, "fields", what, self.key)

    def plumbing_marker(self) -> str | None:
        """The one marker line for dropped Kubernetes plumbing fields, or None."""
        if not self.plumbing:
            return None
        names = ", ".join(sorted(self.plumbing))
        what = f"Kubernetes bookkeeping/plumbing fields {names}"
        return omission_marker(sum(self.plumbing.values()), self.fields_seen, "fields", what, self.key)

    def reduce(self, v: Any) -> Any:
        if isinstance(v, dict):
            entered = not self._in_k8s and _is_k8s_object(v)
            self._in_k8s = self._in_k8s or entered
            out = {}
            for k, x in v.items():
                self.fields_seen += 1
                if self._is_link(k, x):
                    self.links[k] += 1
                    continue
                if self._in_k8s and k in K8S_PLUMBING and k.lower() not in self.terms:
                    self.plumbing[k] += 1
                    continue
                out[k] = self.reduce(x)
            if entered:
                self._in_k8s = False
            return out
        if isinstance(v, list):
            return self._array(v)
        if isinstance(v, str) and len(v) >= 40 and v[0] in "[{" and "\n" in v:
            v = self._inner_json(v)
        if isinstance(v, str) and len(v) >= _LONG_STRING_CHARS and v.count("\n") >= _LONG_STRING_LINES:
            return self._long_string(v)
        return v

    def _is_link(self, k: str, x: Any) -> bool:
        if not (isinstance(x, str) and k.lower().endswith("_url") and k.lower() not in KEEP_LINKS):
            return False
        if not _URLISH.search(x):
            return False
        lk = k.lower()
        return not any(t == lk or t.startswith(lk) for t in self.terms)

    def _array(self, items: list[Any]) -> list[Any]:
        n = len(items)
        scalars = not any(isinstance(x, dict | list) for x in items)
        if n <= _select.KEEP_ALL or (scalars and n <= _KEEP_SCALARS):
            return [self.reduce(x) for x in items]
        texts = [_text(x) for x in items]
        records = [_select.flatten(x) for x in items]
        keysets = [frozenset(x) if isinstance(x, dict) else frozenset() for x in items]
        sel = _select.select(records, texts, self.ctx, keysets)
        kept = set(sel.kept)
        gaps = sel.gaps(n)
        saved = sum(len(t) for i, t in enumerate(texts) if i not in kept) - _MARKER_CHARS * len(gaps)
        if len(kept) == n or saved < max(_MIN_SAVED_CHARS, sum(map(len, texts)) // 4):
            return [self.reduce(x) for x in items]
        self.arrays += 1
        self.items_dropped += n - len(sel.kept)
        starts = dict(gaps)
        uniform = _select.uniform_fields(records)
        out: list[Any] = []
        for i in range(n):
            if i in starts:
                stop = starts[i]
                what = _select.describe(records[i:stop], uniform)
                out.append(omission_marker(stop - i, n, "items", what, self.key))
            if i in kept:
                out.append(self.reduce(items[i]))
        return out

    def _inner_json(self, s: str) -> str:
        """A string holding pretty-printed JSON (an annotation, a config blob), minified."""
        try:
            inner = loads(s)
        except (ValueError, RecursionError):
            return s
        if not isinstance(inner, dict | list):
            return s
        out = _Encoder(tables=False).encode(inner)
        if len(out) >= len(s):
            return s
        self.inner += 1
        return out

    def _long_string(self, s: str) -> str:
        from ctxgate.engine import registry  # the dispatcher imports this module

        part = registry.compress_part(s, self.ctx, exclude=self.exclude, fallback="logs")
        if not part.changed:
            return s
        self.strings += 1
        self.originals.extend(part.originals)
        self.transforms.extend(t for t in part.transforms if t not in self.transforms)
        return part.text


class JsonCompressor:
    name = "json"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.95
    min_tokens = 40

    def score(self, text: str, ctx: Context) -> float:
        return self.prepare(text, ctx)[0]

    def prepare(self, text: str, ctx: Context) -> tuple[float, tuple[str, Any] | None]:
        """The score and the parse, which ``compress_prepared`` takes instead of parsing again."""
        try:
            parsed = parse(text)
        except (ValueError, RecursionError):
            return -1.0, None
        return (0.95 if parsed[0] == "json" else 0.9), parsed

    def compress(self, text: str, ctx: Context) -> Result:
        return self.compress_prepared(text, ctx, parse(text))

    def compress_prepared(self, text: str, ctx: Context, parsed: tuple[str, Any]) -> Result:
        kind, value = parsed
        # a key "@columns" or "@rows" is in the text as it is, or written with a \u escape
        tables = not (COLUMNS in text or ROWS in text or "\\u" in text) or not _has_table_keys(value)
        transforms: list[str] = []
        skipped: list[str] = [] if tables else ["json:table: data has @columns/@rows keys"]
        originals: list[Original] = []
        header: list[str] = []
        if ctx.level == "balanced":
            red = Reduction(ctx, retrieval_key(text), _select.request_terms(ctx))
            value = red.reduce(value)
            if red.items_dropped:
                transforms.append("json:sample")
            marker = red.link_marker()
            if marker:
                transforms.append("json:drop-links")
                header.append(marker)
            marker = red.plumbing_marker()
            if marker:
                transforms.append("json:drop-k8s-plumbing")
                header.append(marker)
            if red.inner:
                transforms.append("json:inner-minify")
            if not _mentions_same_as(value):
                value, repeats = dedupe(value)
                if repeats:
                    transforms.append("json:dedupe")
            if red.strings:
                transforms.append("json:long-strings")
                transforms.extend(red.transforms)
                originals.extend(red.originals)
            if red.items_dropped or red.links or red.plumbing:
                originals.insert(0, Original(red.key, text))
        encoder = _Encoder(tables)
        if kind == "ndjson":
            lines = "\n".join(v if _is_marker(v) else encoder.encode(v) for v in value)
            body = lines
            if tables and _objects_and_markers(value):
                table = encoder._array_of_objects(value, row_sep=",\n")
                if table.startswith("{") and len(table) < 0.9 * len(lines):
                    body = table
        else:
            body = encoder.encode(value)
        transforms.insert(0, "json:minify")
        if encoder.tabled:
            transforms.insert(1, "json:table")
        return Result("\n".join([*header, body]), tuple(transforms), tuple(originals), tuple(skipped))


def _objects_and_markers(v: list[Any]) -> bool:
    """Whether a list holds two or more objects and nothing else but omission markers."""
    return sum(isinstance(x, dict) for x in v) >= 2 and all(isinstance(x, dict) or _is_marker(x) for x in v)


def _is_marker(v: Any) -> bool:
    return isinstance(v, str) and v.startswith("[... ") and "; retrieve: ctx_" in v
