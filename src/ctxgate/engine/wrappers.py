"""Agent wrappers and terminal noise around tool output, taken off before detection.

Agents frame command output in their own envelopes: mini-swe-agent sends
``<returncode>0</returncode>\\n<output>\\n...</output>``, SWE-agent appends
``///PROCESS-DONE:0:PROCESS-DONE///`` markers, Claude Code prefixes ``Exit code 1``,
OpenHands appends ``[Command finished with exit code 0]``. ``unwrap`` splits such a
text into ``prefix + body + suffix`` so that the body alone is detected and
compressed, and ``Wrapped.rewrap`` puts the untouched prefix and suffix back.

``clean`` is the lossless terminal clean-up of the body: ANSI escape sequences are
removed and carriage-return progress bars are reduced to what the terminal finally
shows. Both keep every line the reader could see.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

#: (name, cheap precondition on (head, tail), pattern with groups ``pre``, ``body``, ``post``);
#: the first full match wins. The preconditions keep the regexes off texts they cannot match.
_FORMS: tuple[tuple[str, Callable[[str, str], bool], re.Pattern[str]], ...] = (
    (
        "mini-swe-agent",
        lambda head, tail: head.startswith("<returncode>"),
        re.compile(
            r"(?P<pre>\A\s*<returncode>-?\d+</returncode>\s*<output>\n?)(?P<body>.*?)"
            r"(?P<post></output>\s*\Z)",
            re.S,
        ),
    ),
    (
        "output-tag",
        lambda head, tail: head.startswith(("<output>", "<stdout>")),
        re.compile(
            r"(?P<pre>\A\s*<(?:output|stdout)>\n?)(?P<body>.*?)(?P<post></(?:output|stdout)>\s*\Z)", re.S
        ),
    ),
    (
        "swe-agent",
        lambda head, tail: "PROCESS-DONE///" in tail,
        re.compile(r"(?P<pre>\A)(?P<body>.*?)(?P<post>\n?///PROCESS-DONE:-?\d+:PROCESS-DONE///\s*\Z)", re.S),
    ),
    (
        "exit-code",
        lambda head, tail: head.startswith("Exit code "),
        re.compile(r"(?P<pre>\AExit code -?\d+\n)(?P<body>.*)(?P<post>)\Z", re.S),
    ),
    (
        "openhands",
        lambda head, tail: "[Command finished" in tail or "[Python Interpreter" in tail,
        re.compile(
            r"(?P<pre>\A)(?P<body>.*?)(?P<post>\n\[(?:Command finished with exit code -?\d+|"
            r"Python Interpreter: [^\]\n]*)\]\s*\Z)",
            re.S,
        ),
    ),
)

#: CSI, OSC (ended by BEL or ST) and two-character escape sequences
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


@dataclass(frozen=True, slots=True)
class Wrapped:
    """A tool output split into an agent's envelope and the body inside it."""

    prefix: str
    body: str
    suffix: str
    #: which envelope, e.g. ``"mini-swe-agent"``; ``None`` when there was none
    form: str | None = None

    def rewrap(self, body: str) -> str:
        return self.prefix + body + self.suffix


def unwrap(text: str) -> Wrapped:
    """Split off the outermost known agent envelope (envelopes nest, so repeat on the body)."""
    prefix, body, suffix, forms = "", text, "", []
    for _ in range(3):
        head, tail = body[:40].lstrip(), body[-120:]
        for name, quick, pattern in _FORMS:
            m = pattern.fullmatch(body) if quick(head, tail) else None
            if m and m.group("body").strip():
                prefix += m.group("pre")
                suffix = m.group("post") + suffix
                body = m.group("body")
                forms.append(name)
                break
        else:
            break
    return Wrapped(prefix, body, suffix, "+".join(forms) or None)


def overlay(line: str) -> str:
    """What a terminal shows for one line with carriage returns: later segments overwrite from column 0."""
    if "\r" not in line:
        return line
    shown = ""
    for segment in line.split("\r"):
        shown = segment + shown[len(segment) :]
    return shown


def clean(text: str) -> tuple[str, tuple[str, ...]]:
    """Remove ANSI escapes and resolve carriage returns; returns the text and the transforms that ran."""
    done: list[str] = []
    if "\x1b" in text:
        stripped = _ANSI.sub("", text)
        if stripped != text:
            text = stripped
            done.append("clean:ansi")
    if "\r" in text:
        resolved = "\n".join(overlay(line) for line in text.split("\n"))
        if resolved != text:
            text = resolved
            done.append("clean:carriage-return")
    return text, tuple(done)
