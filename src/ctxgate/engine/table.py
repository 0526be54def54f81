"""Tables: CSV, TSV and space-aligned command output (``kubectl get``, ``docker ps``, ``ps``, ``ls -l``).

Lossless: trailing whitespace is removed and, in space-aligned tables, each run of
padding (two or more spaces) becomes one tab, so every row keeps every cell in order
(``line.split()`` is unchanged).

Lossy (level ``balanced``): a directory listing (``ls -l``) keeps every entry's mode, size and
name, and drops link counts and modification times (owner and group, when the same on every
entry, are named once), announced by one marker before the first entry. Other tables of
more than 40 rows keep the header, the first and last rows, rows
with error words or bad states (``CrashLoopBackOff``, ``Error``, restarts), rows
matching the request, rows with rare values or extreme numbers, and an even sample;
each gap becomes one omission marker line in place.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from ctxgate.engine import _select
from ctxgate.engine._api import Context, Original, Result, omission_marker, retrieval_key

_PAD = re.compile(r" {2,}")
_LS_LINE = re.compile(r"^[-dlcbpsD][rwxsStT-]{9}[.+@]?\s+\d+\s")
_HEADER_WORD = re.compile(r"^[A-Z%][A-Z0-9%_()/.\- ]*$")
#: a header cell: a short name with a letter in it (rejects numbered source lines, code, prose)
_HEADER_CELL = re.compile(r"^(?=[^a-zA-Z]*[a-zA-Z])[\w .%#/()\[\]:-]{1,40}$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_MAX_LINES = 20000
#: tables up to this many rows are kept whole; directory listings (``ls -l``) always are,
#: since every entry is a name the reader may need
_MIN_SAMPLED_ROWS = 40


@dataclass(frozen=True, slots=True)
class _Shape:
    kind: str  # "csv", "tsv", "aligned", "ls"
    header: int  # index of the header line, -1 for none
    columns: tuple[str, ...]


def _delimited(lines: list[str], delim: str) -> _Shape | None:
    if len(lines) < 3 or delim not in lines[0]:
        return None
    try:
        rows = list(csv.reader(lines[:200], delimiter=delim))
    except csv.Error:
        return None
    width = len(rows[0])
    if width < 2 or not all(_HEADER_CELL.match(c.strip()) for c in rows[0]):
        return None
    if sum(1 for ln in lines[:200] if ln[:1].isspace()) > 0.1 * len(rows):
        return None  # indented lines: code or prose, not records
    same = sum(1 for r in rows if len(r) == width)
    if same < 0.9 * len(rows):
        return None
    return _Shape("csv" if delim == "," else "tsv", 0, tuple(c.strip() for c in rows[0]))


def _aligned(lines: list[str]) -> _Shape | None:
    if len(lines) < 3:
        return None
    body = [ln for ln in lines[:200] if ln.strip()]
    ls = sum(1 for ln in body if _LS_LINE.match(ln))
    if ls >= 0.8 * len(body) or (body[0].startswith("total ") and ls >= 0.8 * (len(body) - 1)):
        return _Shape("ls", -1, ())
    head = lines[0].strip()
    cols = _PAD.split(head) if _PAD.search(head) else head.split()
    if len(cols) < 2 or not all(_HEADER_WORD.match(c) for c in cols):
        return None
    if not any(c.isalpha() for c in "".join(cols)):
        return None
    fits = sum(1 for ln in body[1:] if len(ln.split()) >= len(cols) - 1)
    if fits < 0.9 * (len(body) - 1) or _alignment(lines[0], body[1:]) < 0.8:
        return None
    return _Shape("aligned", 0, tuple(cols))


def _alignment(header: str, rows: list[str]) -> float:
    """Share of (row, column) pairs whose cell starts or ends where the header's column does.

    Left-aligned columns (``kubectl``, ``docker``) start under their header word,
    right-aligned ones (``ps`` numbers) end under it; prose and log lines do neither.
    """
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", header)][1:]
    if not spans or not rows:
        return 0.0
    hits = total = 0
    for row in rows[:100]:
        for start, end in spans:
            total += 1
            starts = start < len(row) and row[start] != " " and row[start - 1] == " "
            ends = 0 < end <= len(row) and row[end - 1] != " " and (end == len(row) or row[end] == " ")
            hits += starts or ends
    return hits / total


def shape(text: str) -> _Shape | None:
    lines = text.rstrip("\n").split("\n")
    if len(lines) > _MAX_LINES:
        return None
    return _delimited(lines, "\t") or _aligned(lines) or _delimited(lines, ",")


def _cells(line: str, shape_: _Shape) -> list[str]:
    if shape_.kind == "csv":
        return next(csv.reader([line]), [])
    if shape_.kind == "tsv":
        return line.split("\t")
    parts = _PAD.split(line.strip())
    if len(parts) == len(shape_.columns):
        return parts
    return line.split(None, max(0, len(shape_.columns) - 1))


def _value(cell: str) -> _select.Scalar:
    cell = cell.strip()
    if _NUMBER.match(cell):
        return float(cell) if "." in cell else int(cell)
    return cell


def _record(line: str, shape_: _Shape) -> dict[str, _select.Scalar]:
    cells = _cells(line, shape_)
    if shape_.kind == "ls":
        fixed = ("mode", "links", "owner", "group", "size")
        return {n: _value(c) for n, c in zip(fixed, line.split(), strict=False)}
    names = shape_.columns or tuple(f"c{i}" for i in range(len(cells)))
    rec = {n: _value(c) for n, c in zip(names, cells, strict=False)}
    if "RESTARTS" in rec and isinstance(rec["RESTARTS"], str):
        rec["RESTARTS"] = _value(rec["RESTARTS"].split(" ", 1)[0])
    return rec


class TableCompressor:
    name = "table"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.75
    min_tokens = 60

    def score(self, text: str, ctx: Context) -> float:
        s = shape(text)
        if s is None:
            return -1.0
        return 0.7 if s.kind in ("csv", "tsv") else 0.75

    def compress(self, text: str, ctx: Context) -> Result:
        s = shape(text)
        if s is None:
            raise ValueError("not a table")
        trailing = text[len(text.rstrip("\n")) :]
        lines = [ln.rstrip() for ln in text.rstrip("\n").split("\n")]
        transforms = ["table:strip"]
        if s.kind in ("aligned", "ls"):
            lines = [_PAD.sub("\t", ln.strip(" ")) if ln.strip() else "" for ln in lines]
            transforms = ["table:unpad"]
        originals: tuple[Original, ...] = ()
        start = s.header + 1
        rows = lines[start:]
        if ctx.level == "balanced" and s.kind != "ls" and len(rows) > _MIN_SAMPLED_ROWS:
            key = retrieval_key(text)
            source = text.rstrip("\n").split("\n")[start:]
            records = [_record(ln, s) for ln in source]
            sel = _select.select(records, source, ctx)
            kept = set(sel.kept)
            gaps = dict(sel.gaps(len(rows)))
            uniform = _select.uniform_fields(records)
            saved = sum(len(r) for i, r in enumerate(rows) if i not in kept) - 90 * len(gaps)
            if len(kept) < len(rows) and saved >= sum(map(len, rows)) // 4:
                out: list[str] = []
                for i, row in enumerate(rows):
                    if i in gaps:
                        what = _select.describe(records[i : gaps[i]], uniform)
                        out.append(omission_marker(gaps[i] - i, len(rows), "rows", what, key))
                    if i in kept:
                        out.append(row)
                rows = out
                transforms.append("table:sample")
                originals = (Original(key, text),)
        if ctx.level == "balanced" and s.kind == "ls":
            compact = _compact_listing(text.rstrip("\n").split("\n"), retrieval_key(text))
            # worth a marker only when it saves a good part (else the lossless form stays)
            if compact is not None and sum(map(len, compact)) < 0.85 * sum(map(len, lines)):
                return Result("\n".join(compact) + trailing, ("table:ls-compact",), (Original(retrieval_key(text), text),))
        return Result("\n".join(lines[:start] + rows) + trailing, tuple(transforms), originals)


#: an ``ls -l`` entry: mode, links, owner, group, size (``-h``: ``4.0K``; a device: ``major, minor``), a date of
#: three words (``Sep 10  2025``, ``Mar  9 16:43``, ``2025-09-10 12:16``: two), the name
_LS_ENTRY = re.compile(
    r"^(?P<mode>\S{10,11})\s+(?P<links>\d+)\s+(?P<owner>\S+)\s+(?P<group>\S+)\s+"
    r"(?P<size>\d+(?:\.\d+)?[KMGTPE]?|\d+,\s*\d+)\s+(?P<date>\w{3}\s+\d{1,2}\s+(?:\d{4}|\d{1,2}:\d{2})|"
    r"\d{4}-\d{2}-\d{2}\s+\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s+[+-]\d{4})?)\s(?P<name>.+)$"
)


def _compact_listing(lines: list[str], key: str) -> list[str] | None:
    """An ``ls -l`` listing as ``mode size name`` rows (lossy, announced).

    Every entry keeps its type and permissions, its size and its name (with a symlink's
    target); link counts and modification times are dropped, and owner and group are
    stated once in the marker when every entry has the same ones (kept per row otherwise).
    None when a line does not parse (the listing then stays as it is).
    """
    entries: list[tuple[int, re.Match[str]]] = []
    for i, line in enumerate(lines):
        m = _LS_ENTRY.match(line.strip())
        if m is not None:
            entries.append((i, m))
        elif line.strip() and not line.startswith("total "):
            return None
    if len(entries) < 3:
        return None
    owners = {f"{m['owner']} {m['group']}" for _, m in entries}
    same = owners.pop() if len(owners) == 1 else None
    rows = {
        i: f"{m['mode']} {'' if same else m['owner'] + ' ' + m['group'] + ' '}{m['size'].replace(' ', '')} {m['name']}"
        for i, m in entries
    }
    what = f"every entry owned by {same}" if same else ""
    unit = "entries' link counts and modification times"
    marker = omission_marker(len(entries), len(entries), unit, what, key)
    out: list[str] = []
    for i, line in enumerate(lines):
        if i == entries[0][0]:
            out.append(marker)
        out.append(rows.get(i, line))
    return out
