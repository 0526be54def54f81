from __future__ import annotations

import json

from ctxgate.engine import Context, compress
from ctxgate.engine.wrappers import clean, overlay, unwrap


def test_mini_swe_agent_envelope_round_trips() -> None:
    text = "<returncode>0</returncode>\n<output>\nhello\nworld\n</output>"
    w = unwrap(text)
    assert w.form == "mini-swe-agent"
    assert w.body == "hello\nworld\n"
    assert w.rewrap(w.body) == text


def test_swe_agent_and_exit_code_forms() -> None:
    w = unwrap("line 1\nline 2\n///PROCESS-DONE:0:PROCESS-DONE///")
    assert (w.form, w.body) == ("swe-agent", "line 1\nline 2")
    w = unwrap("Exit code 2\nerror: boom\n")
    assert (w.form, w.body, w.rewrap("X")) == ("exit-code", "error: boom\n", "Exit code 2\nX")


def test_no_envelope_is_identity() -> None:
    w = unwrap("plain text")
    assert (w.prefix, w.body, w.suffix, w.form) == ("", "plain text", "", None)


def test_empty_envelope_is_left_alone() -> None:
    assert unwrap("<returncode>0</returncode>\n<output>\n</output>").form is None


def test_ansi_and_carriage_returns() -> None:
    text, done = clean("\x1b[31mred\x1b[0m\n10%\r50%\r100%\nok\r\n")
    assert text == "red\n100%\nok\n"
    assert done == ("clean:ansi", "clean:carriage-return")
    assert overlay("abcdef\rXY") == "XYcdef"
    assert clean("plain") == ("plain", ())


def test_dispatcher_puts_the_envelope_back() -> None:
    doc = json.dumps([{"id": i, "name": f"n{i}", "ok": True} for i in range(40)], indent=2)
    text = f"<returncode>0</returncode>\n<output>\n{doc}\n</output>"
    out = compress(text, Context(level="lossless"))
    assert out.changed and out.wrapper == "mini-swe-agent"
    assert out.text.startswith("<returncode>0</returncode>\n<output>\n") and out.text.endswith("</output>")
    assert out.transforms[0] == "unwrap:mini-swe-agent"
