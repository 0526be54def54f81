from __future__ import annotations

import re
from pathlib import Path

from ctxgate.engine._api import Context, retrieval_key
from ctxgate.engine.grep import PER_FILE, GrepCompressor
from tests.engine.corpus_recall import question_recall

GREP = GrepCompressor()
BAL = Context(tool_name="Bash", level="balanced")
MARKER = re.compile(
    r"^\[\.\.\. (\d+) of (\d+) (matches|context lines) omitted: (?:in )?(\S+).*; retrieve: (ctx_\w+)\]$"
)
PREFIX = re.compile(r"^([^\s:]+):(\d+):")


def _context_output() -> str:
    out = []
    for f in ("src/app/models.py", "src/app/views.py", "tests/test_app.py"):
        for base in (10, 40, 80):
            for k in range(base - 3, base + 4):
                sep = ":" if k == base else "-"
                out.append(
                    f"{f}{sep}{k}{sep}    line {k} of {f} with Widget"
                    if k == base
                    else f"{f}{sep}{k}{sep}    filler code {k}"
                )
            out.append("--")
    return "\n".join(out[:-1])


def _many_matches(n: int) -> str:
    lines = [f"pkg/big.py:{i}:    x = make_widget_{i}()" for i in range(1, n + 1)]
    lines[n // 2] = f"pkg/big.py:{n // 2 + 1}:class Widget:"
    lines.append("pkg/small.py:3:from pkg.big import Widget")
    return "\n".join(lines)


def test_score() -> None:
    assert GREP.score(_context_output(), BAL) > 0.5
    assert GREP.score(_many_matches(50), BAL) > 0.5
    assert GREP.score("2024-05-01 10:00:00,123 INFO started\n" * 20, BAL) < 0
    assert GREP.score("just some words\n" * 20, BAL) < 0
    stamped = "\n".join(
        f"nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:{i:02d}.1 INFO req {i}" for i in range(30)
    )
    assert GREP.score(stamped, BAL) < 0  # the same "file:line" on every line is a log stamp
    view = "\n".join(["[File: /testbed/src/fields.py (1998 lines total)]", "(1457 more lines above)"])
    view += "\n" + "\n".join(f"{i}:        self.value_{i} = {i}" for i in range(1458, 1560))
    assert GREP.score(view, BAL) < 0  # an editor's file view is not grep --heading output


def test_context_trimmed_match_prefixes_kept() -> None:
    text = _context_output()
    r = GREP.compress(text, BAL)
    original_matches = [ln for ln in text.split("\n") if PREFIX.match(ln)]
    for ln in original_matches:
        assert ln in r.text.split("\n")
    assert "filler code 39\n" in r.text and "filler code 41\n" in r.text  # one line each side
    assert "filler code 37\n" not in r.text and "filler code 43\n" not in r.text
    markers = [m for ln in r.text.split("\n") if (m := MARKER.match(ln))]
    assert {m.group(4) for m in markers} == {"src/app/models.py", "src/app/views.py", "tests/test_app.py"}
    for m in markers:
        assert m.group(3) == "context lines" and (m.group(1), m.group(2)) == ("12", "18")
        assert m.group(5) == retrieval_key(text)
    assert r.originals[0].text == text


def test_cap_per_file_keeps_edges_definitions_and_query() -> None:
    n = 120
    text = _many_matches(n)
    ctx = Context(level="balanced", query="where is make_widget_77 built?")
    r = GREP.compress(text, ctx)
    kept = [ln for ln in r.text.split("\n") if ln.startswith("pkg/big.py:")]
    assert len(kept) <= PER_FILE
    assert (
        kept[0] == "pkg/big.py:1:    x = make_widget_1()"
        and kept[-1] == f"pkg/big.py:{n}:    x = make_widget_{n}()"
    )
    assert f"pkg/big.py:{n // 2 + 1}:class Widget:" in kept
    assert "pkg/big.py:77:    x = make_widget_77()" in kept
    assert "pkg/small.py:3:from pkg.big import Widget" in r.text
    m = next(m for ln in r.text.split("\n") if (m := MARKER.match(ln)))
    assert m.group(3) == "matches" and m.group(4) == "pkg/big.py"
    assert int(m.group(1)) == n - len(kept) and int(m.group(2)) == n


def test_heading_form() -> None:
    text = "\n".join(
        ["src/a.py", *[f"{i}:    call_it({i})" for i in range(1, 60)], "", "src/b.py", "3:call_it()"]
    )
    assert GREP.score(text, BAL) > 0.5
    out = GREP.compress(text, BAL).text
    assert out.startswith("src/a.py\n1:    call_it(1)") and "src/b.py\n3:call_it()" in out
    assert "19 of 59 matches omitted: in src/a.py" in out


def test_long_lines_windowed_around_query() -> None:
    blob = "x" * 5000 + " needle_here " + "y" * 5000
    text = "\n".join([f"data/blob.json:1:{blob}", "a.py:2:ok needle_here", "b.py:3:needle_here too"])
    out = GREP.compress(text, Context(level="balanced", query="find needle_here")).text
    first = out.split("\n")[0]
    assert first.startswith("data/blob.json:1:") and "needle_here" in first and len(first) < 600
    assert "chars omitted: long line" in first


def test_lossless_level_only_strips_trailing_space() -> None:
    text = _context_output().replace("\n", "  \n", 3)
    r = GREP.compress(text, Context(level="lossless"))
    assert r.text == "\n".join(ln.rstrip() for ln in text.split("\n")) and not r.originals



def test_corpus_question_recall(corpus: Path) -> None:
    folder = corpus / "outputs" / "grep"
    outputs = {
        f.name: GREP.compress(f.read_text(), BAL).text
        for f in folder.iterdir()
        if f.suffix != ".jsonl"
    }
    assert question_recall(corpus, "grep", outputs) >= 0.98


def test_grep_notices_do_not_hide_grep_output() -> None:
    notices = [f"grep: locale/{lang}/LC_MESSAGES/app.mo: binary file matches" for lang in ("de", "fr", "es")]
    matches = [f"locale/{lang}/LC_MESSAGES/app.po:{100 + i}:msgid \"Bases: %s\"" for i, lang in enumerate("abcdefgh")]
    text = "\n".join([*notices, *matches, "Binary file build/app.bin matches"])
    assert GREP.score(text, BAL) > 0.8
    out = GREP.compress(text, BAL)
    assert all(n in out.text for n in notices)


def test_scorer_early_exit_gives_the_full_parse_answer(corpus, monkeypatch) -> None:
    """The scorer stops before parsing when too few lines can be matches: the same score as
    the full parse, on every corpus output and on short generated texts."""
    import random

    from ctxgate.engine import grep

    rnd = random.Random(7)
    texts = [f.read_text(errors="replace") for f in sorted((corpus / "outputs").glob("*/*")) if f.suffix != ".jsonl"]
    pieces = ["src/a.py", "src/a.py:3:x", "a.py-4-y", "12:z", "7-w", "1. item", "", "--", "text line"]
    texts += ["\n".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12))) for _ in range(500)]
    fast = [GREP.score(t, BAL) for t in texts]
    full = grep._parse
    monkeypatch.setattr(grep, "_parse", lambda lines, need=0: full(lines))
    assert [GREP.score(t, BAL) for t in texts] == fast
    assert sum(1 for s in fast if s > 0) > 20  # grep output was found too
