from __future__ import annotations

import re
from pathlib import Path

import pytest

from ctxgate.engine._api import Context, retrieval_key
from ctxgate.engine._lines import expand_runs, normalize
from ctxgate.engine.logs import LogCompressor
from tests.engine.corpus_recall import question_recall

LOGS = LogCompressor()
BAL = Context(tool_name="Bash", level="balanced")
LOSSLESS = Context(tool_name="Bash", level="lossless")
MARKER = re.compile(r"^\[\.\.\. (\d+) of (\d+) (\w[\w ]*) omitted(?:: .*)?; retrieve: (ctx_[0-9a-f]+)\]$")


def _app_log(n: int = 120) -> str:
    lines = []
    for i in range(n):
        lines.append(
            f"2024-05-01 10:{i // 60:02d}:{i % 60:02d},{i:03d} INFO [worker-{i % 4}] Processed job {1000 + i} in {0.01 * (i % 7):.2f}s"
        )
        if i == 50:
            lines.append(
                f"2024-05-01 10:00:50,{i:03d} ERROR [worker-2] Job 1050 failed: connection refused to db-7"
            )
        if i == 70:
            lines.append("2024-05-01 10:01:10,070 WARN [main] Disk usage at 91%")
    lines.append("2024-05-01 10:02:00,000 INFO [main] Shutdown complete")
    return "\n".join(lines)


def _check_accounting(original: str, out: str) -> None:
    """Every dropped line is counted by a marker, kept lines are original lines in order."""
    norm, _ = normalize(original)
    kept = [ln for ln in expand_runs(out.split("\n")) if not MARKER.match(ln)]
    dropped = sum(int(m.group(1)) for ln in out.split("\n") if (m := MARKER.match(ln)))
    it = iter(norm)
    assert all(any(k == o for o in it) for k in kept), "kept lines are not an in-order subsequence"
    assert len(norm) - len(kept) == dropped


def test_score_positive_on_logs_negative_on_prose() -> None:
    assert LOGS.score(_app_log(), BAL) > 0.5
    prose = "This is a paragraph of ordinary prose.\n\nIt talks about things.\n" * 5
    assert LOGS.score(prose, BAL) < 0


def test_balanced_keeps_errors_edges_and_counts_drops() -> None:
    text = _app_log()
    r = LOGS.compress(text, BAL)
    out = r.text
    assert "ERROR [worker-2] Job 1050 failed: connection refused to db-7" in out
    assert "WARN [main] Disk usage at 91%" in out
    assert out.split("\n")[0] == text.split("\n")[0]
    assert out.split("\n")[-1] == text.split("\n")[-1]
    assert len(out) < len(text) / 3
    key = retrieval_key(text)
    assert r.originals and r.originals[0].key == key and r.originals[0].text == text
    markers = [ln for ln in out.split("\n") if MARKER.match(ln)]
    assert markers and all(key in m for m in markers)
    _check_accounting(text, out)


def test_error_context_lines_kept() -> None:
    text = _app_log()
    out = LOGS.compress(text, BAL).text.split("\n")
    i = next(k for k, ln in enumerate(out) if "Job 1050 failed" in ln)
    assert "Processed job 1050" in out[i - 1] and "Processed job 1051" in out[i + 1]


def test_lossless_level_drops_nothing_and_decodes() -> None:
    text = _app_log() + "\n" + "\n".join(["retrying..."] * 10) + "\nprogress 1%\rprogress 100%  \n"
    r = LOGS.compress(text, LOSSLESS)
    assert not r.originals
    assert expand_runs(r.text.split("\n")) == normalize(text)[0]
    assert "[previous line repeated 9 more times]" in r.text
    assert "progress 1%" not in r.text and "progress 100%" in r.text


def test_repeated_errors_first_ten_keep_locations() -> None:
    lines = ["   Compiling demo v0.1.0 (/src/demo)"]
    for i in range(30):
        lines += [
            "error[E0308]: mismatched types",
            f"  --> src/module_{i}.rs:{10 + i}:5",
            "   |",
        ]
    lines += ["error: could not compile `demo` due to 30 previous errors"]
    text = "\n".join(lines)
    out = LOGS.compress(text, BAL).text
    for i in range(10):
        assert f"src/module_{i}.rs:{10 + i}:5" in out
    assert "could not compile `demo` due to 30 previous errors" in out
    assert "src/module_29.rs:39:5" in out  # the last of a folded group stays
    assert "error/warning lines like: error[<*>]: mismatched types" in out
    _check_accounting(text, out)


def test_traceback_is_kept_whole() -> None:
    noise = [f"INFO step {i} ok" for i in range(40)]
    tb = [
        "Traceback (most recent call last):",
        '  File "/app/run.py", line 10, in <module>',
        "    main()",
        '  File "/app/run.py", line 7, in main',
        "    raise ValueError('bad input 42')",
        "ValueError: bad input 42",
    ]
    text = "\n".join(noise[:20] + tb + noise[20:])
    out = LOGS.compress(text, BAL).text
    for line in tb:
        assert line in out
    _check_accounting(text, out)


def test_shell_trace_noise_dropped_commands_kept() -> None:
    trace = [
        "+ source /opt/conda/bin/activate",
        "++ _CONDA_ROOT=/opt/conda",
        "++ . /opt/conda/etc/profile.d/conda.sh",
    ]
    trace += [f"+++ export VAR{i}=/opt/conda/x{i}" for i in range(30)]
    trace += [
        "++ ask_conda='PS1='\\''(base) '\\''",
        "export PATH='\\''/opt/bin'\\''",
        "export X='\\''1'\\'''",
    ]
    trace += [
        "+ git checkout 4b45b6c8e4d7c9701a332e80d3b1c84209dc36e2 tests/test_x.py",
        "+ python -m pytest tests",
    ]
    results = [f"tests/test_x.py::test_case_{i} PASSED" for i in range(10)]
    text = "\n".join(trace + results + ["============ 10 passed in 0.52s ============"])
    out = LOGS.compress(text, BAL).text
    assert "+ git checkout 4b45b6c8e4d7c9701a332e80d3b1c84209dc36e2 tests/test_x.py" in out
    assert "+ python -m pytest tests" in out
    assert "+++ export VAR5" not in out and "export PATH=" not in out
    assert "shell trace" in out
    for line in results:
        assert line in out
    _check_accounting(text, out)


def test_repeated_failure_bodies_fold_to_headers() -> None:
    blocks = []
    for i in range(6):
        blocks += [
            f"_____ ERROR at setup of TestX.test_case_{i} _____",
            f"file /t/test_x.py, line {10 * i}",
            f"  def test_case_{i}(self, httpbin):",
            "E       recursive dependency involving fixture 'httpbin' detected",
            ">       available fixtures: cache, capfd, capfdbinary, caplog, capsys, doctest_namespace, httpbin",
            ">       use 'pytest --fixtures [testpath]' for help on them.",
            "/t/conftest.py:28",
        ]
    text = "\n".join(["============ ERRORS ============", *blocks, "======= 6 errors in 0.3s ======="])
    out = LOGS.compress(text, BAL).text
    for i in range(6):
        assert f"ERROR at setup of TestX.test_case_{i}" in out
    assert out.count("recursive dependency involving fixture") == 1
    assert out.count("same error as ERROR at setup of TestX.test_case_0") == 5
    _check_accounting(text, out)


def test_query_terms_protect_lines() -> None:
    text = "\n".join(f"test_case_{i} (pkg.tests.Foo) ... ok" for i in range(50))
    ctx = Context(level="balanced", query="did test_case_33 pass?")
    assert "test_case_33 (pkg.tests.Foo) ... ok" in LOGS.compress(text, ctx).text



@pytest.mark.parametrize("kind", ["logs", "test_output"])
def test_corpus_question_recall(corpus: Path, kind: str) -> None:
    folder = corpus / "outputs" / kind
    outputs = {}
    for f in folder.iterdir():
        if f.suffix != ".jsonl":
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read_text())  # the dispatcher strips ANSI first
            outputs[f.name] = LOGS.compress(text, BAL).text
    assert question_recall(corpus, kind, outputs) >= 0.98


def test_repetitive_machine_output_is_a_log() -> None:
    pip = [f"Requirement already satisfied: pkg{i} in /opt/env/lib/python3.9/site-packages ({i}.0.1)" for i in range(30)]
    text = "\n".join(["Obtaining file:///testbed", *pip, "Successfully installed app-1.0"])
    assert LOGS.score(text, BAL) > 0.5  # beats prose (at most 0.5) without stamps or test lines
    out = LOGS.compress(text, BAL)
    assert pip[0] in out.text and pip[-1] in out.text and "Successfully installed app-1.0" in out.text
    assert any(MARKER.match(ln) for ln in out.text.split("\n")) and out.originals[0].text == text


def test_repetition_alone_does_not_claim_paragraphs_or_listings() -> None:
    report = "\n\n".join(f"  {i}) row mapping case {i}\n     ** (RuntimeError) dependency missing" for i in range(20))
    assert LOGS.score(report, BAL) < 0  # blank-line separated entries: prose keeps each entry whole
    paths = "\n".join(f"/home/user/project/lib/module_{i}/file_{i}.ex" for i in range(40))
    assert LOGS.score(paths, BAL) < 0  # all variable parts: a file list, not a log


def test_a_request_term_on_most_lines_protects_nothing() -> None:
    pip = [f"Requirement already satisfied: pkg{i} in /envs/myproj_env/site-packages ({i}.0)" for i in range(40)]
    text = "\n".join(["Obtaining file:///myproj", *pip, "Successfully installed myproj-1.0"])
    everywhere = Context(tool_name="Bash", query="fix the bug in myproj_env please")
    assert LOGS.compress(text, everywhere).originals  # the term is on every line: folded anyway
    rare = Context(tool_name="Bash", query="why is pkg17 pinned?")
    out = LOGS.compress(text, rare)
    assert pip[17] in out.text.split("\n")  # a term on one line keeps that line


def test_time_of_day_stamps_make_a_log() -> None:
    lines = [f"21:33:{i:02d}.{i * 7:03d} [info] worker {i % 3} handled job {1000 + i}" for i in range(30)]
    assert LOGS.score("\n".join(lines), BAL) >= 0.8


def test_keep_start_first_characters_cover_every_match(corpus: Path) -> None:
    # the first-characters prefilter of ``_KEEP_START`` must let every matching line through
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctxgate.engine.logs import _KEEP_FIRST, _KEEP_FIRST2, _KEEP_START

    lines = [
        "passed ",
        "  ✓ ok",
        "\t--- fail:",
        "ok  pkg 0.1s",
        "test a ... ",
        "=== 1 passed ===",
        "ran 3 tests in",
        "failed",
        "test result:",
        "pass",
        "fail a.b",
        "summary",
        "completed",
        "done",
        "total",
        "finished",
        "xfail ",
        "error ",
        "skipped ",
        "   at f(",
        "  ... 3 more",
        "  at x:1:2)",
    ]
    for path in sorted((corpus / "outputs").glob("*/*")):
        lines += path.read_text(encoding="utf-8", errors="replace").lower().split("\n")
    for ln in lines:
        if _KEEP_START.match(ln):
            assert ln[:1] in _KEEP_FIRST or ln[:2] in _KEEP_FIRST2, ln

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="pfexsotrcdkmuainl=-✓ \tasl:.0()", max_size=20))
    def covered(ln: str) -> None:
        assert not _KEEP_START.match(ln) or ln[:1] in _KEEP_FIRST or ln[:2] in _KEEP_FIRST2

    covered()


def test_keep_lines_prefilter_finds_every_match(corpus: Path) -> None:
    """``_keep_lines`` tries ``_KEEP_START`` only on lines whose first characters (after blanks,
    for a line that starts with one) can start a match: the same lines as trying every line."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctxgate.engine._lines import line_starts, lines_matching
    from ctxgate.engine.logs import _KEEP_ANY, _KEEP_START, _keep_lines

    def check(low: list[str]) -> None:
        expected = {i for i, ln in enumerate(low) if _KEEP_START.match(ln)}
        lowered, starts = "\n".join(low), line_starts(low)
        for pattern, triggers in _KEEP_ANY:
            expected |= lines_matching(low, lowered, starts, triggers, pattern.search)
        assert _keep_lines(low, lowered, starts) == expected

    for path in sorted((corpus / "outputs").glob("*/*")):
        check(path.read_text(encoding="utf-8", errors="replace").lower().split("\n"))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(alphabet="pfexsotrcdkmuainl=-✓ \tasl:.0()", max_size=20), max_size=8))
    def generated(low: list[str]) -> None:
        check(low)

    generated()
    check(["   at f(", "  ... 3 more", "  at x:1:2)", "\t--- fail:", "  ✓ ok", "   plain", "  - item"])


def test_lazy_templates_agree_with_templating_every_line() -> None:
    from collections import Counter

    from ctxgate.engine._lines import templates
    from ctxgate.engine.logs import _Templates

    lines = ["+ export A=1", "ERROR db 17 failed", "", "ok 3/4", "ERROR db 18 failed", "plain words"]
    lazy = _Templates(lines)
    assert lazy[1] == "ERROR db <*> failed"
    assert lazy.listed([0, 3]) == ["+ export A=<*>", "ERROR db <*> failed", "", "ok <*>", "", ""]
    assert lazy.listed(range(len(lines))) == templates(lines)
    assert lazy.counts() == Counter(templates(lines))


def test_repeated_error_template_past_its_limit_folds() -> None:
    lines = [f"step {i} running" for i in range(30)]
    lines += [f"ERROR: connection {i} refused by 10.0.0.{i}" for i in range(30)]
    out = LOGS.compress("\n".join(lines), BAL).text
    kept = [ln for ln in out.split("\n") if ln.startswith("ERROR")]
    assert 10 <= len(kept) < 30  # the first ten keep their context, the rest fold
    assert "error/warning lines like: ERROR: connection <*> refused" in out


def test_repetition_bound_is_never_below_the_repetition(corpus) -> None:
    """The scorer's cheap bound may rule text out only where ``_repetition`` would too."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctxgate.engine.logs import _repetition, _repetition_bound

    for f in sorted((corpus / "outputs").rglob("*"))[::2]:
        if f.is_file():
            lines = [ln for ln in f.read_text(errors="replace")[:20000].split("\n")[:300] if ln.strip()]
            if lines:
                assert _repetition_bound(lines) >= _repetition(lines), f.name
    words = st.sampled_from(["Creating", "table", "x1", "/a/b", "<*>", "ok", "done", "12", "Err", "  "])
    line = st.lists(words, min_size=1, max_size=6).map(" ".join).filter(str.strip)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(line, min_size=1, max_size=40))
    def check(lines: list[str]) -> None:
        assert _repetition_bound(lines) >= _repetition(lines)

    check()



def test_a_text_with_nothing_to_fold_gets_what_the_full_plan_gives(corpus, monkeypatch) -> None:
    """The shortcut for texts whose lines cannot group changes no result."""
    import random

    from ctxgate.engine import logs

    rnd = random.Random(5)
    words = ["ok", "x1", "/tmp/a", "build", "step", "+ cmd", "_ t _", "ERROR: a", "done", "12", "  ", "warn"]
    texts = [
        "\n".join(" ".join(rnd.choice(words) for _ in range(rnd.randint(0, 4))) for _ in range(rnd.randint(3, 30)))
        for _ in range(400)
    ]
    texts += [f.read_text(errors="replace")[:3000] for f in sorted((corpus / "outputs").rglob("*"))[::3] if f.is_file()]
    ctx = Context(tool_name="Bash")
    fast = [LOGS.compress(t, ctx) for t in texts]
    assert any(logs._nothing_to_fold(logs.normalize(t)[0]) for t in texts)
    monkeypatch.setattr(logs, "_nothing_to_fold", lambda lines: False)
    assert [LOGS.compress(t, ctx) for t in texts] == fast


def test_timestamp_prefilter_never_skips_a_stamped_line(corpus) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctxgate.engine.logs import _TIMESTAMP, _may_be_stamped

    def check(line: str) -> None:
        if _TIMESTAMP.match(line):
            assert _may_be_stamped(line), line

    for f in sorted((corpus / "outputs").glob("*/*")):
        if f.suffix != ".jsonl":
            for line in f.read_text(errors="replace").split("\n"):
                check(line)

    @settings(max_examples=500, deadline=None)
    @given(st.text(st.sampled_from(list("MonTueDecJ2024-01:.[ _é٣ab")), max_size=14))
    def generated(line: str) -> None:
        check(line)

    generated()


def test_a_word_of_letters_holds_no_digit_or_slash() -> None:
    # ``_shape`` skips the digit-or-slash search for a first word that ``isalpha``
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctxgate.engine._lines import DIGIT_OR_SLASH

    @settings(max_examples=500, deadline=None)
    @given(st.text(max_size=8))
    def letters(word: str) -> None:
        assert not (word.isalpha() and DIGIT_OR_SLASH.search(word))

    letters()
    for word in ("٣", "x/y", "Ⅻ", "²", "abc"):
        assert not (word.isalpha() and DIGIT_OR_SLASH.search(word)), word
