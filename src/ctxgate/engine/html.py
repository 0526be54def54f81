"""HTML pages: main-content extraction to markdown.

Level ``balanced`` only (extraction drops page chrome, so it is lossy). The page is
parsed once with resiliparse (lexbor, a C HTML5 parser; no model, no download) and its
text written twice as minimal HTML (headings, paragraphs, lists, ``<pre>``, links): with
resiliparse's rule-based main-content pass, which finds where the article is and drops
navigation, global headers and footers, sidebars, search boxes, hidden parts, ads and
share widgets; and as the whole visible text less what the page marks as navigation,
side content, dialogs or hidden (``_CHROME``). Inside the main content the rules drop
too much (every list near ``<body>``, lists dense with links, single characters between
elements), so what the visible text has between two lines the main content kept is put
back unless it is a menu (``_restore_dropped``). ``_markdown`` writes the result.
Recall over precision: a compressed page must still hold every fact of the article;
a little chrome kept costs less than a paragraph lost. When the main content comes out
nearly empty (a wrapper the rules mistake for chrome), the visible text is used instead
(``html:visible-text``).

The output starts with the page's title, author, date, address, byline and figure
captions as far as the page states them and the body does not already say them,
then the markdown, then one ``omission_marker`` saying what was dropped with the
retrieval key of the whole page.

Level ``lossless``: the page is left as it is.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_left

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

from ctxgate.engine._api import Context, Original, Result, omission_marker, retrieval_key

_DOCTYPE = re.compile(
    r"\A\ufeff?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<!doctype html|\A\s*<html[\s>]", re.I | re.S
)
_TAG = re.compile(r"<(?:div|p|a|span|li|td|script|meta|link|img|br|section|article|nav|h[1-6])\b", re.I)
#: a character of three UTF-8 bytes before a tag: see ``_keep_lone_characters``
_BEFORE_TAG = re.compile(r"[\u0800-\ud7ff\uf900-\uffff](?=[ \t\r\n]*<)")
#: resiliparse's main-content rules walk up every element's ancestors, so their cost grows
#: with the square of the nesting depth (20,000 nested elements: 10 s); a page nested deeper
#: than this (real pages stay under 100) gets its visible text instead
MAX_DEPTH = 256
_DEEPER = " > ".join(["*"] * MAX_DEPTH)
#: below this many tags the square stays small (about 0.1 s at worst): the depth is not checked
_DEPTH_CHECK_TAGS = 2000
#: main content with fewer characters of text than this is taken for a miss: visible text instead
MIN_MAIN_CHARS = 250


class HtmlCompressor:
    name = "html"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.95
    min_tokens = 200

    def score(self, text: str, ctx: Context) -> float:
        head = text[:5000]
        if _DOCTYPE.match(head):
            return 0.95
        tags = len(_TAG.findall(head))
        if tags >= 10 and head.lstrip("\ufeff \t\r\n").startswith("<"):
            return 0.8
        return -1.0

    def compress(self, text: str, ctx: Context) -> Result:
        if ctx.level != "balanced":
            return Result(text, skipped=("html: extraction is lossy, level is not balanced",))
        tree = HTMLTree.parse(_keep_lone_characters(text.removeprefix("\ufeff")))
        if tree.body is None:
            raise ValueError("html: no body")
        visible = _minimal(tree, main_content=False)
        body, transform = "", "html:main-content"
        if not _too_deep(text, tree):  # else the main-content rules would take seconds: visible text
            body = _markdown(_restore_dropped(_minimal(tree, main_content=True), visible))
        if len(body) < MIN_MAIN_CHARS:
            whole = _markdown(visible)
            if len(whole) > len(body):
                body, transform = whole, "html:visible-text"
        if not body.strip():
            raise ValueError("html: no text in page")
        flat = " ".join(body.split())
        head = [f"{label}: {value}" for label, value in _extras(tree) if value not in flat]
        body = "\n".join([*head, body])
        key = retrieval_key(text)
        what = "page chrome (navigation, scripts, styles, boilerplate); main content kept as markdown"
        if transform == "html:visible-text":
            what = "markup, scripts and styles; the page's visible text kept"
        marker = omission_marker(len(text) - len(body), len(text), "characters of HTML", what, key)
        return Result(f"{body}\n\n{marker}", (transform,), (Original(key, text),))


#: never restored from the visible text (see ``_restore_dropped``): what the page marks as
#: navigation, side content, search, dialogs, or hidden
_CHROME = (
    *("head", "script", "style", "noscript", "template", "svg", "iframe", "nav", "aside", "[hidden]"),
    *("[aria-hidden=true]", "[role=navigation]", "[role=complementary]", "[role=search]", "[role=dialog]"),
    *("[role=alert]", "[role=menu]", "[role=menubar]", "[role=banner]", "[role=contentinfo]"),
    *(".hidden", ".d-none", ".is-hidden", '[style*="display:none"]', '[style*="display: none"]'),
)


def _too_deep(page: str, tree: HTMLTree) -> bool:
    """Nested deeper than ``MAX_DEPTH`` (a CSS child chain, matched in C: well under 1 ms)."""
    if page.count("<") < _DEPTH_CHECK_TAGS or tree.document is None:
        return False
    return tree.document.query_selector(_DEEPER) is not None


def _keep_lone_characters(page: str) -> str:
    """A zero-width space (dropped again in ``_markdown``) after every text node of one
    character of three UTF-8 bytes ("와", "を", "的", "→" between two elements).

    resiliparse's main-content pass takes such a node for an icon-font glyph and drops it
    (its test reads the bytes in the wrong order). Private-use characters, the real icon
    glyphs, are left alone."""
    cuts = []
    for m in _BEFORE_TAG.finditer(page):
        i = m.start() - 1
        while i >= 0 and page[i] in " \t\r\n":
            i -= 1
        if i >= 0 and page[i] == ">":
            cuts.append(m.end())
    if not cuts:
        return page
    parts, prev = [], 0
    for cut in cuts:
        parts += [page[prev:cut], "\u200b"]
        prev = cut
    parts.append(page[prev:])
    return "".join(parts)


def _minimal(tree: HTMLTree, *, main_content: bool) -> str:
    """resiliparse's minimal HTML of the page: with its main-content rules, or the visible
    text less ``_CHROME``."""
    return extract_plain_text(
        tree,
        preserve_formatting="minimal_html",
        main_content=main_content,
        links=True,
        alt_texts=False,
        list_bullets=True,
        skip_elements=None if main_content else list(_CHROME),
    )


_HAS_TEXT = re.compile(r"(?:^|>)\s*[^<\s]")
_ANCHOR = re.compile(r"<a\b[^>]*>(.*?)</a>", re.S)
_ANY_TAG = re.compile(r"<[^>]+>")


def _restore_dropped(main: str, visible: str) -> str:
    """``main`` with what the main-content rules dropped inside the main content put back.

    Both are resiliparse's minimal HTML of one page: with its main-content rules, and the
    visible text less ``_CHROME``; the lines of ``main`` are lines of ``visible``, in the
    same order. The rules find the main content well (what comes before its first line
    and after its last is page chrome) but inside it they drop too much: every list less
    than three levels below ``<body>`` (all the lists of a simple documentation page),
    lists dense with links (API docs: "as_ref converts from &Option<T> to Option<&T>",
    with three links). So every run of ``visible`` lines between two lines with text that
    ``main`` kept is put back in place, unless it is a menu (``_menu``); a line ``main`` has
    between the same two lines and the run has whole, word for word, was a shortened copy
    (a date cut out of a byline) and goes."""
    kept = main.split("\n")
    lines = visible.split("\n")
    where: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        if _HAS_TEXT.search(line):  # tag-only lines ("<ul>") repeat too often to anchor on
            where.setdefault(line, []).append(i)
    mate: dict[int, int] = {}  # index in ``lines`` -> index in ``kept``, in order
    nxt = 0
    for k, line in enumerate(kept):
        places = where.get(line)
        if places:
            j = bisect_left(places, nxt)  # not a scan: a page may repeat one line thousands of times
            if j < len(places):
                mate[places[j]], nxt = k, places[j] + 1
    inserts: dict[int, list[str]] = {}
    shortened: set[int] = set()  # kept lines that a put-back run has whole (a date cut from a line)
    prev = -1
    for i in sorted(mate):
        if prev >= 0 and i > prev + 1 and not _menu(lines[prev + 1 : i]):
            run = lines[prev + 1 : i]
            inserts[mate[prev]] = run
            words = set(_ANY_TAG.sub(" ", "\n".join(run)).split())
            for k in range(mate[prev] + 1, mate[i]):
                if set(_ANY_TAG.sub(" ", kept[k]).split()) <= words:
                    shortened.add(k)
        prev = i
    if not inserts:
        return main
    out: list[str] = []
    for k, line in enumerate(kept):
        if k not in shortened:
            out.append(line)
        out.extend(inserts.get(k, ()))
    return "\n".join(out)


def _menu(run: list[str]) -> bool:
    """No words, or three links or more and no word outside them (a menu, a table of
    contents, a tag list). A list whose items say something besides their links, or
    one or two bare links (an API doc's "<Error>" type), is content."""
    outside = sum(_words(_ANY_TAG.sub(" ", _ANCHOR.sub(" ", line))) for line in run)
    if outside:
        return False
    labels = [label for line in run for label in _ANCHOR.findall(line)]
    return len(labels) >= 3 or not any(_words(_ANY_TAG.sub(" ", label)) for label in labels)


def _words(text: str) -> int:
    """Words with a letter in them (not "(1)", "|" or "▼"); entities count as a space."""
    return sum(1 for word in html.unescape(text).split() if any(c.isalpha() for c in word))


_MARKUP = re.compile(r"<(/?)([a-z0-9]+)([^>]*)>")
_HREF = re.compile(r'href="([^"]*)"')
_HEADING = {f"h{n}": "#" * n for n in range(1, 7)}


def _markdown(minimal: str) -> str:
    """Markdown from resiliparse's minimal HTML (headings, paragraphs, lists, ``pre``,
    ``br`` and links; everything else is already text, entities escaped)."""
    out: list[str] = []
    lists: list[list[int]] = []  # one [counter] per open list; counter -1 for <ul>
    links: list[tuple[int, str]] = []  # (where the link text starts in ``out``, href)
    pre = 0
    pos = 0
    bullet_at = -1  # len(out) right after the latest list bullet
    minimal = _TEXT_LINK.sub(_text_link, minimal)  # most links, at C speed; the rest below
    for m in _MARKUP.finditer(minimal):
        if m.start() > pos:
            chunk = html.unescape(minimal[pos : m.start()])
            if pre:
                out.append(chunk)
            elif chunk.strip() or not lists:  # in a list, its items make the line breaks
                out.append(_squeeze(chunk, out))
        pos = m.end()
        closing, tag, attrs = m.group(1) == "/", m.group(2), m.group(3)
        if tag in _HEADING:
            out.append("\n\n" if closing else f"\n\n{_HEADING[tag]} ")
        elif tag == "p":
            if not lists:
                out.append("\n\n")
            elif not closing and len(out) != bullet_at and not out[-1].endswith("\n"):
                out.append("\n")  # a second paragraph of a list item: its own line
        elif tag == "br":
            out.append("\n")
        elif tag == "pre":
            pre += -1 if closing else 1
            if closing:
                _trim_end(out)
            out.append("\n```\n\n" if closing else "\n\n```\n")
        elif tag in ("ul", "ol"):
            if closing:
                if lists:
                    lists.pop()
            else:
                lists.append([-1 if tag == "ul" else 0])
            if not lists:
                out.append("\n\n")  # a paragraph break after the outermost list
        elif tag == "li" and not closing:
            indent = "  " * max(len(lists) - 1, 0)
            bullet = "-"
            if lists and lists[-1][0] >= 0:
                lists[-1][0] += 1
                bullet = f"{lists[-1][0]}."
            out.append(f"\n{indent}{bullet} ")
            bullet_at = len(out)
        elif tag == "a":
            if not closing:
                found = _HREF.search(attrs)
                links.append((len(out), html.unescape(found.group(1)) if found else ""))
            elif links:
                start, href = links.pop()
                label = "".join(out[start:]).strip()
                kind = _link_kind(label, href)
                if kind != "text":
                    del out[start:]
                if kind == "link":
                    out.append(f"[{label}]({href})")
    if pos < len(minimal):
        chunk = html.unescape(minimal[pos:])
        out.append(chunk if pre else _squeeze(chunk, out))
    # soft hyphens and zero-width spaces: invisible on the page, they cost tokens and split words
    joined = "".join(out).replace("\u00ad", "").replace("\u200b", "")
    lines = [line.rstrip() for line in joined.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_TEXT_LINK = re.compile(r"<a\b([^>]*)>([^<]*)</a>")


def _text_link(m: re.Match[str]) -> str:
    """A link whose label is text only, as markdown (still escaped: ``_markdown`` unescapes
    text after this): ``[label](href)``, or the label alone (in-page anchors, scripts), or
    nothing (an anchor mark such as "#" or "¶")."""
    found = _HREF.search(m.group(1))
    href = found.group(1) if found else ""
    raw = m.group(2)
    label = " ".join(raw.split())
    before = " " if raw[:1].isspace() else ""
    after = " " if raw[-1:].isspace() else ""
    kind = _link_kind(html.unescape(label), html.unescape(href))
    if kind == "link":
        return f"{before}[{label}]({href}){after}"
    return f"{before}{label}{after}" if kind == "text" and label else before or after


def _squeeze(chunk: str, out: list[str]) -> str:
    """Text outside ``pre``: white space within a line as one space, none at a line start.

    Line breaks are kept: outside tags, resiliparse writes them only between blocks it has
    no tag for, such as table rows, whose cells it separates with two tabs (written here as
    ``a | b``)."""
    if "\n" in chunk or "\t\t" in chunk:
        text = "\n".join(_row(line) for line in chunk.split("\n"))
    else:  # most chunks: a run of words between two inline tags
        text = " ".join(chunk.split())
    after_break = not out or out[-1].endswith("\n")
    if not text.strip():
        if "\n" in chunk:
            return "" if after_break else "\n"
        return " " if chunk and not after_break and not out[-1].endswith(" ") else ""
    if after_break:
        text = text.lstrip("\n")
    elif chunk[:1] in (" ", "\t") and not out[-1].endswith(" "):
        text = " " + text
    if chunk[-1:] in (" ", "\t"):
        text += " "
    return text


def _row(line: str) -> str:
    if "\t\t" not in line:
        return " ".join(line.split())
    cells = [" ".join(cell.split()) for cell in line.split("\t\t")]
    while cells and not cells[-1]:
        cells.pop()
    return " | ".join(cells)


def _trim_end(out: list[str]) -> None:
    """Drop the white space that ends ``out`` (a ``pre`` block's last line break)."""
    while out and not out[-1].strip():
        out.pop()
    if out:
        out[-1] = out[-1].rstrip()


def _link_kind(label: str, href: str) -> str:
    """How a link is written: ``"link"`` (``[label](href)``: to another page or file),
    ``"mark"`` (dropped: a heading's or paragraph's anchor mark such as "#", "¶", "§"), or
    ``"text"`` (the label alone: an in-page anchor, a script call, a mail address)."""
    if href.startswith("#") and not any(c.isalnum() for c in label):
        return "mark"
    if label and href and not href.startswith(("#", "javascript:", "mailto:")):
        return "link"
    return "text"


_BYLINE = '[class*="byline"], [class*="author"], [rel="author"], [itemprop*="author"]'
_CAPTION = 'figcaption, [class*="caption"]'

#: (label, CSS selector) for the page's metadata; the first match in document order wins
_META = (
    ("Headline", 'meta[property="og:title"], meta[name="twitter:title"]'),
    ("Author", 'meta[name="author"], meta[property="article:author"], meta[name="byl"]'),
    (
        "Date",
        'meta[property="article:published_time"], meta[name="date"], meta[itemprop="datePublished"], '
        'meta[name="pubdate"], meta[property="og:published_time"], time[datetime]',
    ),
    ("URL", 'link[rel="canonical"], meta[property="og:url"]'),
    ("Site", 'meta[property="og:site_name"]'),
)
#: where each element of ``_META`` keeps its value
_VALUE_ATTR = {"meta": "content", "time": "datetime", "link": "href"}


def _extras(tree: HTMLTree) -> list[tuple[str, str]]:
    """Title, author, date, address, byline and figure captions: the page's metadata,
    and what main-content extraction often drops."""
    doc = tree.document
    if doc is None:
        return []
    found: list[tuple[str, str]] = []
    title = " ".join((tree.title or "").split())
    if title:
        found.append(("Title", title))
    for label, selector in _META:
        el = doc.query_selector(selector)
        if el is None:
            continue
        value = " ".join((el.getattr(_VALUE_ATTR.get(el.tag or "", "content")) or "").split())[:300]
        if value and not any(value == v for _, v in found):
            found.append((label, value))
    for label, selector, limit, longest in (("Byline", _BYLINE, 2, 120), ("Caption", _CAPTION, 4, 300)):
        seen: set[str] = set()
        for el in doc.query_selector_all(selector):
            if el.tag in ("meta", "link"):
                continue
            value = " ".join((el.text or "").split())
            if value and len(value) <= longest and value not in seen:
                seen.add(value)
                found.append((label, value))
                if len(seen) >= limit:
                    break
    return found
