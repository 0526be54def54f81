from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ctxgate.engine._api import Context, retrieval_key
from ctxgate.engine.html import MAX_DEPTH, HtmlCompressor, _markdown, _restore_dropped
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


def _article(inner: str) -> str:
    intro = f"<p>{PARA.format(n=1)} {PARA.format(n=2)}</p>"
    return f"<!DOCTYPE html><html><body><main><div><div class='docblock'>{intro}{inner}</div></div></main></body></html>"


def test_lone_characters_between_elements_are_kept() -> None:
    # resiliparse's main-content pass drops a text node of one 3-byte character
    page = _article(
        "<p>케이스 처리를 위해 <code>Result</code>와 <code>Option</code> 사이에는</p>"
        "<p><code>A</code>を<code>B</code>に <code>C</code>的<code>D</code> <b>x</b>→<b>y</b></p>"
    )
    out = HTML.compress(page, BAL).text
    assert "Result와 Option 사이에는" in out
    assert "AをBに C的D x→y" in out
    assert "\u200b" not in out


def test_lists_of_described_links_are_content() -> None:
    # resiliparse's rules drop a list dense with links
    described = "".join(
        f"<li><a href='enum.Option.html#method.{m}'><code>{m}</code></a> converts from "
        f"<code><a href='p.html'>&amp;</a><a href='o.html'>Option</a>&lt;T&gt;</code> to a reference</li>"
        for m in ("as_ref", "as_mut", "as_deref")
    )
    page = _article(
        f"<h3>Adapters for working with references</h3><ul>{described}</ul><p>{PARA.format(n=3)}</p>"
    )
    out = HTML.compress(page, BAL).text
    assert "[as_ref](enum.Option.html#method.as_ref) converts from" in out
    assert out.index("Adapters for working") < out.index("as_deref") < out.index(PARA.format(n=3))


def test_lists_of_a_simple_documentation_page_are_content() -> None:
    # resiliparse's rules drop every list less than three levels below <body>
    items = "".join(
        f"<li><p>Step {i}: run <code>tool --step {i}</code> and check its output.</p></li>" for i in range(4)
    )
    page = (
        "<!DOCTYPE html><html><head><title>tool install</title></head><body><section><div id='_content'>"
        f"<h1>tool install</h1><p>{PARA.format(n=1)}</p><ul>{items}</ul><p>{PARA.format(n=2)}</p>"
        "</div></section></body></html>"
    )
    out = HTML.compress(page, BAL).text
    assert "- Step 0: run tool --step 0 and check its output." in out and "- Step 3: run" in out
    assert out.index(PARA.format(n=1)) < out.index("Step 0") < out.index(PARA.format(n=2))


def test_dropped_runs_restored_only_between_kept_lines() -> None:
    main = "<h1>Title</h1>\n\n<p>Intro.</p>\n\n<p>Outro.</p>"
    visible = "\n".join(
        [
            "<ul>",
            '  <li><a href="/">Home</a></li>',
            "</ul>",
            "<h1>Title</h1>",
            "<p>Intro.</p>",
            "<ul>",
            '  <li><a href="a.html">as_ref</a> converts from a reference</li>',
            '  <li><a href="m.html">as_mut</a> converts from a mutable one</li>',
            "</ul>",
            "<p>Outro.</p>",
            '<ul><li><a href="/more">More</a> read more of this</li></ul>',
        ]
    )
    out = _restore_dropped(main, visible)
    assert "as_ref</a> converts from a reference" in out and "as_mut</a> converts" in out
    assert out.index("Intro.") < out.index("as_ref") < out.index("Outro.")
    assert "Home" not in out and "More" not in out  # outside the main content
    assert _markdown(out).startswith(
        "# Title\n\nIntro.\n\n- [as_ref](a.html) converts from a reference\n- [as_mut]"
    )
    # a menu between kept lines (three links or more, no word outside them) stays out
    menu = (
        "<h1>Title</h1>\n<ul>\n  <li><a href='/b'>Blog</a></li>\n  <li><a href='/a'>About us</a></li>\n"
        "  <li><a href='/s'>Share on Facebook</a></li>\n</ul>\n<p>Intro.</p>"
    )
    assert _restore_dropped("<h1>Title</h1>\n<p>Intro.</p>", menu) == "<h1>Title</h1>\n<p>Intro.</p>"
    # one bare link (an API doc's parameter type) is content
    typed = "<h1>Title</h1>\n<ul>\n  <li><a href='err.html'>&lt;Error&gt;</a></li>\n</ul>\n<p>Intro.</p>"
    assert "&lt;Error&gt;" in _restore_dropped("<h1>Title</h1>\n<p>Intro.</p>", typed)
    # a line main shortened (a date cut out) gives way to the whole line put back
    dated = "<h1>T</h1>\n<p>Published 21 November 2019 · Tagged with <a href='/t'>wasm</a></p>\n<p>Intro.</p>"
    short = "<h1>T</h1>\n<p>Published · Tagged with <a href='/t'>wasm</a></p>\n<p>Intro.</p>"
    assert _restore_dropped(short, dated) == dated
    # a line main has that visible lacks (visible skips asides, main keeps deep ones) stays
    assert _restore_dropped("<p>Note: deep aside.</p>\n<p>Intro.</p>", "<p>Intro.</p>") == (
        "<p>Note: deep aside.</p>\n<p>Intro.</p>"
    )


def test_page_nested_too_deep_gets_its_visible_text() -> None:
    # the main-content rules cost the square of the depth: 20,000 nested elements took 10 s
    depth = MAX_DEPTH * 10
    page = (
        "<!DOCTYPE html><html><body><nav><a href='/'>Home</a></nav>"
        + "<div>" * depth
        + f"<p>{PARA.format(n=1)}</p>"
        + "</div>" * depth
        + "</body></html>"
    )
    r = HTML.compress(page, BAL)
    assert r.transforms == ("html:visible-text",) and PARA.format(n=1) in r.text and "Home" not in r.text
    shallow = "<!DOCTYPE html><html><body>" + "<div>" * 50 + f"<p>{PARA.format(n=1)}</p>" * 3 + "</div>" * 50
    assert HTML.compress(shallow + "<p></p>" * 2000 + "</body></html>", BAL).transforms == (
        "html:main-content",
    )


def test_restoring_is_linear_in_repeated_lines() -> None:
    # every kept line of a page that repeats one line thousands of times is matched once
    n = 5000
    main = "\n".join(["<h1>T</h1>"] + ["<p>-</p>"] * n)
    visible = "\n".join(["<h1>T</h1>"] + ["<p>-</p>", "<li><a href='x'>y</a> more words here</li>"] * n)
    out = _restore_dropped(main, visible)
    assert out.count("more words here") == n - 1  # each between two kept lines; the last one is after


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
