"""References: duplicates, repeated runs of earlier outputs, echoes of a call's own arguments.

Every reference must be lossless for the model: a decoder that reads only the marker lines,
the call's arguments and the earlier outputs as sent rebuilds the output byte for byte.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ctxgate.conversation import openai_chat
from ctxgate.conversation import references as refs
from ctxgate.conversation._base import Block, ToolCall
from tests.factories import openai_chat_request

_WHOSE = r"(?:this .*call|the \S+ call (\S+) above)"
_ECHO_NUMBERED = re.compile(
    r'\[(\d+) lines numbered (\d+)-(\d+) in the form "(.*)": lines (\d+)-(\d+) of the "(.+)" argument '
    rf"of {_WHOSE}; retrieve: ctx_\w+\]"
)
_ECHO_PLAIN = re.compile(
    rf'\[(\d+) lines: lines (\d+)-(\d+) of the "(.+)" argument of {_WHOSE}, verbatim; retrieve: ctx_\w+\]'
)
_REPEAT = re.compile(
    r"\[(\d+) lines same as lines (\d+)-(\d+) of (?:the output of tool call (\S+) above|the full output of tool call "
    r"(\S+), shortened above); retrieve: ctx_\w+\]"
)


def decode(
    text: str,
    call: ToolCall | None,
    earlier: dict[str, str],
    calls: dict[str, ToolCall] | None = None,
    full: dict[str, str] | None = None,
) -> str:
    """Rebuild an output from its markers, the calls' arguments and the earlier outputs (by tool id)."""
    own = json.loads(call.args) if call is not None else {}
    out: list[str] = []
    for line in text.split("\n"):
        if m := _ECHO_NUMBERED.fullmatch(line):
            k, n0, _, shown, a, _, name, other = m.groups()
            args = json.loads((calls or {})[other].args) if other else own
            sep = "\t" if shown.endswith("<tab>") else shown[-1]
            width = len(shown.removesuffix("<tab>")) if sep == "\t" else len(shown) - 1
            arg = args[name].split("\n")[int(a) - 1 : int(a) - 1 + int(k)]
            out += [f"{int(n0) + i:>{width}}{sep}{x}" for i, x in enumerate(arg)]
        elif m := _ECHO_PLAIN.fullmatch(line):
            k, a, _, name, other = m.groups()
            args = json.loads((calls or {})[other].args) if other else own
            out += args[name].split("\n")[int(a) - 1 : int(a) - 1 + int(k)]
        elif m := _REPEAT.fullmatch(line):
            k, a, _, tool_id, full_id = m.groups()
            source = earlier[tool_id] if tool_id else (full or {})[full_id]
            out += source.split("\n")[int(a) - 1 : int(a) - 1 + int(k)]
        else:
            out.append(line)
    return "\n".join(out)


def block(text: str, tool_id: str = "c9", index: int = 5) -> Block:
    return Block(index, index, tool_id, -1, text, 0, 0, "Write")


def call(name: str, **args: object) -> ToolCall:
    return ToolCall("c9", name, json.dumps(args), 4)


def roundtrip(
    b: Block,
    c: ToolCall | None,
    earlier: list[tuple[Block, str]] | None = None,
    others: tuple[ToolCall, ...] = (),
    *,
    whole: bool = False,
    exact: list[tuple[Block, str]] | None = None,
) -> str:
    calls = refs.Calls([*others, *([c] if c else [])])
    found = refs.references(b, c, earlier, calls, whole=whole, exact=exact or ())
    text = refs.reference_text(b, c, found, "ctx_k")
    sources = {e.tool_id: t for e, t in [*(earlier or []), *(exact or [])]}
    assert decode(text, c, sources, {o.id: o for o in others}) == b.text
    return text


def test_duplicates_point_at_the_first_copy() -> None:
    raw = openai_chat_request(
        [
            ("user", "go"),
            ("call", "a", "bash", {"command": "ls"}),
            ("result", "a", "same"),
            ("call", "b", "bash", {"command": "ls"}),
            ("result", "b", "other"),
            ("call", "c", "bash", {"command": "ls"}),
            ("result", "c", "same"),
            ("call", "d", "bash", {"command": "ls"}),
            ("result", "d", "same"),
        ]
    )
    dups = refs.duplicates(openai_chat.parse(raw).blocks)
    assert {i: b.tool_id for i, b in dups.items()} == {2: "a", 3: "a"}
    first = Block(0, 1, "c1", -1, "x", 0, 0)
    assert refs.duplicate_marker(first, "ctx_1") == "[same output as tool call c1 above; retrieve: ctx_1]"


def test_shared_runs_pass_through_common_lines_and_do_not_overlap() -> None:
    earlier = ["a", "", "b", "", "c", "", "d", "", "e", "", "f"]
    lines = ["x", *earlier, "y", *earlier[:9]]
    assert refs.shared_runs(earlier, lines) == [(0, 1, 11), (0, 13, 9)]
    assert refs.shared_runs(earlier, ["x", *earlier[:7]]) == []  # shorter than MIN_LINES
    # a run may start at a popular line ("" is in earlier 5 times): it extends backwards to it
    assert refs.shared_runs(earlier, earlier[1:10]) == [(1, 0, 9)]


def test_repeated_lines_finds_the_longest_runs_of_earlier_outputs() -> None:
    common = [f"line {i} of the shared part" for i in range(20)]
    earlier = Block(0, 1, "a", -1, "\n".join(["status: running", *common]), 0, 0)
    other = Block(1, 3, "b", -1, "\n".join(f"other {i}" for i in range(9)), 0, 0)
    now = Block(
        2,
        5,
        "c",
        -1,
        "\n".join(["status: done", *common, "42 passed", *(f"other {i}" for i in range(9))]),
        0,
        0,
    )
    sent = [(earlier, earlier.text), (other, other.text)]
    rep = refs.repeated_lines(now, sent)
    assert [(r.first.tool_id, r.first_start, r.start, r.end) for r in rep] == [
        ("a", 1, 1, 21),
        ("b", 0, 22, 31),
    ]
    text = refs.reference_text(now, None, rep, "ctx_k")
    assert text == (
        "status: done\n[20 lines same as lines 2-21 of the output of tool call a above; retrieve: ctx_k]\n42 passed\n"
        "[9 lines same as lines 1-9 of the output of tool call b above; retrieve: ctx_k]"
    )
    assert decode(text, None, {"a": earlier.text, "b": other.text}) == now.text
    assert refs.repeated_lines(Block(3, 7, "d", -1, "\n".join(common[:5]), 0, 0), sent) == []  # too short
    assert refs.repeated_lines(Block(3, 7, "d", -1, "\n".join(f"x{i}" for i in range(30)), 0, 0), sent) == []


def test_a_repeat_of_an_output_sent_shortened_says_so() -> None:
    """The earlier output went upstream compressed: a run of its full text is a lossy reference,
    marked as such, and the text between the references can be rewritten (``fill``)."""
    log = [f"worker {i % 7} processed batch {i}" for i in range(40)]
    first = Block(0, 1, "a", -1, "\n".join(log), 0, 0)
    now = Block(1, 3, "b", -1, "\n".join([*log, "ERROR batch 40 failed", "tail"]), 0, 0)
    sent = [(first, "[40 log lines like: worker <*> processed batch <*>; retrieve: ctx_x]")]
    assert refs.repeated_lines(now, sent) == []
    rep = refs.repeated_lines(now, sent, unshown=[(first, first.text)])
    assert [(r.first_start, r.start, r.end, r.shown) for r in rep] == [(0, 0, 40, False)]
    text = refs.reference_text(now, None, rep, "ctx_k", fill=str.upper)
    assert text == (
        "[40 lines same as lines 1-40 of the full output of tool call a, shortened above; retrieve: ctx_k]\n"
        "ERROR BATCH 40 FAILED\nTAIL"
    )
    plain = refs.reference_text(now, None, rep, "ctx_k")
    assert decode(plain, None, {}, full={"a": first.text}) == now.text


def test_repeats_point_at_the_text_as_it_went_upstream() -> None:
    """An earlier output sent with a marker in it: line numbers are those of what was sent."""
    body = [f"def f{i}(): pass" for i in range(12)]
    first = Block(0, 1, "a", -1, "\n".join(["head", *body]), 0, 0)
    sent_first = "[3 lines elided; retrieve: ctx_x]\n" + "\n".join(body)
    now = Block(1, 3, "b", -1, "\n".join(["new", *body]), 0, 0)
    rep = refs.repeated_lines(now, [(first, sent_first)])
    assert [(r.first_start, r.start, r.end) for r in rep] == [(1, 1, 13)]
    assert decode(refs.reference_text(now, None, rep, "ctx_k"), None, {"a": sent_first}) == now.text


def test_a_write_that_prints_the_file_it_wrote_points_at_its_content() -> None:
    content = "\n".join(f"line {i}" for i in range(1, 31))
    shown = "\n".join(f"{i:>6}→line {i}" for i in range(1, 31))
    out = block(
        f"The file /a.ex has been updated. Here's the result of running `cat -n` on a snippet:\n{shown}"
    )
    c = call("Write", file_path="/a.ex", content=content)
    assert [name for name, _ in refs.Calls([c]).args(c)] == ["content"]
    text = roundtrip(out, c)
    assert text.endswith(
        '\n[30 lines numbered 1-30 in the form "     1→": lines 1-30 of the "content" argument of this Write call; '
        "retrieve: ctx_k]"
    )


def test_echo_numbering_must_be_exact_and_consecutive() -> None:
    content = "\n".join(f"row {i}" for i in range(40))
    # an editor's view of lines 11-30 with tabs, one number skipped (a line the tool hid)
    shown = [f"{n:>6}\trow {n - 1}" for n in range(11, 31) if n != 21]
    c = call("str_replace_editor", command="create", path="/x", file_text=content)
    found = refs.echoed_arguments(block("\n".join(shown)), c)
    assert [(e.arg_start, e.start, e.end, e.number) for e in found] == [(10, 0, 10, 11), (21, 10, 19, 22)]
    roundtrip(block("\n".join(shown)), c)
    # zero-padded numbers are not the form "{n:>6}": no echo, and no false claim
    padded = "\n".join(f"{n:06d}\trow {n - 1}" for n in range(1, 20))
    assert refs.echoed_arguments(block(padded), c) == []


def test_a_plan_tool_that_repeats_the_plan() -> None:
    plan = "\n".join(["# Plan", "", *(f"- step {i}" for i in range(12))])
    out = block(f"User has approved your plan.\n\n## Approved Plan:\n{plan}")
    c = call("ExitPlanMode", plan=plan)
    text = roundtrip(out, c)
    assert text.endswith(
        '[14 lines: lines 1-14 of the "plan" argument of this ExitPlanMode call, verbatim; retrieve: ctx_k]'
    )


def test_no_echo_without_a_multi_line_argument() -> None:
    read = call("Read", file_path="/a.py")
    assert refs.Calls([read]).args(read) == [] and refs.Calls([read]).before(9) == []
    assert refs.echoed_arguments(block("\n".join(map(str, range(20)))), call("Read", file_path="/a.py")) == []


def test_echoes_and_repeats_combine_without_overlap() -> None:
    content = "\n".join(f"new {i}" for i in range(10))
    old = "\n".join(f"old {i}" for i in range(10))
    earlier = Block(0, 1, "a", -1, old, 0, 0)
    now = block(f"{old}\n--\n{content}")
    text = roundtrip(now, call("Write", content=content), [(earlier, old)])
    assert text.count("retrieve: ctx_k") == 2 and "--" in text


def test_a_read_of_a_file_the_agent_wrote_points_at_the_write() -> None:
    content = "\n".join(f"line {i}" for i in range(1, 41))
    write = ToolCall("w1", "Write", json.dumps({"file_path": "/a.ex", "content": content}), 1)
    read = ToolCall("c9", "Read", json.dumps({"file_path": "/a.ex"}), 4)
    whole = block("\n".join(f"{i:>6}→line {i}" for i in range(1, 41)))
    text = roundtrip(whole, read, None, (write,), whole=True)
    assert (
        text
        == '[40 lines numbered 1-40 in the form "     1→": lines 1-40 of the "content" argument of the Write '
        "call w1 above; retrieve: ctx_k]"
    )
    # a read that shares only part of its lines with the write: no reference when a whole copy is needed
    partial = block("\n".join(f"{i:>6}→{'line' if i < 20 else 'edited'} {i}" for i in range(1, 41)))
    assert roundtrip(partial, read, None, (write,), whole=True) == partial.text
    assert roundtrip(partial, read, None, (write,)).startswith(
        '[19 lines numbered 1-19 in the form "     1→"'
    )
    # a call made after the output (or the output's own message) is never pointed at
    later = ToolCall("w2", "Write", write.args, 9)
    assert refs.references(whole, read, None, refs.Calls([later, read])) == []


def test_a_read_of_lines_read_before_points_at_that_read_only_when_it_is_all_there() -> None:
    numbered = [f"{i:>6}→def f{i}(): return {i * 7919 % 1000}" for i in range(1, 81)]
    first = Block(1, 1, "r1", -1, "\n".join(numbered), 0, 0, "Read")
    read = ToolCall("c9", "Read", json.dumps({"file_path": "/h.py", "offset": 21, "limit": 30}), 4)
    part = block("\n".join(numbered[20:50]))
    other = Block(2, 2, "r2", -1, "\n".join(numbered[:25]), 0, 0, "Read")
    assert refs.copy_sources(part, [(first, first.text), (other, other.text)]) == [(first, first.text)]
    text = roundtrip(part, read, whole=True, exact=[(first, first.text)])
    assert text == "[30 lines same as lines 21-50 of the output of tool call r1 above; retrieve: ctx_k]"
    # an agent's envelope around the lines, which the earlier output has too, may stay in place
    wrapped_first = Block(
        1, 1, "r1", -1, "\n".join(["<returncode>0</returncode>", "<output>", *numbered, "</output>"]), 0, 0
    )
    wrapped = block("\n".join(["<returncode>0</returncode>", "<output>", *numbered[:30], "</output>"]))
    text = roundtrip(wrapped, None, whole=True, exact=[(wrapped_first, wrapped_first.text)])
    assert text.endswith("retrieve: ctx_k]\n</output>") and text.count("retrieve") == 1
    # a line the earlier output does not have (an edit, a wider range): the read stays as it is
    wider = block("\n".join([*numbered[20:50], "    81→def new(): pass"]))
    assert roundtrip(wider, read, whole=True, exact=[(first, first.text)]) == wider.text
    # without ``whole`` such outputs are ``earlier`` ones and any long run counts (``protected_dedupe=runs``)
    assert roundtrip(wider, read, [(first, first.text)]).startswith("[30 lines same as lines 21-50")


def test_on_a_tie_the_own_call_wins() -> None:
    plan = "\n".join(f"- step {i}" for i in range(12))
    write = ToolCall("w1", "Write", json.dumps({"content": plan}), 1)
    c = call("ExitPlanMode", plan=plan)
    text = roundtrip(block(f"Approved:\n{plan}"), c, None, (write,))
    assert "argument of this ExitPlanMode call" in text


lines = st.lists(st.sampled_from(["", "x", "y", "z", "}", "  return 1", "a\tb"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(lines, lines, lines, st.booleans())
def test_references_always_decode_to_the_output(
    before: list[str], arg: list[str], after: list[str], numbered: bool
) -> None:
    shown = [f"{i + 1:>6}→{x}" for i, x in enumerate(arg)] if numbered else arg
    out = block("\n".join([*before, *shown, *after]))
    earlier = Block(0, 1, "e", -1, "\n".join(after + before), 0, 0)
    roundtrip(out, call("Write", content="\n".join(arg)), [(earlier, earlier.text)])


def test_every_trajectory_output_decodes(corpus: Path) -> None:
    """All shared trajectories: each tool output against every call before it and the outputs before it."""
    kinds: dict[str, int] = {}
    for path in sorted((corpus / "trajectories").glob("*.jsonl")):
        if path.name == "needles.jsonl":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            conv = json.loads(line)
            calls = {
                tc["id"]: ToolCall(tc["id"], tc["function"]["name"], tc["function"]["arguments"], i)
                for i, m in enumerate(conv["messages"])
                for tc in m.get("tool_calls") or []
            }
            index = refs.Calls(calls.values())
            earlier: list[tuple[Block, str]] = []
            for i, m in enumerate(conv["messages"]):
                if m["role"] != "tool" or not isinstance(m.get("content"), str):
                    continue
                b = Block(len(earlier), i, m.get("tool_call_id") or f"m{i}", -1, m["content"], 0, 0)
                c = calls.get(b.tool_id)
                found = refs.references(b, c, earlier[-refs.LOOKBACK :], index)
                for r in found:
                    kind = (
                        "repeat"
                        if isinstance(r, refs.Repeat)
                        else "echo of an earlier call"
                        if r.call_id
                        else "echo"
                    )
                    kinds[kind] = kinds.get(kind, 0) + 1
                text = refs.reference_text(b, c, found, "ctx_k")
                assert decode(text, c, {e.tool_id: t for e, t in earlier}, calls) == b.text
                earlier.append((b, text))
    # the corpus has Write and plan echoes, reads of written files and re-run outputs
    assert min(kinds.get(k, 0) for k in ("repeat", "echo", "echo of an earlier call")) >= 5, kinds
