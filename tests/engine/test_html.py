from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ctxgate.engine._api import Context, retrieval_key
from ctxgate.engine.html import HtmlCompressor, _markdown
from tests.engine.corpus_recall import question_recall

HTML = HtmlCompressor()
BAL = Context(tool_name="WebFetch", level="balanced")

PARA = (
    "Compression of tool output matters because agents read every byte of it, and the {n}th paragraph "
    "explains one more reason in a full sentence that a reader would want to keep intact."
)
PAGE = f"""<!DOCTYPE html>
<html><head><title>Context Gates Explained | Example Blog</title>
<style>body {{ color: red; }}</style><script>var tracking = 1;</script></head>
<body>
<nav><ul>{"".join(f'<li><a href="/section{i}">Section {i}</a></li>' for i in range(40))}</ul></nav>
<article>
<h1>Context Gates Explained</h1>
<div class="byline">By Jane Writer</div>
<time datetime="2024-03-01">March 1, 2024</time>
{"".join(f"<p>{PARA.format(n=i)}</p>" for i in range(1, 9))}
<h2>How to use it</h2>
<p>Point the client at the gateway, see <a href="https://example.com/docs/setup">the setup guide</a>.</p>
<pre><code>export BASE_URL=http://localhost:8787</code></pre>
<figure><img src="x.png"><figcaption>Figure 1: the gateway in front of the provider</figcaption></figure>
</article>
<footer>{"".join(f'<a href="/legal{i}">Legal link {i}</a>' for i in range(30))}</footer>
</body></html>"""


def test_score() -> None:
    assert HTML.score(PAGE, BAL) > 0.9
    assert HTML.score("<div><p>hi</p>" * 20, BAL) > 0.5
    assert HTML.score("plain text with a <b> tag", BAL) < 0
    assert HTML.score('{"html": "<div>"}', BAL) < 0


def test_main_content_kept_chrome_dropped() -> None:
    r = HTML.compress(PAGE, BAL)
    out = r.text
    assert "Context Gates Explained" in out
    assert "Jane Writer" in out
    assert PARA.format(n=1) in out and PARA.format(n=8) in out
    assert "How to use it" in out
    assert "https://example.com/docs/setup" in out
    assert "export BASE_URL=http://localhost:8787" in out
    assert "Figure 1: the gateway in front of the provider" in out
    assert "var tracking" not in out and "color: red" not in out and "Legal link 7" not in out
    key = retrieval_key(PAGE)
    assert out.rstrip().endswith(f"; retrieve: {key}]") and "characters of HTML omitted" in out
    assert r.originals[0].text == PAGE
    assert len(out) < len(PAGE) / 2


def test_lossless_level_leaves_page() -> None:
    r = HTML.compress(PAGE, Context(level="lossless"))
    assert r.text == PAGE and not r.originals


def test_table_only_page() -> None:
    page = "<html><body><table><tr><td>alpha cell</td><td>beta cell</td></tr></table><script>x=1</script></body></html>"
    r = HTML.compress(page, BAL)
    assert "alpha cell" in r.text and "beta cell" in r.text and "x=1" not in r.text


def test_visible_text_when_main_content_misses() -> None:
    # the rules take a top-level id="sidebar" for chrome; the page has nothing else
    page = f"<html><body><div id='sidebar'>{''.join(f'<p>{PARA.format(n=i)}</p>' for i in range(4))}</div></body></html>"
    r = HTML.compress(page, BAL)
    assert r.transforms == ("html:visible-text",)
    assert PARA.format(n=0) in r.text and PARA.format(n=3) in r.text and "visible text kept" in r.text


def test_huge_page_is_extracted_whole() -> None:
    filler = "".join(
        f"<div><p>Filler paragraph {i} of a very long listing page.</p></div>" for i in range(8000)
    )
    page = PAGE.replace("</article>", "</article>" + filler)
    r = HTML.compress(page, BAL)
    assert r.transforms == ("html:main-content",)
    assert (
        PARA.format(n=3) in r.text and "Filler paragraph 7999 of" in r.text and "var tracking" not in r.text
    )
    assert r.originals[0].text == page


def test_byte_order_mark_page() -> None:
    page = "\ufeff" + PAGE
    assert HTML.score(page, BAL) > 0.9
    r = HTML.compress(page, BAL)
    assert r.text.startswith("Title: Context Gates Explained") and PARA.format(n=8) in r.text


def test_no_title_no_body_text() -> None:
    r = HTML.compress(f"<html><body><article><p>{PARA.format(n=1)}</p></article></body></html>", BAL)
    assert r.text.startswith(PARA.format(n=1))
    try:
        HTML.compress("<html><body><script>x=1</script></body></html>", BAL)
    except ValueError as exc:
        assert "no text" in str(exc)
    else:
        raise AssertionError("a page without text must not compress")


def test_markdown_from_minimal_html() -> None:
    minimal = (
        '<h2> Install <a href="#install">#</a> </h2>\n\n'
        '<p> Run <a href="https://x.y/a?b=1&amp;c=2">the   script</a> <a href="/t">now</a> &amp; wait &lt;5s&gt;. </p>\n\n'
        "<ul>\n  <li>one<ul>\n  <li>nested</li>\n</ul></li>\n  <li>two</li>\n</ul>\n"
        "<ol>\n  <li>first</li>\n  <li>second</li>\n</ol>\n"
        "<pre>def f():<br>    return 1 &lt; 2\n</pre>\n"
        '<p>see <a href="#top">top of page</a> or <a href="javascript:void(0)">menu</a></p>'
        "<p>Vladi\u00admir\u200b Putin</p>\n\n"
        "Option\t\tDefault\n--port\t\t8080\n--host\t\t\t\tHost\t\t\n"
        "<p>Line one<br>\nline two</p>"
    )
    assert _markdown(minimal) == (
        "## Install\n\n"
        "Run [the script](https://x.y/a?b=1&c=2) [now](/t) & wait <5s>.\n\n"
        "- one\n  - nested\n- two\n\n"
        "1. first\n2. second\n\n"
        "```\ndef f():\n    return 1 < 2\n```\n\n"
        "see top of page or menu\n\n"
        "Vladimir Putin\n\n"
        "Option | Default\n--port | 8080\n--host |  | Host\n\n"
        "Line one\nline two"
    )


def test_deterministic_and_never_raises_on_broken_markup() -> None:
    broken = "<!DOCTYPE html><html><body><p>unclosed <a href='x'>link <div><pre>code" + "<li>item" * 50
    for page in (broken, "<!DOCTYPE html>", "<!DOCTYPE html><html>\x00\udcff</html>"):
        try:
            first = HTML.compress(page, BAL).text
        except ValueError:
            continue
        assert HTML.compress(page, BAL).text == first


_PIECES = st.one_of(
    st.sampled_from(
        [
            "<p>",
            "</p>",
            "<div class='nav'>",
            "</div>",
            "<ul>",
            "<li>",
            "</ul>",
            "<pre>",
            "</pre>",
            "<br>",
            "<a href='#x'>",
            '<a href="/y?a=1&amp;b">',
            "</a>",
            "<h2>",
            "</h2>",
            "<script>",
            "</script>",
            "<nav>",
            "</nav>",
            "<table><tr><td>",
            "&lt;",
            "&amp;",
            "<!--",
            "-->",
            "<",
            ">",
            "\n",
            "\u00ad",
        ]
    ),
    st.text(max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_PIECES, max_size=60))
def test_never_fails_on_tag_soup(pieces: list[str]) -> None:
    page = "<!DOCTYPE html><html><body>" + "".join(pieces)
    try:
        first = HTML.compress(page, BAL)
    except ValueError:  # no text, or text that cannot be encoded: the dispatcher passes the page on
        return
    assert HTML.compress(page, BAL).text == first.text
    assert first.originals[0].text == page


def test_corpus_question_recall(corpus: Path) -> None:
    folder = corpus / "outputs" / "html"
    outputs = {
        f.name: HTML.compress(f.read_text(), BAL).text for f in folder.iterdir() if f.suffix == ".html"
    }
    assert question_recall(corpus, "html", outputs) >= 0.98
