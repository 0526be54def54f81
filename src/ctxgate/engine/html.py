"""HTML pages: main-content extraction to markdown.

Level ``balanced`` only (extraction drops page chrome, so it is lossy): the page
goes through trafilatura (a maintained main-content extractor, already a
dependency, offline) with links, formatting, tables and code blocks kept. The
output starts with the page's title, author, date, address, byline and figure
captions as far as the page states them (read with lxml: trafilatura's own
metadata pass costs as much as the extraction), then the main text as markdown,
then one ``omission_marker``
saying what was dropped (navigation, scripts, styles, boilerplate) with the
retrieval key of the whole page. When trafilatura finds no main content, the
visible text of the page (scripts, styles and hidden parts removed, one line per
block element) is used instead; so it is for pages over ``MAX_EXTRACT`` characters,
where extraction would take seconds.

Level ``lossless``: the page is left as it is.
"""

from __future__ import annotations

import re

import lxml.html
import trafilatura
from lxml import etree
from trafilatura.utils import load_html

from ctxgate.engine._api import Context, Original, Result, omission_marker, retrieval_key

_DOCTYPE = re.compile(
    r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<!doctype html|\A\s*<html[\s>]", re.I | re.S
)
_TAG = re.compile(r"<(?:div|p|a|span|li|td|script|meta|link|img|br|section|article|nav|h[1-6])\b", re.I)
#: characters; above this, trafilatura takes seconds, and the visible text is used instead
MAX_EXTRACT = 400_000
_INVISIBLE = ("script", "style", "noscript", "template", "svg", "iframe", "head")
_BLOCKS = frozenset(
    [
        "p",
        "div",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "blockquote",
        "section",
        "article",
        "header",
        "footer",
        "br",
        "table",
        "ul",
        "ol",
        "dt",
        "dd",
    ]
)


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
        if tags >= 10 and head.lstrip().startswith("<"):
            return 0.8
        return -1.0

    def compress(self, text: str, ctx: Context) -> Result:
        if ctx.level != "balanced":
            return Result(text, skipped=("html: extraction is lossy, level is not balanced",))
        key = retrieval_key(text)
        if len(text) > MAX_EXTRACT:
            # main-content extraction grows too slow on huge pages: visible text instead
            visible = _visible_text(text)
            if not visible.strip():
                raise ValueError("html: no text in page")
            what = "markup, scripts and styles of a very large page; visible text kept"
            marker = omission_marker(len(text) - len(visible), len(text), "characters of HTML", what, key)
            return Result(f"{visible}\n\n{marker}", ("html:visible-text",), (Original(key, text),))
        tree = load_html(text)
        if tree is None:
            raise ValueError("html: parse failed")
        extras = _extras(tree)
        extracted = trafilatura.extract(
            tree,
            output_format="markdown",
            with_metadata=False,
            include_links=True,
            include_formatting=True,
            include_tables=True,
            include_comments=False,
            include_images=False,
            favor_recall=True,
            deduplicate=False,
            fast=True,
        )
        transform = "html:main-content"
        if not extracted or not extracted.strip():
            extracted = _visible_text(text)
            transform = "html:visible-text"
        if not extracted.strip():
            raise ValueError("html: no text in page")
        flat = " ".join(extracted.split())
        head = [f"{label}: {value}" for label, value in extras if value not in flat]
        body = "\n".join([*head, extracted.strip()])
        what = "page chrome (navigation, scripts, styles, boilerplate); main content kept as markdown"
        marker = omission_marker(len(text) - len(body), len(text), "characters of HTML", what, key)
        return Result(f"{body}\n\n{marker}", (transform,), (Original(key, text),))


_BYLINE = (
    "//*[contains(@class,'byline') or contains(@class,'author') or @rel='author' "
    "or contains(@itemprop,'author')]"
)
_CAPTION = "//figcaption | //*[contains(@class,'caption')]"


#: (label, xpath giving a string) for the page's metadata, first non-empty wins
_META = (
    ("Headline", "string((//meta[@property='og:title' or @name='twitter:title']/@content)[1])"),
    ("Author", "string(//meta[@name='author' or @property='article:author' or @name='byl']/@content)"),
    (
        "Date",
        "string((//meta[@property='article:published_time' or @name='date' or @itemprop='datePublished'"
        " or @name='pubdate' or @property='og:published_time']/@content | //time/@datetime)[1])",
    ),
    ("URL", "string((//link[@rel='canonical']/@href | //meta[@property='og:url']/@content)[1])"),
    ("Site", "string(//meta[@property='og:site_name']/@content)"),
)


def _extras(tree: lxml.html.HtmlElement) -> list[tuple[str, str]]:
    """Title, author, date, address, byline and figure captions: the page's metadata
    (read here, much cheaper than trafilatura's own) and what main-content extraction
    often drops."""
    found: list[tuple[str, str]] = []
    title = tree.find(".//title")
    if title is not None:
        found.append(("Title", " ".join(title.text_content().split())))
    for label, xpath in _META:
        value = tree.xpath(xpath)
        if isinstance(value, str) and value.strip():
            value = " ".join(value.split())[:300]
            if not any(value == v for _, v in found):
                found.append((label, value))
    for label, xpath, limit, longest in (("Byline", _BYLINE, 2, 120), ("Caption", _CAPTION, 4, 300)):
        seen: set[str] = set()
        for el in tree.xpath(xpath):
            value = " ".join(el.text_content().split())
            if value and len(value) <= longest and value not in seen and el.tag not in ("meta", "link"):
                seen.add(value)
                found.append((label, value))
                if len(seen) >= limit:
                    break
    return [(k, v) for k, v in found if v]


def _visible_text(page: str) -> str:
    """The text a reader sees, one line per block element; no scripts or styles."""
    try:
        root = lxml.html.document_fromstring(page)
    except (etree.ParserError, ValueError):
        return ""
    for el in root.iter(*_INVISIBLE):
        el.drop_tree()
    title = page_title(page)
    parts: list[str] = [f"# {title}"] if title else []
    line: list[str] = []
    for event, el in etree.iterwalk(root, events=("start", "end")):
        tag = el.tag if isinstance(el.tag, str) else ""
        if event == "start":
            if tag in _BLOCKS and line:
                parts.append(" ".join("".join(line).split()))
                line = []
            if el.text:
                line.append(el.text)
        else:
            if tag in _BLOCKS and line:
                parts.append(" ".join("".join(line).split()))
                line = []
            if el.tail:
                line.append(el.tail)
    if line:
        parts.append(" ".join("".join(line).split()))
    return "\n".join(p for p in parts if p)


def page_title(page: str) -> str:
    m = re.search(r"<title[^>]*>(.*?)</title>", page[:100000], re.I | re.S)
    return " ".join(m.group(1).split()) if m else ""
