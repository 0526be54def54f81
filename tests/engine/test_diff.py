from __future__ import annotations

import re
from pathlib import Path

from ctxgate.engine._api import Context, retrieval_key
from ctxgate.engine.diff import DiffCompressor
from tests.engine.corpus_recall import question_recall

DIFF = DiffCompressor()
BAL = Context(tool_name="Bash", level="balanced")
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _numbered(text: str) -> list[tuple[str, str, int, int]]:
    """(file, body line, old number, new number) for every hunk body line."""
    out = []
    path = ""
    old = new = 0
    in_hunk = False
    for line in text.split("\n"):
        if line.startswith("diff --git "):
            path = line.split(" b/")[-1]
            in_hunk = False
            continue
        m = HUNK.match(line)
        if m:
            old, new = int(m.group(1)), int(m.group(3))
            if m.group(2) == "0":
                old += 1
            if m.group(4) == "0":
                new += 1
            in_hunk = True
            continue
        if not in_hunk or line[:1] not in (" ", "+", "-"):
            in_hunk = in_hunk and line.startswith("\\")
            continue
        out.append((path, line, old, new))
        if line[:1] != "+":
            old += 1
        if line[:1] != "-":
            new += 1
    return out


def _sample() -> str:
    body_old = [f"    value_{i} = compute_something(argument_{i})  # line {i}" for i in range(1, 41)]
    hunk = ["@@ -8,19 +8,19 @@ def compute(x):"]
    for i in range(8, 27):
        if i in (11, 22):
            hunk += [f"-{body_old[i - 1]}", f"+{body_old[i - 1]} changed"]
        else:
            hunk.append(f" {body_old[i - 1]}")
    return "\n".join(
        [
            "commit 0123456789abcdef0123456789abcdef01234567",
            "Author: A Dev <dev@example.com>",
            "Date:   Mon Jan 1 00:00:00 2024 +0000",
            "",
            "    Fix compute",
            "---",
            " src/calc.py | 4 ++--",
            " 1 file changed, 2 insertions(+), 2 deletions(-)",
            "",
            "diff --git a/src/calc.py b/src/calc.py",
            "index 1111111..2222222 100644",
            "--- a/src/calc.py",
            "+++ b/src/calc.py",
            *hunk,
            "",
        ]
    )


def test_score() -> None:
    assert DIFF.score(_sample(), BAL) >= 0.9
    assert DIFF.score("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", BAL) >= 0.9
    assert DIFF.score("some text\n- a bullet\n+ a plus\n", BAL) < 0
    doc = "# Tutorial\n\nApply this patch:\n\n```\n" + _sample().split("\n\n", 2)[2] + "\n```\n"
    assert DIFF.score(doc, BAL) < 0  # a diff quoted in a document is not a diff output


def test_changes_and_headings_kept_numbers_true() -> None:
    text = _sample()
    r = DIFF.compress(text, BAL)
    before = _numbered(text)
    after = _numbered(r.text)
    assert set(after) <= set(before)  # every kept line keeps its true line numbers
    changes = [t for t in before if t[1][:1] in "+-"]
    assert all(c in after for c in changes)
    assert "@@ -11,1 +11,1 @@ def compute(x):" in r.text
    assert " src/calc.py | 4 ++--\n" in r.text  # bars shorter than a marker stay
    assert "1 file changed, 2 insertions(+), 2 deletions(-)" in r.text
    assert "Fix compute" in r.text and "diff --git a/src/calc.py b/src/calc.py" in r.text
    key = retrieval_key(text)
    assert (
        f"[... 17 of 17 context lines omitted: @@ renumbered; index, ---/+++ lines too; retrieve: {key}]"
        in r.text
    )
    assert r.originals[0].text == text


def test_long_stat_bars_dropped_counts_kept() -> None:
    stat = [f" docs/file_{i}.md | {40 + i} {'+' * 30}{'-' * 20}" for i in range(4)]
    text = _sample().replace(" src/calc.py | 4 ++--", "\n".join(stat))
    out = DIFF.compress(text, BAL).text
    assert (
        all(f" docs/file_{i}.md | {40 + i}\n" in out for i in range(4))
        and "+++++" not in out.split("diff --git")[0]
    )
    assert "[... 4 of 4 diffstat bars omitted: +/- graphs; counts kept" in out


def test_lossless_level_is_identity() -> None:
    r = DIFF.compress(_sample(), Context(level="lossless"))
    assert r.text == _sample() and not r.originals


def test_small_hunks_left_alone() -> None:
    text = "diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1,3 +1,3 @@\n x\n-y\n+z\n w"
    assert DIFF.compress(text, BAL).text == text


def test_minus_lines_that_look_like_headers_stay_in_hunk() -> None:
    text = "\n".join(
        ["diff --git a/n.md b/n.md", "--- a/n.md", "+++ b/n.md", "@@ -1,2 +1,2 @@", "--- a/old", "+++ b/new"]
    )
    assert _numbered(DIFF.compress(text, BAL).text) == _numbered(text)



def test_corpus_question_recall_and_line_numbers(corpus: Path) -> None:
    folder = corpus / "outputs" / "diff"
    outputs = {}
    for f in folder.iterdir():
        if f.suffix == ".jsonl":
            continue
        text = f.read_text()
        out = DIFF.compress(text, BAL).text
        before, after = _numbered(text), _numbered(out)
        assert set(after) <= set(before) and {t for t in before if t[1][:1] in "+-"} <= set(after), f.name
        outputs[f.name] = out
    assert question_recall(corpus, "diff", outputs) >= 0.98
