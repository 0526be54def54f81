from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ctxgate.engine._api import Context, retrieval_key
from ctxgate.engine._lines import (
    Plan,
    expand_runs,
    final_state,
    fold_runs,
    line_starts,
    lines_matching,
    normalize,
    plan_templates,
    query_terms,
    template,
    templates,
)

KEY = retrieval_key("x")


def test_final_state_keeps_last_frame() -> None:
    assert final_state("10%\r50%\r100% done") == "100% done"
    assert final_state("plain") == "plain"
    assert final_state("tail\r") == "tail"


def test_normalize_counts_what_it_changed() -> None:
    lines, stats = normalize("a  \n 1%\r 99%\r100%\nb\t\nc")
    assert lines == ["a", "100%", "b", "c"]
    assert stats == {"progress": 1, "trailing": 2}


def test_fold_runs_note_and_decoder() -> None:
    lines = ["x", "y", "y", "y", "y", "z", "z", ""]
    out, folded = fold_runs(lines)
    assert out == ["x", "y", "[previous line repeated 3 more times]", "z", "z", ""]
    assert folded == 3
    assert expand_runs(out) == lines


@given(st.lists(st.sampled_from(["a", "b", "", "long line here"]), max_size=60))
def test_fold_runs_is_lossless(lines: list[str]) -> None:
    out, _ = fold_runs(lines)
    assert expand_runs(out) == lines


def test_template_masks_variable_parts() -> None:
    a = template("081109 203615 148 INFO dfs.DataNode: block blk_-1608999687919862906 at /mnt/x/y 0x1f")
    b = template("081110 013000 22 INFO dfs.DataNode: block blk_38865049064139660 at /var/z 0xff")
    assert a == b
    assert "INFO dfs.DataNode: block" in a
    assert template("Deleting block") != template("Creating table")


def test_template_is_linear_on_huge_words() -> None:
    assert template("a" * 200_000) == "a" * 200_000


def test_plan_templates_keeps_first_last_and_extremes() -> None:
    lines = [f"req {i} took {t}s status 200" for i, t in enumerate([0.1, 0.2, 9.5, 0.3, 0.2, 0.1, 0.4, 0.2])]
    lines.insert(3, "something rare happened")
    plan = Plan()
    plan_templates(lines, [True] * len(lines), KEY, plan)
    out = plan.render(lines)
    assert lines[0] in out and lines[-1] in out
    assert "req 2 took 9.5s status 200" in out  # the slowest request stays
    assert "something rare happened" in out
    markers = [ln for ln in out if ln.startswith("[... ")]
    assert len(markers) == 1
    n = int(re.match(r"\[\.\.\. (\d+) of 8 lines omitted", markers[0]).group(1))  # type: ignore[union-attr]
    assert n == len(plan.drop) == len(lines) - (len(out) - 1)
    assert KEY in markers[0]


def test_plan_templates_leaves_small_groups_and_protected_lines() -> None:
    lines = [f"tick {i}" for i in range(4)]
    plan = Plan()
    plan_templates(lines, [True] * 4, KEY, plan)
    assert not plan.drop
    lines = [f"tick {i}" for i in range(10)]
    plan_templates(lines, [False] * 10, KEY, plan)
    assert not plan.drop


def test_plan_templates_leaves_one_run_of_the_same_line_to_fold_runs() -> None:
    lines = ["Cloning test database for alias 'default'..."] * 12
    plan = Plan()
    plan_templates(lines, [True] * 12, KEY, plan)
    assert not plan.drop  # fold_runs says "repeated 11 more times" without losing anything
    spread = [*lines[:6], "other line", *lines[:6]]
    plan_templates(spread, [True] * 13, KEY, plan)
    assert plan.drop  # the same line in two places is still a template


def test_query_terms_pick_identifiers_only() -> None:
    ctx = Context(
        query="why does test_restify_mock fail in sphinx/util/typing.py please",
        tool_args='{"cmd": "pytest -x"}',
    )
    terms = query_terms(ctx)
    assert "test_restify_mock" in terms and "sphinx/util/typing.py" in terms
    assert "please" not in terms and "pytest" not in terms
    assert query_terms(Context()) == frozenset()


def test_lines_matching_equals_brute_force() -> None:
    lines = ["ok fine", "an ERROR here", "", "warning: x", "nothing", "error"]
    low = [ln.lower() for ln in lines]
    pat = re.compile(r"\b(?:error|warning)\b")
    got = lines_matching(low, "\n".join(low), line_starts(low), ("error", "warn"), pat.search)
    assert got == {i for i, ln in enumerate(low) if pat.search(ln)}


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=40), max_size=20))
def test_templates_match_template_line_by_line(lines: list[str]) -> None:
    assert templates(lines) == [template(ln) for ln in lines]


def test_templates_of_lines_with_and_without_variable_parts() -> None:
    # only lines with a digit or a slash go through the pattern: the result is each line's template
    from ctxgate.engine._lines import template, templates

    lines = [
        "plain words only",
        "GET /api/v1/items 200 in 12ms",
        "",
        "worker-7 done",
        "Ünïcödé ٣ digit",  # a non-ASCII digit is a digit too
        "no digits here either",
    ]
    assert templates(lines) == [template(ln) for ln in lines]
    assert templates(lines[:1]) == ["plain words only"] and templates([]) == []
    assert templates(lines[1:2]) == [template(lines[1])]


def test_templates_of_a_log_with_a_few_plain_lines() -> None:
    from ctxgate.engine._lines import template, templates

    lines = [f"2024-01-01 12:00:{i:02d} worker {i} done" if i % 10 else "plain line" for i in range(60)]
    assert templates(lines) == [template(ln) for ln in lines]
