"""The protection policy: protected tools, file-printing commands, errors, small outputs, markers."""

from __future__ import annotations

import json

import pytest

from ctxgate.conversation import anthropic, openai_chat
from ctxgate.conversation import policy as pol
from ctxgate.conversation._base import Block, ToolCall
from ctxgate.settings import Settings
from tests.factories import anthropic_request, openai_chat_request


@pytest.mark.parametrize(
    ("command", "files"),
    [
        ("cat src/a.py", ["src/a.py"]),
        ("cat a.py b.py", ["a.py", "b.py"]),
        ("cd /testbed && nl -ba django/db/models.py | sed -n '1,200p'", ["django/db/models.py"]),
        ("sed -n '10,40p' setup.py", ["setup.py"]),
        ("sed -n -e '10,40p' setup.py", ["setup.py"]),
        ("head -n 50 README.md", ["README.md"]),
        ("head -50 README.md", ["README.md"]),
        ("tail -n 20 log.txt", ["log.txt"]),
        ("less x.txt", ["x.txt"]),
        ("nl -b a -w 3 f.c", ["f.c"]),
        ("cat a.py | head -n 20", ["a.py"]),
        ("ls -la", None),
        ("grep -n foo a.py", None),
        ("cat a.py | grep foo", None),
        ("sed -i 's/a/b/' a.py", None),
        ("sed 's/a/b/' a.py", None),
        ("cat <<'EOF' > a.py\nx\nEOF", None),
        ("cat > a.py", None),
        ("head", None),
        ("python -c 'print(1)'", None),
        ("cd /x && cat 'unbalanced", None),
        ("cd /repo", None),
    ],
)
def test_printed_files(command: str, files: list[str] | None) -> None:
    assert pol.printed_files(command) == files


def call(name: str, args: object) -> ToolCall:
    return ToolCall("c1", name, args if isinstance(args, str) else json.dumps(args), 0)


def test_shell_command_from_arguments() -> None:
    assert pol.shell_command(call("bash", {"command": "ls"})) == "ls"
    assert pol.shell_command(call("shell", {"command": ["bash", "-lc", "cat x"]})) == "cat x"
    assert pol.shell_command(call("exec", {"cmd": ["ls", "-la"]})) == "ls -la"
    assert pol.shell_command(call("custom", "cat x")) == "cat x"  # raw-text custom tool input
    assert pol.shell_command(call("x", [1, 2])) is None
    assert pol.shell_command(None) is None


def test_read_and_write_paths() -> None:
    assert pol.read_path(call("Read", {"file_path": "/a.py", "offset": 3})) == "/a.py"
    assert pol.read_path(call("str_replace_editor", {"command": "view", "path": "/a.py"})) == "/a.py"
    assert pol.read_path(call("bash", {"command": "cat /a.py"})) == "/a.py"
    assert pol.read_path(call("bash", {"command": "cat /a.py /b.py"})) is None
    assert pol.read_path(call("Grep", {"path": "/a.py"})) is None
    assert pol.write_path(call("Edit", {"file_path": "/a.py", "old_string": "a"})) == "/a.py"
    assert pol.write_path(call("str_replace_editor", {"command": "str_replace", "path": "/a.py"})) == "/a.py"
    assert pol.write_path(call("str_replace_editor", {"command": "view", "path": "/a.py"})) is None
    assert pol.write_path(call("Read", {"file_path": "/a.py"})) is None


def block(text: str = "x", *, name: str | None = "Bash", is_error: bool = False) -> Block:
    return Block(0, 1, "c1", -1, text, 0, 0, name, None, is_error)


def test_protection_reasons_in_order() -> None:
    p = pol.Policy.from_settings(Settings(), exclude_tools=("MyTool",), min_tokens=100)
    assert p.protection(block(name="Read"), None, 10_000) == "protected"
    assert p.protection(block(name="mytool"), None, 10_000) == "protected"  # per request, any case
    assert p.protection(block(), call("Bash", {"command": "cat a.py"}), 10_000) == "file_read"
    assert p.protection(block(is_error=True), None, 500) == "error_result"
    assert p.protection(block(is_error=True), None, 5000) is None  # larger than max_verbatim_error_tokens
    tb = "Traceback (most recent call last):\n  File x\nValueError"
    assert p.protection(block(tb), None, 500) == "error_result"
    assert p.protection(block("<returncode>2</returncode>\n<output>x"), None, 500) == "error_result"
    assert p.protection(block("<returncode>0</returncode>\n<output>x"), None, 500) is None
    assert p.protection(block(), None, 99) == "small"
    assert p.protection(block(), None, 100) is None
    # the reasons that hold whatever the size are known without a count
    assert p.exemption(block(name="Read"), None) == "protected"
    assert p.exemption(block(), call("Bash", {"command": "cat a.py"})) == "file_read"
    assert p.exemption(block(is_error=True), None) is None and p.exemption(block(), None) is None


def test_levels_per_tool() -> None:
    s = Settings(tool_levels={"WebFetch": "off", "Grep": "lossless"})
    p = pol.Policy.from_settings(s, level="balanced")
    assert p.level_for("webfetch") == "off" and p.level_for("Grep") == "lossless" and p.level_for(None) == "balanced"
    assert p.protection(block(name="WebFetch"), None, 10_000) == "level_off"
    assert pol.Policy.from_settings(Settings(level="lossless")).level == "lossless"


def test_stale_reads_need_a_later_write_to_the_same_path() -> None:
    raw = anthropic_request([
        ("user", "go"),
        ("call", "r1", "Read", {"file_path": "/a.py"}), ("result", "r1", "old a"),
        ("call", "r2", "Read", {"file_path": "/b.py"}), ("result", "r2", "b"),
        ("call", "w1", "Edit", {"file_path": "/a.py", "old_string": "old", "new_string": "new"}),
        ("result", "w1", "ok"),
        ("call", "r3", "Read", {"file_path": "/a.py"}), ("result", "r3", "new a"),
    ])
    conv = anthropic.parse(raw)
    stale = pol.stale_reads(conv)
    assert {conv.blocks[i].tool_id: (path, w.id) for i, (path, w) in stale.items()} == {"r1": ("/a.py", "w1")}


def test_stale_marker_names_the_call_and_the_retrieval_key() -> None:
    m = pol.stale_marker("/a.py", ToolCall("w", "Edit", "{}", 3), "ctx_2")
    assert "/a.py" in m and "Edit" in m and "ctx_2" in m and m.startswith("[stale read")


def test_arguments_tolerate_non_objects() -> None:
    assert pol.arguments(call("x", [1])) == {} and pol.arguments(None) == {}


def test_price_floor() -> None:
    p = pol.Policy.from_settings(Settings(price_floor_per_mtok=1.0))
    assert p.below_price_floor(0.25) and not p.below_price_floor(3.0) and not p.below_price_floor(None)
    assert not pol.Policy.from_settings(Settings()).below_price_floor(0.0)


@pytest.mark.parametrize(
    ("command", "files"),
    [
        ("sed -i 's/a/b/' src/x.py", ["src/x.py"]),
        ("cd /r && sed -i -e 's/a/b/' x.py y.py", ["x.py", "y.py"]),
        ("echo hi > notes.txt && cat notes.txt", ["notes.txt"]),
        ("python gen.py >> out.log 2>/dev/null", ["out.log"]),
        ("printf x | tee -a a.txt b.txt", ["a.txt", "b.txt"]),
        ("cat > a.py <<'EOF'\nprint(1)\nEOF", ["a.py"]),
        ("ls > /dev/null", []),
        ("grep -n x a.py", []),
        ("echo 'unbalanced", []),
    ],
)
def test_written_files(command: str, files: list[str]) -> None:
    assert pol.written_files(command) == files


def test_a_shell_edit_makes_an_earlier_shell_read_stale() -> None:
    raw = openai_chat_request([
        ("user", "go"),
        ("call", "r", "bash", {"command": "nl -ba a.py | sed -n '1,50p'"}), ("result", "r", "1 x"),
        ("call", "w", "bash", {"command": "sed -i 's/x/y/' ./a.py"}), ("result", "w", ""),
    ])
    conv = openai_chat.parse(raw)
    assert {conv.blocks[i].tool_id: (p, w.id) for i, (p, w) in pol.stale_reads(conv).items()} == {"r": ("a.py", "w")}
    assert pol.written_paths(ToolCall("e", "Edit", json.dumps({"file_path": "/b"}), 0)) == ["/b"]
    assert pol.written_paths(None) == []


@pytest.mark.parametrize(
    ("command", "view"),
    [
        ("open src/fields.py 1474", True),
        ("cd /repo && goto 120", True),
        ("scroll_down", True),
        ("edit 10:12\nreturn x\nend_of_edit", True),
        ("nl -ba a.py | sed -n '1,20p'", True),
        ("python reproduce.py", False),
        ("grep -n open a.py", False),
        ("echo 'x", False),
    ],
)
def test_file_views(command: str, view: bool) -> None:
    assert pol.is_file_view(command) is view


def test_swe_agent_viewer_tools_are_protected_by_default() -> None:
    p = pol.Policy.from_settings(Settings())
    assert p.protection(block(name="open"), None, 10_000) == "protected"
    assert p.protection(block(name="bash"), call("bash", {"command": "open a.py"}), 10_000) == "file_read"
