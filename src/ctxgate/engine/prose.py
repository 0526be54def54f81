"""Markdown, reStructuredText and plain prose: extractive, in whole units.

Lossless (levels ``lossless`` and ``balanced``): trailing whitespace removed.

``balanced`` adds, never cutting a paragraph or a sentence:

* for fetched pages and documents (tool names like ``WebFetch``; never for a file
  printed by a shell, whose exact lines an agent may quote back in an edit),
  paragraphs are joined into one line each where their line breaks are soft: in a
  document with headings (markdown, rst) every break inside a paragraph; elsewhere
  only a break where the next word would not have fitted within the text's wrap
  width (code, tables, headings, field lists and literal blocks stay as they are);
* exact and near-duplicate paragraphs (same word 3-grams for 85% or more) after
  their first occurrence are dropped; a near-duplicate of three lines or more
  keeps the lines that differ (a line number, a name) and drops the ones seen
  in the earlier paragraph;
* boilerplate is dropped: badge lines, editor-variable comment blocks, link
  reference lists (markdown ``[label]: url``, rst footnotes ``.. [1]`` and
  targets ``.. _name: url``);
* a short copyright or license section becomes one marker;
* code examples longer than ``LONG_CODE`` lines keep their first 15 and last 5
  lines, with a marker for the middle;
* when the request (``ctx.query``) clearly names what is wanted (two informative
  words, or a name like ``snake_case``, found together in one section of a long
  document), whole sections that share none of its words are dropped, keeping
  the introduction; the marker names the omitted headings. A vague request
  ("help me with this") drops nothing.

Every drop is announced in place by ``omission_marker`` with the retrieval key of
the whole original.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

from ctxgate.engine._api import Context, Original, Result, omission_marker, retrieval_key

_FENCE = re.compile(r"^\s*(```|~~~)")
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")
_MD_HEADING = re.compile(r"^(#{1,6})\s+\S")
_NO_JOIN = re.compile(
    r"^\s*(?:[-*+]\s|\d+[.)]\s|#\.?\s|#{1,6}\s|\.\.\s|\||\+[-=]|>|<(?!https?:|mailto:)[A-Za-z/!]|:[\w -]+:(?:\s|$)|[=\-~^]{3,}\s*$|\[[^\]]+\]:\s)"
)
#: an rst directive whose indented body is not prose (code, tables, math, raw)
_LITERAL_DIRECTIVE = re.compile(
    r"^\s*\.\. (?!(?:note|warning|tip|important|caution|attention|danger|error|hint|seealso|admonition|"
    r"versionadded|versionchanged|deprecated|topic|sidebar|rubric)::)[\w:-]+::"
)
_FIELD = re.compile(r"^[A-Z][\w-]*:\s")
_TABLE_DIRECTIVE = re.compile(r"^\s*\.\. [\w-]*table::")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_STRUCTURED = re.compile(r"\s*(?:\||<[A-Za-z/!]|#{1,6}\s)")
_BADGE = re.compile(r"^\s*(?:\[?!\[[^\]]*\]\([^)]*\)\]?(?:\([^)]*\))?\s*)+$")
_LINK_DEF = re.compile(r"^\s*\[([^\]]+)\]:\s+\S+|^\.\. (?:\[[^\]]+\]|_[^:]+:)(?:\s|$)")
_EDITOR_VARS = re.compile(r"Local Variables:.*?End:", re.S)
_WORD = re.compile(r"[a-z0-9]+")
#: six or more ``_WORD`` matches in a line (a search stops at the sixth, no list is built);
#: tried only at word starts and possessive, so that it stays linear on a long line
_SIX_WORDS = re.compile(r"(?<![a-z0-9])[a-z0-9]++(?:[^a-z0-9]++[a-z0-9]++){5}")
#: words that say nothing about which part of a document is wanted
_STOP = frozenset(
    re.findall(
        r"\w+",
        "the a an and or of to in on for with is are was be it this that as by at from how what why "
        "when where which who does do can i you we they my our your please about into not no yes "
        "help task need want make work working works issue problem problems code file files look "
        "find show tell explain could would should will just like some more also here there then "
        "than them these those have has had using used use read check give get know thing things "
        "fix change update add remove doc docs document page section sections part text content "
        "information info question answer following below above",
    )
)


@dataclass(slots=True)
class _Block:
    start: int  # first line index
    lines: list[str]
    kind: str  # "para", "code", "table", "raw", "blank", "heading", "marker"


class ProseCompressor:
    name = "prose"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.5
    min_tokens = 200

    def score(self, text: str, ctx: Context) -> float:
        head = text[:8000]
        lines = [ln for ln in head.split("\n") if ln.strip()]
        if len(lines) < 3:
            return -1.0
        wordy = sum(
            1 for ln in lines if _SIX_WORDS.search(ln.lower()) and not ln.lstrip().startswith(("{", "<"))
        )
        frac = wordy / len(lines)
        if frac < 0.3:
            return -1.0
        # a document with headings is prose even when it has fenced examples (it handles
        # its own fences), so it wins over the mixed-sections splitter (0.45)
        headings = any(_heading(ln) or _underline(ln) for ln in lines)
        return min(0.5, 0.25 + frac / 4 + (0.15 if headings else 0.0))

    def compress(self, text: str, ctx: Context) -> Result:
        lines = [ln.rstrip() for ln in text.split("\n")]
        transforms = ["prose:trailing"] if "\n".join(lines) != text else []
        if ctx.level != "balanced":
            return Result("\n".join(lines), tuple(transforms))
        key = retrieval_key(text)
        blocks = _blocks(lines)
        dropped = _drop_duplicates(blocks, key) + _drop_boilerplate(blocks, key, text)
        if ctx.query:
            dropped += _drop_far_sections(blocks, ctx.query, key)
        if dropped:
            transforms.append("prose:dedupe")
        out: list[str] = []
        joined = False
        # joining lines changes the exact text an agent may quote back in an edit: only for
        # fetched pages and documents, never for a file read through a shell
        width = wrap_width(blocks) if _fetched(ctx) else 0
        for b in blocks:
            if b.kind == "para":
                para = _unwrap(b.lines, width)
                joined = joined or len(para) < len(b.lines)
                out.extend(para)
            else:
                out.extend(b.lines)
        if joined:
            transforms.append("prose:unwrap")
        originals = (Original(key, text),) if dropped else ()
        return Result("\n".join(out), tuple(transforms), originals)


def _blocks(lines: list[str]) -> list[_Block]:
    """Paragraphs, code (fenced or rst literal), headings and blank lines."""
    blocks: list[_Block] = []
    i = 0
    n = len(lines)
    #: indentation of the previous paragraph when it ended with "::" (an rst literal block follows)
    literal_after: int | None = None
    literal_kind = "code"
    if n and lines[0] in ("---", "+++"):  # front matter (YAML / TOML) stays as it is
        end = next((k for k in range(1, min(n, 200)) if lines[k] in (lines[0], "...")), 0)
        if end:
            blocks.append(_Block(0, lines[: end + 1], "raw"))
            i = end + 1
    while i < n:
        line = lines[i]
        if not line:
            blocks.append(_Block(i, [line], "blank"))
            i += 1
            continue
        if _fence(line):
            fence = _FENCE.match(line).group(1)  # type: ignore[union-attr]
            j = i + 1
            while j < n and not (lines[j].strip().startswith(fence) and not lines[j].strip().strip(fence[0])):
                j += 1  # only a bare fence closes; ```bash opens the next block
            if j >= n:  # no closing fence: a fragment cut inside a block, leave the line alone
                blocks.append(_Block(i, [line], "raw"))
                i += 1
                continue
            blocks.append(_Block(i, lines[i : j + 1], "code"))
            i = j + 1
            continue
        if literal_after is not None and _indent(line) > literal_after:
            j = i
            while j < n and (not lines[j] or len(lines[j]) - len(lines[j].lstrip()) > literal_after):
                j += 1  # ``_indent``, inline
            while j > i and not lines[j - 1]:
                j -= 1
            blocks.append(_Block(i, lines[i:j], literal_kind))
            literal_after = None
            i = j
            continue
        if _heading(line) or (i + 1 < n and _underline(lines[i + 1]) and len(lines[i + 1]) >= 3):
            end = i + 1 if _heading(line) else i + 2
            blocks.append(_Block(i, lines[i:end], "heading"))
            i = end
            continue
        # the paragraph ends at the next blank or fence line, or before a line that an
        # underline follows (the next heading); the tests of ``_fence`` and ``_underline``, inline
        j = i + 1
        while j < n:
            ln = lines[j]
            if not ln or (("```" in ln or "~~~" in ln) and _FENCE.match(ln)):
                break
            if j + 1 < n:
                nxt = lines[j + 1]
                if nxt[:1] in _UNDERLINE_CHARS and _UNDERLINE.match(nxt):
                    break
            j += 1
        blocks.append(_Block(i, lines[i:j], "para"))
        directive = ".. " in lines[i]  # every rst directive holds it
        literal = lines[j - 1].endswith("::") or (directive and _LITERAL_DIRECTIVE.match(lines[i]) is not None)
        literal_after = _indent(lines[i]) if literal else None
        literal_kind = "table" if directive and _TABLE_DIRECTIVE.match(lines[i]) else "code"
        i = j
    return blocks


def _fence(line: str) -> bool:
    """``_FENCE.match(line)``, tried only on lines that hold a fence at all."""
    return ("```" in line or "~~~" in line) and _FENCE.match(line) is not None


#: the characters an ``_UNDERLINE`` line is made of
_UNDERLINE_CHARS = frozenset("=-~^\"'`#*+:.")


def _heading(line: str) -> bool:
    """``_MD_HEADING.match(line)``, tried only on lines that start with ``#``."""
    return line[:1] == "#" and _MD_HEADING.match(line) is not None


def _underline(line: str) -> bool:
    """``_UNDERLINE.match(line)``, tried only on lines that start like one."""
    return line[:1] in _UNDERLINE_CHARS and _UNDERLINE.match(line) is not None


_FETCH_TOOL = re.compile(r"fetch|web|brows|url|http|search|doc", re.I)


def _fetched(ctx: Context) -> bool:
    """Whether the text came from a web fetch or a documentation tool (by tool name)."""
    return bool(ctx.tool_name) and _FETCH_TOOL.search(ctx.tool_name or "") is not None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


_MARKUP = 1 << 30


def wrap_width(blocks: list[_Block]) -> int:
    """The column the text was hard-wrapped at (90th percentile of paragraph line lengths),
    or 0 when the text does not look hard-wrapped. In a document with headings (markdown,
    rst) a line break inside a paragraph is soft whatever its column: ``_MARKUP``."""
    if sum(1 for b in blocks if b.kind == "heading") >= 2:
        return _MARKUP  # markdown / rst: every line break inside a paragraph is soft
    lengths = sorted(len(ln) for b in blocks if b.kind == "para" for ln in b.lines if len(ln) >= 30)
    if len(lengths) < 5:
        return 0
    width = lengths[int(0.9 * (len(lengths) - 1))]
    return width if width >= 50 else 0


def _unwrap(para: list[str], width: int) -> list[str]:
    """Join the hard-wrapped lines of one paragraph; structured lines stay as they are.

    A line break is a wrap only where the next word would not have fitted on the line
    (``len(line) + 1 + len(next word)`` beyond the wrap width); a shorter line ends
    where its author ended it.
    """
    if len(para) < 2 or not width:
        return para
    if width != _MARKUP:
        fits = [
            len(a) + 1 + len((b.split() or [""])[0]) > width - 3 for a, b in zip(para, para[1:], strict=False)
        ]
        if sum(fits) < 0.6 * len(fits):
            return para  # most breaks are the author's own: not a hard-wrapped paragraph
    out = [para[0]]
    raw_prev = para[0]
    lead_prev = raw_prev.lstrip()
    indent = len(raw_prev) - len(lead_prev)
    # the tests run cheapest first; each only when the ones before allow a join, and each
    # pattern only on a line whose first character can start a match
    for line in para[1:]:
        prev = out[-1]
        lead = line.lstrip()
        prev_indent, indent = indent, len(line) - len(lead)
        same_block = indent == prev_indent or (
            prev_indent < indent <= prev_indent + 4 and _BULLET.match(prev) is not None
        )
        wrapped = same_block and (
            width == _MARKUP
            or len(raw_prev) + 1 + len(line.split(maxsplit=1)[0] if line.strip() else "") > width - 3
        )
        if (
            wrapped
            and not raw_prev.rstrip().endswith(("::", "|"))
            and not (lead_prev[:1] in _STRUCTURED_FIRST and _STRUCTURED.match(raw_prev))
            and not (raw_prev[:1] in _UNDERLINE_CHARS and _UNDERLINE.match(raw_prev))
            and not (line[:1] in _FIELD_FIRST and ":" in line and _FIELD.match(line))
            and not ((lead[:1] in _NO_JOIN_FIRST or lead[:1].isdigit()) and _NO_JOIN.match(line))
        ):
            out[-1] = prev + " " + line.strip()
        else:
            out.append(line)
        raw_prev, lead_prev = line, lead
    return out


#: the first non-blank characters a match of ``_STRUCTURED`` or ``_NO_JOIN`` (besides a digit)
#: can have, and the first characters of a ``_FIELD`` match
_STRUCTURED_FIRST = frozenset("|<#")
_NO_JOIN_FIRST = frozenset("-*+#.|><:=~^[")
_FIELD_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


#: every byte that is not an ASCII lowercase letter or digit becomes a space: ``_WORD`` runs
#: of lowercased text, found with a byte table instead of a regex (three times faster). In
#: UTF-8 every byte of a non-ASCII character is 0x80 or above, so it separates words there
#: as it does for ``_WORD``.
_WORD_BYTES = bytes(c if (48 <= c <= 57 or 97 <= c <= 122) else 32 for c in range(256))


def _words(text: str) -> list[bytes]:
    """``_WORD.findall(text.lower())``, as bytes."""
    return text.lower().encode("utf-8", "surrogatepass").translate(_WORD_BYTES).split()


_SKETCH = 16
_MIN_DOC_FOR_QUERY = 2000  # characters; a short document is read whole


def _drop_duplicates(blocks: list[_Block], key: str) -> int:
    """Exact and near-duplicate paragraphs (and code blocks) after their first occurrence."""
    seen_exact: dict[str, int] = {}
    worded: list[tuple[_Block, list[bytes]]] = []
    dropped = 0
    for b in blocks:
        if b.kind not in ("para", "code"):
            continue
        body = "\n".join(b.lines).strip()
        if len(body) < 40:
            continue
        if body in seen_exact:
            marker = omission_marker(
                1, seen_exact[body] + 1, "paragraphs", "exact repeat of an earlier one", key
            )
            seen_exact[body] += 1
            if _worth(b.lines, marker):
                _replace(b, marker)
                dropped += 1
            continue
        seen_exact[body] = 1
        if b.kind == "code":
            continue
        words = _words(body)  # the same words as in the lines joined with spaces
        if len(words) >= 14:  # else fewer than 12 shingles: not compared
            worded.append((b, words))
    if worded:
        dropped += _drop_near_duplicates(worded, key)
    return dropped


def _shingle_iter(words: list[bytes]) -> Iterator[bytes]:
    """The word 3-grams of ``words`` in order, repeats included, each as ``b"w1 w2 w3"``: the
    space sorts below every word character, so these strings sort as the word tuples would
    (and hash and compare faster)."""
    return map(b" ".join, zip(words, words[1:], words[2:], strict=False))


#: a paragraph with fewer shingles is neither compared nor compared with
_MIN_SHINGLES = 12


def _drop_near_duplicates(worded: list[tuple[_Block, list[bytes]]], key: str) -> int:
    """Paragraphs with the same word 3-grams as an earlier one for 85% or more.

    Every paragraph (``worded``: its block and words) with ``_MIN_SHINGLES`` shingles or
    more is compared with the kept ones before it (those not dropped), and kept unless
    dropped. Candidates share shingles of a small sketch (the ``_SKETCH`` smallest shingles,
    a deterministic min-hash): the kept paragraph whose sketch shares most of them with this
    one's (ties: the first one met going through the sketch in order) is then compared
    exactly.

    A paragraph is a near-duplicate of an earlier one only when 85% of its shingles are in
    earlier paragraphs: most are not (most documents have none), and only those are sketched
    and compared, against the sketches of the kept paragraphs that hold one of its sketch
    shingles, made when first needed. The share is found from how much the set of every
    earlier paragraph's shingles grows with this one's, without a set per paragraph. Past
    ``_LAZY_LIMIT`` such paragraphs, every kept paragraph is sketched and indexed by its
    sketch shingles instead.
    """
    kept: list[tuple[_Block, list[bytes]]] = []  # may hold paragraphs with too few shingles
    sets: dict[int, set[bytes]] = {}  # position in ``kept`` -> its shingles, once made
    sketches: dict[int, frozenset[bytes]] = {}  # position in ``kept`` -> its sketch, once made
    index: dict[bytes, list[int]] | None = None  # sketch shingle -> kept positions, past the limit
    seen: set[bytes] = set()  # the shingles of every earlier paragraph (more than needed: fine)
    flagged = 0
    dropped = 0
    for b, words in worded:
        size = len(seen)
        seen.update(_shingle_iter(words))
        new = len(seen) - size  # its distinct shingles found in no earlier paragraph
        # a paragraph that shares 85% of its shingles with an earlier one has at most 15% new
        # ones (16 in integers, so that no rounding can fail one that the float test below
        # lets through); first against its count of shingles with repeats, an upper bound
        may_repeat = new * 100 <= 16 * (len(words) - 2)
        sh: set[bytes] | None = None
        if may_repeat or index is not None:
            sh = set(_shingle_iter(words))
            if len(sh) < _MIN_SHINGLES:
                continue
            may_repeat = new * 100 <= 16 * len(sh)
        if not may_repeat or sh is None:
            if index is not None and sh is not None:
                for s in sorted(sh)[:_SKETCH]:
                    index.setdefault(s, []).append(len(kept))
                sets[len(kept)] = sh
            kept.append((b, words))
            continue
        sketch = sorted(sh)[:_SKETCH]
        flagged += 1
        if index is None and flagged > _LAZY_LIMIT:
            index = {}
            for k in range(len(kept)):
                if len(_kept_set(k, kept, sets)) >= _MIN_SHINGLES:
                    for s in sketches.get(k) or sorted(sets[k])[:_SKETCH]:
                        index.setdefault(s, []).append(k)
        if index is not None:
            hits = [index[s] for s in sketch if s in index]
        else:
            hits = _sketch_hits(sketch, kept, sets, sketches)
        # ties go to the first paragraph met (Counter keeps insertion order)
        best = max(Counter(chain.from_iterable(hits)).items(), key=itemgetter(1))[0] if hits else -1
        if best >= 0 and len(sh & sets[best]) / max(len(sh), len(sets[best])) >= 0.85:
            dropped += _drop_near_duplicate(b, kept[best][0].lines, key)
            continue
        if index is not None:
            for s in sketch:
                index.setdefault(s, []).append(len(kept))
        sets[len(kept)] = sh
        kept.append((b, words))
    return dropped


_LAZY_LIMIT = 16


def _kept_set(k: int, kept: list[tuple[_Block, list[bytes]]], sets: dict[int, set[bytes]]) -> set[bytes]:
    """The shingles of ``kept[k]``, made once."""
    sh = sets.get(k)
    if sh is None:
        sh = sets[k] = set(_shingle_iter(kept[k][1]))
    return sh


def _sketch_hits(
    sketch: list[bytes],
    kept: list[tuple[_Block, list[bytes]]],
    sets: dict[int, set[bytes]],
    sketches: dict[int, frozenset[bytes]],
) -> list[list[int]]:
    """For each shingle of ``sketch`` in order, the kept positions (of paragraphs with enough
    shingles) whose sketch holds it, those that hold none left out: what an index of every
    kept sketch gives, made for these only."""
    # a kept paragraph can have a sketch shingle only when it has the shingle at all
    candidates = [
        k
        for k in range(len(kept))
        if len(sh := _kept_set(k, kept, sets)) >= _MIN_SHINGLES and not sh.isdisjoint(sketch)
    ]
    for k in candidates:
        if k not in sketches:
            sketches[k] = frozenset(sorted(sets[k])[:_SKETCH])
    return [held for held in ([k for k in candidates if s in sketches[k]] for s in sketch) if held]


def _drop_near_duplicate(b: _Block, earlier_lines: list[str], key: str) -> int:
    """Replace ``b``, a near-duplicate of the paragraph of ``earlier_lines``; 1 if it was."""
    if len(b.lines) >= 3:
        # keep the lines that differ (a line number, a name), drop the ones seen before
        earlier = set(earlier_lines)
        same = [ln for ln in b.lines if ln in earlier]
        marker = omission_marker(len(same), len(b.lines), "lines", "same as in an earlier paragraph", key)
        if len(same) >= 2 and _worth(same, marker):
            b.lines = [*(ln for ln in b.lines if ln not in earlier), marker]
            b.kind = "marker"
            return 1
        return 0
    marker = omission_marker(1, 2, "paragraphs", "near-repeat of an earlier one", key)
    if _worth(b.lines, marker):
        _replace(b, marker)
        return 1
    return 0


def _worth(lines: list[str], marker: str) -> bool:
    """Whether dropping ``lines`` for ``marker`` saves enough to be worth a marker."""
    return sum(len(ln) + 1 for ln in lines) > 1.3 * len(marker)


def _replace(b: _Block, marker: str) -> None:
    b.lines = [marker]
    b.kind = "marker"


def _drop_boilerplate(blocks: list[_Block], key: str, text: str | None = None) -> int:
    """Badge lines, editor-variable comments, link lists, a short license and the middle of
    long code examples. ``text``: the text the blocks were made of, when the caller has it:
    badges and editor comments are looked for only where it holds their literals (every block
    line is a line of it, less trailing blanks)."""
    dropped = 0
    badges = text is None or "![" in text
    editor = text is None or "Local Variables:" in text
    for b in blocks if badges or editor else ():
        if b.kind in ("marker", "blank"):
            continue
        what = ""
        if badges and b.kind == "para" and all(_BADGE.match(ln) for ln in b.lines):
            what = "badge images"
        elif editor and b.kind in ("para", "code"):
            body = "\n".join(b.lines)
            if _EDITOR_VARS.search(body) and len(body) < 400:
                what = "editor settings comment"
        marker = omission_marker(len(b.lines), len(b.lines), "lines", what, key) if what else ""
        if marker and _worth(b.lines, marker):
            _replace(b, marker)
            dropped += 1
    return dropped + _drop_link_lists(blocks, key) + _drop_license(blocks, key) + _trim_long_code(blocks, key)


_LICENSE = re.compile(r"^#*\s*(?:copyright|licen[cs]e)\s*$", re.I)
LONG_CODE = 30  # lines; longer code examples keep their head and tail
_CODE_HEAD, _CODE_TAIL = 15, 5


def _drop_license(blocks: list[_Block], key: str) -> int:
    """A short copyright or license section (heading and body) becomes one marker."""
    for k, b in enumerate(blocks):
        if b.kind != "heading" or not _LICENSE.match(b.lines[0].strip()):
            continue
        end = k + 1
        while end < len(blocks) and blocks[end].kind != "heading":
            end += 1
        body = [ln for bb in blocks[k + 1 : end] for ln in bb.lines if ln]
        if sum(len(ln) for ln in body) > 600 or any(bb.kind == "marker" for bb in blocks[k + 1 : end]):
            continue
        n = len(body) + len(b.lines)
        marker = omission_marker(n, n, "lines", f"{b.lines[0].strip('# ')} notice", key)
        if not _worth([*b.lines, *body], marker):
            return 0
        for bb in blocks[k + 1 : end]:
            bb.lines, bb.kind = [], "marker"
        _replace(b, marker)
        return 1
    return 0


def _trim_long_code(blocks: list[_Block], key: str) -> int:
    """Code examples longer than ``LONG_CODE`` lines keep their first and last lines."""
    trimmed = 0
    for b in blocks:
        if b.kind != "code" or len(b.lines) <= LONG_CODE:
            continue
        fenced = _FENCE.match(b.lines[0]) is not None and _FENCE.match(b.lines[-1]) is not None
        inner = b.lines[1:-1] if fenced else b.lines
        cut = inner[_CODE_HEAD : len(inner) - _CODE_TAIL]
        indent = re.match(r"^\s*", inner[0]).group(0)  # type: ignore[union-attr]
        marker = indent + omission_marker(len(cut), len(inner), "lines", "middle of a long code example", key)
        middle = [*inner[:_CODE_HEAD], marker, *inner[len(inner) - _CODE_TAIL :]]
        b.lines = [b.lines[0], *middle, b.lines[-1]] if fenced else middle
        trimmed += 1
    return trimmed


def _is_link_defs(b: _Block) -> bool:
    return (
        b.kind == "para"
        and _LINK_DEF.match(b.lines[0]) is not None
        and all(_LINK_DEF.match(ln) or ln[:1] in (" ", "\t") for ln in b.lines)
    )


def _drop_link_lists(blocks: list[_Block], key: str) -> int:
    """Runs of link-definition blocks (blank lines between them included) become one marker."""
    dropped = 0
    k = 0
    while k < len(blocks):
        if not _is_link_defs(blocks[k]):
            k += 1
            continue
        run = [k]
        j = k + 1
        while j < len(blocks) and (blocks[j].kind == "blank" or _is_link_defs(blocks[j])):
            if blocks[j].kind != "blank":
                run.append(j)
            j += 1
        defs = sum(1 for r in run for ln in blocks[r].lines if _LINK_DEF.match(ln))
        marker = omission_marker(defs, defs, "link definitions", "link reference list", key)
        if _worth([ln for r in run for ln in blocks[r].lines], marker):
            for r in range(k, run[-1] + 1):
                blocks[r].lines = []
                blocks[r].kind = "marker"
            blocks[k].lines = [marker]
            dropped += 1
        k = j
    return dropped


def _drop_far_sections(blocks: list[_Block], query: str, key: str) -> int:
    """Drop whole sections that share no word with the request, naming their headings.

    Only when the request is specific enough to trust: at least two informative words
    (or one that looks like a name: ``snake_case``, ``dotted.name``, ``CamelCase``), a
    document of some size with at least four sections, and one section that holds
    two of the words (or the name) while other sections hold none.
    """
    raw = set(re.findall(r"[A-Za-z_][\w.]*\w", query))
    names = {w.lower() for w in raw if re.search(r"[_.]|[a-z][A-Z]", w)}
    terms = {w for w in _WORD.findall(query.lower()) if len(w) >= 4 and w not in _STOP}
    if len(terms) < 2 and not names:
        return 0
    if sum(len(ln) for b in blocks for ln in b.lines) < _MIN_DOC_FOR_QUERY:
        return 0
    sections: list[list[int]] = [[]]
    for k, b in enumerate(blocks):
        if b.kind == "heading":
            sections.append([])
        sections[-1].append(k)
    if len(sections) < 5:
        return 0
    hits = []
    for sec in sections:
        body = " ".join(ln for k in sec for ln in blocks[k].lines).lower()
        words = set(_WORD.findall(body))
        hits.append(len(terms & words) + 2 * sum(1 for nm in names if nm in body))
    # the introduction: text before the first heading, or the first section when there is none
    intro = 0 if any(blocks[k].kind == "para" for k in sections[0]) else 1
    if max(hits[intro + 1 :], default=0) < 2:
        return 0
    dropped = 0
    run: list[int] = []
    for s, _sec in enumerate([*sections, []]):
        far = intro < s < len(sections) and hits[s] == 0
        if far:
            run.append(s)
            continue
        if run:
            headings = [" ".join(blocks[sections[r][0]].lines[0].lstrip("#").split()) for r in run]
            what = "sections not about the request: " + ", ".join(f'"{n[:60]}"' for n in headings)
            first = blocks[sections[run[0]][0]]
            for r in run:
                for k in sections[r]:
                    blocks[k].lines = []
                    blocks[k].kind = "marker"
            first.lines = [omission_marker(len(run), len(sections) - 1, "sections", what, key), ""]
            dropped += len(run)
            run = []
    return dropped
