from __future__ import annotations

from ctxgate.engine import Context, compress
from ctxgate.engine.code import CodeCompressor

SOURCE = "\n".join(
    [
        "import os",
        "",
        "",
        "class Thing:",
        "    def run(self, x):",
        "        if x:",
        "            return 1",
        "        return 2",
    ]
    * 30
)


def test_file_reads_are_claimed_and_untouched() -> None:
    c = CodeCompressor()
    assert c.score('{"a": 1}', Context(tool_name="Read")) > 0.95
    out = compress(SOURCE + "   \n", Context(tool_name="Read"))
    assert out.text == SOURCE + "   \n" and not out.changed
    assert out.skipped == ("code: left untouched",)


def test_code_shape_without_tool_name() -> None:
    c = CodeCompressor()
    assert 0 < c.score(SOURCE, Context()) <= 0.6
    assert c.score("just some words\nand more words here\nthe end", Context()) < 0


def test_numbered_views() -> None:
    c = CodeCompressor()
    numbered = "\n".join(f"{i:6d}\tx = {i}" for i in range(1, 40))
    assert c.score(numbered, Context(tool_name="bash")) == 0.9
    claude = "\n".join(f"{i:6d}→x = {i}" for i in range(1, 40))
    assert c.score(claude, Context()) == 0.9
    assert c.score("[File: /a.py (3 lines total)]\n1:a\n2:b\n3:c", Context()) == 0.9
