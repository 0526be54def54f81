"""The protection policy: which tool outputs may change, and the markers that replace some.

Only tool outputs are candidates. An output stays byte-exact when its tool is one an
agent edits against by exact string (``protected_tools`` plus the request's
``exclude_tools``), when it came from a shell command that prints a file (``cat``,
``sed -n``, ``head``, ``tail``, ``nl``, ``less`` of a path), when it is an error result
up to ``max_verbatim_error_tokens``, or when it is smaller than ``min_tokens``. Requests
for a model cheaper than ``price_floor_per_mtok`` are not compressed at all.

Pure: no I/O, no clock. ``POLICY_VERSION`` is part of every decision key; bump it only
when a change must not replay decisions made under the old rules (it re-decides every
block of every session once).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from ctxgate.conversation._base import Block, Conversation, ToolCall
from ctxgate.settings import Level, Settings

POLICY_VERSION = "1"

_READ_TOOLS = {
    "read", "read_file", "view_file", "notebookread", "mcp__filesystem__read_file",
    "mcp__filesystem__read_text_file",
}
_WRITE_TOOLS = {
    "write", "edit", "multiedit", "notebookedit", "write_file", "edit_file", "create_file",
    "mcp__filesystem__edit_file", "mcp__filesystem__write_file",
}
_EDITOR_TOOLS = {"str_replace_editor", "str_replace_based_edit_tool"}
_PATH_KEYS = ("file_path", "path", "notebook_path", "filename")
_COMMAND_KEYS = ("command", "cmd", "script")

_PRINTERS = {"cat", "nl", "head", "tail", "less", "more", "sed", "bat"}
#: options of the printers that take a value as the next word
_OPTS_WITH_VALUE = {
    "nl": {"-b", "-v", "-w", "-s", "-i", "-l", "-n", "-d", "-h", "-f"},
    "head": {"-n", "-c"},
    "tail": {"-n", "-c"},
    "sed": {"-e", "-f", "-l"},
    "bat": {"-r", "--line-range", "-l", "--language"},
}
#: SWE-agent's file viewer and editor commands, run through its bash tool: their output is a file window
_VIEWERS = {"open", "goto", "scroll_up", "scroll_down", "edit", "create", "insert"}
_SEPARATORS = {"&&", "||", ";", "\n", "&"}
_HARMLESS = {"cd", "pushd", "true", "export", "set"}
_TRACEBACK = re.compile(r"Traceback \(most recent call last\):|^<returncode>[1-9]\d*</returncode>")


def arguments(call: ToolCall | None) -> dict[str, object]:
    """The tool call's arguments as a dict ({} when they are not a JSON object)."""
    if call is None or not call.args:
        return {}
    try:
        value = json.loads(call.args)
    except ValueError:
        return {"command": call.args}  # custom tools send raw text
    return value if isinstance(value, dict) else {}


def shell_command(call: ToolCall | None) -> str | None:
    """The shell command a tool call runs, from its ``command``/``cmd`` argument."""
    args = arguments(call)
    for key in _COMMAND_KEYS:
        value = args.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            # ["bash", "-lc", "cat x"] runs its last word
            return value[-1] if len(value) >= 3 and value[1] in ("-c", "-lc") else " ".join(value)
    return None


def _words(command: str) -> list[str]:
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace = " \t\r"  # keep newlines: they separate commands
    lex.whitespace_split = True
    return list(lex)


def _printed_paths(stage: list[str], first: bool) -> list[str] | None:
    """Paths a file-printing pipeline stage prints, or None when it is not one."""
    if not stage or stage[0] not in _PRINTERS:
        return None
    cmd, operands, opts = stage[0], [], _OPTS_WITH_VALUE.get(stage[0], set())
    quiet = script = False
    it = iter(stage[1:])
    for w in it:
        if w in (">", ">>", "<", "|&", "<<", "<<<") or w.startswith(">"):
            return None
        if cmd == "sed" and w in ("-n", "--quiet", "--silent"):
            quiet = True
        elif cmd == "sed" and w.startswith(("-i", "--in-place")):
            return None
        elif w in opts:
            script = script or w in ("-e", "-f")
            next(it, None)
        elif w.startswith("-") and w != "-":
            continue
        else:
            operands.append(w)
    if cmd == "sed":
        if not quiet or not (operands or script):
            return None
        operands = operands if script else operands[1:]  # the first operand is the script
    if first and not operands:
        return None
    return operands


def printed_files(command: str) -> list[str] | None:
    """The files a shell command prints whole or in part, or None when it does something else.

    ``cd /repo && nl -ba src/x.py | sed -n '1,80p'`` -> ``["src/x.py"]``.
    """
    try:
        words = _words(command)
    except ValueError:
        return None
    segments: list[list[str]] = [[]]
    for w in words:
        if w in _SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(w)
    paths: list[str] = []
    for seg in (s for s in segments if s):
        if seg[0] in _HARMLESS:
            continue
        stages: list[list[str]] = [[]]
        for w in seg:
            if w == "|":
                stages.append([])
            else:
                stages[-1].append(w)
        for k, stage in enumerate(stages):
            got = _printed_paths(stage, first=k == 0)
            if got is None:
                return None
            paths += got
    return paths or None


def is_file_view(command: str) -> bool:
    """The command prints a file (``printed_files``) or runs a file-viewer command (SWE-agent's ``open``)."""
    if printed_files(command):
        return True
    try:
        words = [w for w in _words(command) if w not in _SEPARATORS]
    except ValueError:
        return False
    while len(words) >= 2 and words[0] in _HARMLESS:
        words = words[2:]  # cd DIR
    return bool(words) and words[0] in _VIEWERS


def read_path(call: ToolCall | None) -> str | None:
    """The path a file-reading call reads (one file), or None."""
    if call is None:
        return None
    name = call.name.lower()
    args = arguments(call)
    if name in _READ_TOOLS or (name in _EDITOR_TOOLS and args.get("command") == "view"):
        return _path_arg(args)
    command = shell_command(call)
    files = printed_files(command) if command else None
    return files[0] if files and len(set(files)) == 1 else None


def write_path(call: ToolCall | None) -> str | None:
    """The path a file-changing tool call (Write, Edit, an editor's str_replace) writes, or None."""
    if call is None:
        return None
    name = call.name.lower()
    args = arguments(call)
    if name in _WRITE_TOOLS or (name in _EDITOR_TOOLS and args.get("command") not in (None, "view")):
        return _path_arg(args)
    return None


def written_files(command: str) -> list[str]:
    """Files a shell command visibly changes: ``sed -i`` operands, ``>``/``>>`` targets, ``tee`` operands."""
    try:
        words = _words(command)
    except ValueError:
        return []
    out: list[str] = []
    segment: list[str] = []
    for w in [*words, ";"]:
        if w not in _SEPARATORS and w != "|":
            segment.append(w)
            continue
        if segment and segment[0] == "sed" and any(x.startswith(("-i", "--in-place")) for x in segment[1:]):
            script, operands, skip = False, [], False
            for x in segment[1:]:
                if skip:
                    skip = False
                elif x in ("-e", "-f"):
                    script = skip = True
                elif not x.startswith("-"):
                    operands.append(x)
            out += operands if script else operands[1:]
        elif segment and segment[0] == "tee":
            out += [x for x in segment[1:] if not x.startswith("-")]
        out += [segment[k + 1] for k, x in enumerate(segment[:-1]) if x in (">", ">>")]
        segment = []
    return [p for p in out if p != "/dev/null"]


def written_paths(call: ToolCall | None) -> list[str]:
    """Every path a call changes: an edit tool's path, or the files its shell command writes."""
    path = write_path(call)
    if path:
        return [path]
    command = shell_command(call)
    return written_files(command) if command else []


def _path_arg(args: dict[str, object]) -> str | None:
    for key in _PATH_KEYS:
        v = args.get(key)
        if isinstance(v, str) and v:
            return v
    return None


def is_error(block: Block) -> bool:
    """An error result: flagged by the client, or a traceback / nonzero return code in the text."""
    return block.is_error or _TRACEBACK.search(block.text[:20000]) is not None


@dataclass(frozen=True, slots=True)
class Policy:
    """The protection rules for one request (settings plus per-request overrides)."""

    protected: frozenset[str]
    min_tokens: int
    max_verbatim_error_tokens: int
    level: Level
    tool_levels: tuple[tuple[str, Level], ...] = ()
    #: models whose input price (USD per 1M tokens) is below this are not compressed
    price_floor_per_mtok: float = 0.0
    #: a protected output's long runs of lines repeated from an earlier exact output may become
    #: references (``protected_dedupe = "runs"``); by default only a whole copy or an echo of the
    #: call's own arguments may (see ``references``)
    protected_runs: bool = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        level: Level | None = None,
        exclude_tools: Iterable[str] = (),
        min_tokens: int | None = None,
    ) -> Policy:
        names = {n.lower() for n in settings.protected_tools} | {n.lower() for n in exclude_tools}
        return cls(
            protected=frozenset(names),
            min_tokens=settings.min_tokens if min_tokens is None else min_tokens,
            max_verbatim_error_tokens=settings.max_verbatim_error_tokens,
            level=level or settings.level,
            tool_levels=tuple(sorted((k.lower(), v) for k, v in settings.tool_levels.items())),
            price_floor_per_mtok=settings.price_floor_per_mtok,
            protected_runs=settings.protected_dedupe == "runs",
        )

    def below_price_floor(self, price_per_mtok: float | None) -> bool:
        """The model is too cheap to be worth compressing (an unknown price never is)."""
        return price_per_mtok is not None and price_per_mtok < self.price_floor_per_mtok

    def level_for(self, tool_name: str | None) -> Level:
        name = (tool_name or "").lower()
        for k, v in self.tool_levels:
            if k == name:
                return v
        return self.level

    def exemption(self, block: Block, call: ToolCall | None) -> str | None:
        """The reasons of ``protection`` that do not depend on the output's size (its tokens need
        not be counted to know them)."""
        if self.level_for(block.tool_name) == "off":
            return "level_off"
        if block.tool_name is not None and block.tool_name.lower() in self.protected:
            return "protected"
        command = shell_command(call)
        if command and is_file_view(command):
            return "file_read"
        return None

    def protection(self, block: Block, call: ToolCall | None, tokens: int) -> str | None:
        """Why this output must stay byte-exact (a short reason), or None when it may change."""
        exempt = self.exemption(block, call)
        if exempt is not None:
            return exempt
        if is_error(block) and tokens <= self.max_verbatim_error_tokens:
            return "error_result"
        if tokens < self.min_tokens:
            return "small"
        return None


def stale_reads(conv: Conversation) -> dict[int, tuple[str, ToolCall]]:
    """Block index -> (path, the later call that changed it) for reads a later write made obsolete."""
    writes: dict[str, ToolCall] = {}
    for call in conv.calls.values():
        for path in map(posixpath.normpath, written_paths(call)):
            last = writes.get(path)
            if last is None or call.message > last.message:
                writes[path] = call
    out: dict[int, tuple[str, ToolCall]] = {}
    if not writes:
        return out
    for b in conv.blocks:
        reader = conv.calls.get(b.tool_id)
        read = read_path(reader)
        read = posixpath.normpath(read) if read else None
        writer = writes.get(read) if read else None
        if read and writer is not None and reader is not None and writer.message > reader.message:
            out[b.index] = (read, writer)
    return out


def stale_marker(path: str, writer: ToolCall, key: str) -> str:
    return (
        f"[stale read of {path}: the file was changed later by {writer.name} (call {writer.id}); "
        f"read it again for its current content; retrieve: {key}]"
    )
