from __future__ import annotations

import re
from pathlib import Path

from ctxgate.engine._api import Context, retrieval_key
from ctxgate.engine.prose import LONG_CODE, ProseCompressor
from tests.engine.corpus_recall import question_recall

PROSE = ProseCompressor()
BAL = Context(tool_name="WebFetch", level="balanced")
MARKER = re.compile(r"\[\.\.\. (\d+) of (\d+) ([\w ]+) omitted: (.*); retrieve: (ctx_\w+)\]")

PARA_A = (
    "The gateway sits between the agent and the provider.\nIt shrinks tool outputs before they are sent,\n"
    "and it never touches the system prompt or the user's own words."
)
PARA_B = "Lossy transforms are always visible: every drop is announced\nin place, with a count and a retrieval key."


def _doc() -> str:
    return "\n".join(
        [
            "# Context gateway",
            "",
            "[![build](https://ci.example.com/badge.svg)](https://ci.example.com) [![pypi](https://img.shields.io/x.svg)](https://pypi.org/x)",
            "",
            PARA_A,
            "",
            "## Installation",
            "",
            "Install it with pip, then point your client at it.",
            "",
            "```bash",
            "pip install ctxgate",
            "```",
            "",
            PARA_B,
            "",
            "## Caching",
            "",
            PARA_A,  # exact repeat
            "",
            "The cache keeps every decision so that the same bytes go upstream on every later turn of the session.",
            "",
            "## Notes",
            "",
            "- first item that wraps",
            "  onto a second line",
            "- second item",
            "",
            "[gh]: https://github.com/example/ctxgate",
            "[docs]: https://docs.example.com",
            "[pypi]: https://pypi.org/project/ctxgate/",
            "[issues]: https://github.com/example/ctxgate/issues",
            "",
            "## License",
            "",
            "MIT, see LICENSE. Copyright (c) the ctxgate authors; permission is hereby granted, free of",
            "charge, to any person obtaining a copy of this software, to deal in it without restriction.",
        ]
    )


def test_score() -> None:
    assert 0.2 <= PROSE.score(_doc(), BAL) <= 0.5
    assert PROSE.score('{"a": 1}\n{"b": 2}\n{"c": 3}\n', BAL) < 0
    assert PROSE.score("x = 1\ny = 2\nz = 3\nprint(x)\n", BAL) < 0


def test_balanced_units_dropped_with_markers_text_intact() -> None:
    text = _doc()
    r = PROSE.compress(text, BAL)
    out = r.text
    flat = " ".join(out.split())
    assert " ".join(PARA_A.split()) in flat and " ".join(PARA_B.split()) in flat
    assert flat.count("The gateway sits between the agent") == 1
    assert "exact repeat of an earlier one" in out
    assert "badge images" in out and "img.shields.io" not in out
    assert "link reference list" in out and "https://docs.example.com" not in out
    assert "License notice" in out and "MIT, see LICENSE." not in out
    small = PROSE.compress("# T\n\nSome words of text in here.\n\n## License\n\nMIT.\n", BAL).text
    assert small.endswith("## License\n\nMIT.\n")  # a marker would cost more than the notice
    assert "```bash\npip install ctxgate\n```" in out
    assert "- first item that wraps onto a second line" in out
    assert "# Context gateway" in out and "## Installation" in out
    key = retrieval_key(text)
    markers = MARKER.findall(out)
    assert markers and all(m[4] == key for m in markers)
    assert r.originals[0].text == text


def test_wrapped_paragraphs_joined_not_cut() -> None:
    words = ("Compression of tool output matters because agents read every byte of it " * 6).split()
    lines, cur = [], ""
    for w in words:  # hard-wrap at 72 columns, as textwrap would
        if cur and len(cur) + 1 + len(w) > 72:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    para = "\n".join(lines)
    out = PROSE.compress(f"{para}\n\n{para}", BAL).text
    assert out.split("\n\n")[0] == " ".join(words)


def test_shell_output_lines_never_joined() -> None:
    text = "# Title\n\nA line that an agent\nmay quote in an edit.\n\n## Next\n\nMore text here."
    out = PROSE.compress(text, Context(tool_name="Bash", level="balanced")).text
    assert out == text


def test_short_line_records_not_joined() -> None:
    records = "\n".join(
        [
            "==> file_system",
            "Compiling 7 files (.ex)",
            "Generated file_system app",
            "==> stream_data",
            "Compiling 3 files (.ex) and then some more words to make it long enough",
            "Generated stream_data app with a longer trailing line of output text here",
        ]
        * 3
    )
    out = PROSE.compress(records, BAL).text
    assert out == records


def test_front_matter_untouched() -> None:
    front = "---\ntitle: My page\nauthor: me\ntags: [a, b]\n---"
    body = "# One\n\nSome words here that\nwrap onto a second line.\n\n## Two\n\nMore words."
    out = PROSE.compress(f"{front}\n\n{body}", BAL).text
    assert out.startswith(front + "\n") and "Some words here that wrap onto a second line." in out


def test_heading_line_not_joined_to_text() -> None:
    text = "## Problem\nThe renderer drops lines.\nIt also drifts.\n\n## Solution\nShare one pipeline.\nOwner: Ann"
    out = PROSE.compress(text, BAL).text
    assert "## Problem\nThe renderer drops lines. It also drifts." in out
    assert "Share one pipeline.\nOwner: Ann" in out


def test_rst_literal_and_code_directive_untouched() -> None:
    code = ["    def f(x):", "        return x", "    y = f(1)", "    z = f(2)"]
    other = [ln.replace("f(", "g(") for ln in code]
    text = "\n".join(["Example::", "", *code, "", ".. code-block:: python", "", *other, "", "Done."])
    out = PROSE.compress(text, BAL).text
    assert "\n".join(code) in out and "\n".join(other) in out


def test_unclosed_fence_is_not_code() -> None:
    body = [f"Paragraph line {i} of a fragment that starts after a code block." for i in range(LONG_CODE + 5)]
    text = "\n".join(["```", "", *body, "", "```bash"])
    out = PROSE.compress(text, BAL).text
    assert "omitted" not in out and all(ln in out for ln in body[:3])


def test_near_duplicate_paragraph_dropped() -> None:
    base = " ".join(f"word{i}" for i in range(40))
    near = base.replace("word20", "changed")
    out = PROSE.compress(f"{base}\n\nmiddle paragraph with its own words entirely\n\n{near}", BAL).text
    assert base in out and near not in out and "near-repeat" in out


def test_near_duplicate_block_keeps_differing_lines() -> None:
    def trace(line_no: int) -> list[str]:
        return [
            "     code: {:ok, view, _html} = live(build_conn(), session_path)",
            "     stacktrace:",
            "       (phoenix 1.8.3) lib/phoenix/token.ex:266: Phoenix.Token.get_endpoint_key_base/1",
            "       (phoenix 1.8.3) lib/phoenix/token.ex:135: Phoenix.Token.sign/4",
            "       (phoenix_live_view 1.1.22) lib/phoenix_live_view/static.ex:158: Static.do_render/4",
            f"       test/spotter_web/live/session_live_test.exs:{line_no}: (test)",
        ]

    text = "\n".join([*trace(171), "", "  2) test second one", "", *trace(214)])
    out = PROSE.compress(text, BAL).text
    assert "session_live_test.exs:171" in out and "session_live_test.exs:214" in out
    assert out.count("Phoenix.Token.sign/4") == 1
    assert "[... 5 of 6 lines omitted: same as in an earlier paragraph" in out


def test_long_code_keeps_head_and_tail() -> None:
    body = [f"line_{i} = {i}" for i in range(LONG_CODE + 20)]
    text = "\n".join(["Some intro text for the example below, long enough.", "", "```python", *body, "```"])
    out = PROSE.compress(text, BAL).text
    assert "line_0 = 0" in out and f"line_{len(body) - 1} =" in out and "line_25 = 25" not in out
    m = MARKER.search(out)
    assert m and m.group(3) == "lines" and int(m.group(1)) == len(body) - 20 and int(m.group(2)) == len(body)


def _guide() -> str:
    sections = []
    topics = (
        ("Installation", "pip wheel virtualenv"),
        ("Caching", "decision store replay"),
        ("Pricing", "dollars invoice billing"),
        ("Metrics", "prometheus counters dashboards"),
        ("Security", "bearer tenants secrets"),
    )
    for name, words in topics:
        body = f"This section talks about {words} in some detail, with more words around them. " * 6
        sections += [f"## {name}", "", body.strip(), ""]
    return "\n".join(["# Guide", "", "Intro paragraph about the guide itself.", "", *sections])


def test_query_drops_far_sections_naming_them() -> None:
    text = _guide()
    out = PROSE.compress(
        text, Context(level="balanced", query="how does the decision store replay work?")
    ).text
    assert "decision store replay" in out and "Intro paragraph" in out
    assert "pip wheel" not in out and "dollars" not in out and "prometheus" not in out
    assert '"Installation"' in out and '"Pricing"' in out and '"Security"' in out


def test_vague_query_drops_no_section() -> None:
    text = _guide()
    for query in ("Help me with this task.", "please fix the installation", "what does this page say?"):
        out = PROSE.compress(text, Context(level="balanced", query=query)).text
        assert "sections omitted" not in out, query


def test_lossless_level_only_trailing_whitespace() -> None:
    text = _doc().replace("\n", "  \n", 2)
    r = PROSE.compress(text, Context(level="lossless"))
    assert r.text == "\n".join(ln.rstrip() for ln in text.split("\n")) and not r.originals



def test_corpus_question_recall(corpus: Path) -> None:
    folder = corpus / "outputs" / "prose"
    outputs = {
        f.name: PROSE.compress(f.read_text(), BAL).text
        for f in folder.iterdir()
        if f.suffix != ".jsonl"
    }
    assert question_recall(corpus, "prose", outputs) >= 0.98


def test_six_words_search_agrees_with_counting_words() -> None:
    # the scorer's fast test must say what counting ``_WORD`` matches says
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctxgate.engine.prose import _SIX_WORDS, _WORD

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="ab1 -_.é\t", max_size=40))
    def agree(line: str) -> None:
        assert (_SIX_WORDS.search(line) is not None) == (len(_WORD.findall(line)) >= 6)

    agree()
    for line in ("a" * 8000, "ab " * 4 + "a" * 8000, "a b c d e f"):
        assert (_SIX_WORDS.search(line) is not None) == (len(_WORD.findall(line)) >= 6)


def test_last_paragraph_still_compared_with_earlier_ones() -> None:
    # the last paragraph is not indexed, but is still checked against the earlier ones
    para = " ".join(f"word{i} appears in this sentence about topic {i % 7}." for i in range(12))
    near = para.replace("word11", "wordeleven")
    doc = "\n\n".join(["# Title", para, "A different paragraph entirely, long enough to be kept here.", near])
    out = PROSE.compress(doc, BAL)
    assert "near-repeat of an earlier one" in out.text
    assert out.text.count("word5 appears") == 1


def test_word_bytes_split_as_the_word_pattern() -> None:
    # the shingle words come from a byte table: they must be what ``_WORD`` finds in the lowercased text
    from ctxgate.engine.prose import _WORD, _fence, _underline, _words

    samples = [
        "Plain words, numbers 42 and snake_case_names.",
        "Ünïcödé wörds: café naïve İstanbul \u212a-kelvin ÀB",  # non-ASCII letters separate words; K-sign lowers to k
        "tabs\tand\u00a0nbsp\u2003em-space, emoji 🙂 mixed in",
        "lone \ud800 surrogate and \x00 nul",
        "",
    ]
    for text in samples:
        assert [w.decode() for w in _words(text)] == _WORD.findall(text.lower()), text
    from ctxgate.engine.prose import _FENCE, _UNDERLINE

    for line in ["```py", "  ~~~", "x ```", "====", "--- ", "-=-", "''''", "#", "", "`` `", "...."]:
        assert _fence(line) == (_FENCE.match(line) is not None), line
        assert _underline(line) == (_UNDERLINE.match(line) is not None), line


def _reference_near_duplicates(worded, key: str) -> int:
    """The near-duplicate pass as first written: every paragraph with 12 shingles or more
    sketched and indexed by its sketch shingles, every one compared with its best candidate."""
    from collections import Counter
    from itertools import chain
    from operator import itemgetter

    from ctxgate.engine import prose

    shingled = [(b, set(prose._shingle_iter(words))) for b, words in worded]
    shingled = [(b, sh) for b, sh in shingled if len(sh) >= 12]
    index: dict[bytes, list[int]] = {}
    sets: list[set[bytes]] = []
    texts: list[list[str]] = []
    dropped = 0
    for b, sh in shingled:
        sketch = sorted(sh)[: prose._SKETCH]
        hits = [index[s] for s in sketch if s in index]
        best = max(Counter(chain.from_iterable(hits)).items(), key=itemgetter(1))[0] if hits else -1
        if best >= 0 and len(sh & sets[best]) / max(len(sh), len(sets[best])) >= 0.85:
            dropped += prose._drop_near_duplicate(b, texts[best], key)
            continue
        n = len(sets)
        sets.append(sh)
        texts.append(b.lines)
        for seen in hits:
            seen.append(n)
        for s in sketch:
            if s not in index:
                index[s] = [n]
    return dropped


def test_near_duplicate_pass_matches_comparing_every_paragraph(corpus, monkeypatch) -> None:
    """The near-duplicate pass compares only the paragraphs with at most 16% of their shingles
    new (to a set of every earlier one's), against lazily made sketches (an index of all sketches past ``_LAZY_LIMIT``
    such paragraphs): the same drops as sketching and comparing every paragraph."""
    import random

    from ctxgate.engine import prose

    rnd = random.Random(3)
    vocab = [f"w{i}" for i in range(40)]
    base = [" ".join(rnd.choice(vocab) for _ in range(60)) for _ in range(6)]
    docs = []
    for _ in range(150):
        paras = []
        for _ in range(rnd.randint(2, 40)):  # past the lazy limit, sometimes
            words = rnd.choice(base).split()
            for _ in range(rnd.randint(0, 6)):  # a few words changed: sometimes still a near-repeat
                words[rnd.randrange(len(words))] = rnd.choice(vocab)
            if rnd.random() < 0.1:  # many words, few shingles: never compared
                words = (rnd.choice(vocab) + " " + rnd.choice(vocab) + " ").split() * rnd.randint(7, 20)
            cut = rnd.choice((20, 60))  # three lines, or one
            paras.append("\n".join(" ".join(words[i : i + cut]) for i in range(0, len(words), cut)))
        docs.append("\n\n".join(paras))
    docs += [f.read_text(errors="replace") for f in sorted((corpus / "outputs" / "prose").iterdir())[::3]]

    def run(text: str) -> list[tuple[str, list[str]]]:
        blocks = prose._blocks(text.split("\n"))
        prose._drop_duplicates(blocks, "ctx_k")
        return [(b.kind, b.lines) for b in blocks]

    fast = [run(d) for d in docs]
    monkeypatch.setattr(prose, "_drop_near_duplicates", _reference_near_duplicates)
    assert [run(d) for d in docs] == fast
    markers = " ".join(ln for blocks in fast for kind, lines in blocks if kind == "marker" for ln in lines)
    assert "near-repeat" in markers or "same as in an earlier" in markers  # near-repeats were found


def test_join_patterns_match_only_lines_their_first_character_allows(corpus) -> None:
    """``_unwrap`` tries its patterns only on lines whose first character can start a match."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctxgate.engine.prose import (
        _FIELD,
        _FIELD_FIRST,
        _NO_JOIN,
        _NO_JOIN_FIRST,
        _STRUCTURED,
        _STRUCTURED_FIRST,
    )

    def check_line(line: str) -> None:
        lead = line.lstrip()
        if _NO_JOIN.match(line):
            assert lead[:1] in _NO_JOIN_FIRST or lead[:1].isdigit(), line
        if _STRUCTURED.match(line):
            assert lead[:1] in _STRUCTURED_FIRST, line
        if _FIELD.match(line):
            assert line[:1] in _FIELD_FIRST, line

    for f in sorted((corpus / "outputs" / "prose").iterdir()):
        for line in f.read_text(errors="replace").split("\n"):
            check_line(line)
    alphabet = st.sampled_from(list(" \t\u00a0\u2003-*+#.|><:=~^[]()!/0123456789٣aZx_"))

    @settings(max_examples=500, deadline=None)
    @given(st.text(alphabet, max_size=12))
    def check(line: str) -> None:
        check_line(line)

    check()


def test_heading_and_directive_prefilters_are_exact() -> None:
    from ctxgate.engine.prose import _LITERAL_DIRECTIVE, _MD_HEADING, _TABLE_DIRECTIVE, _heading

    for line in ["# Title", "###### six", "####### seven", " # indented", "#no", "text", "", "#\tTab"]:
        assert _heading(line) == (_MD_HEADING.match(line) is not None), line
    for line in [".. code:: python", "  .. list-table::", ".. note::", "..code::", "x .. y", ".. csv-table::"]:
        for pattern in (_LITERAL_DIRECTIVE, _TABLE_DIRECTIVE):
            assert pattern.match(line) is None or ".. " in line, line
