from __future__ import annotations

import json

from ctxgate.engine import Context, compress
from ctxgate.engine.sections import SectionsCompressor, split

BODY = json.dumps({"items": [{"id": i, "name": f"item {i}", "state": "open"} for i in range(40)]}, indent=2)
HTTP = "HTTP/1.1 200 OK\nContent-Type: application/json\nX-Request-Id: abc\n\n" + BODY + "\n"


def test_split_finds_embedded_json_and_fences() -> None:
    parts = split(HTTP)
    assert [p.kind for p in parts] == ["text", "json", "text"]
    assert "".join(HTTP[p.start : p.end] for p in parts) == HTTP
    md = "Intro text.\n\n```python\nprint(1)\n```\n\nOutro.\n"
    kinds = [p.kind for p in split(md)]
    assert kinds == ["text", "fenced", "text"]


def test_score() -> None:
    s = SectionsCompressor()
    assert s.score(HTTP, Context()) == 0.65
    assert s.score("no structure here at all", Context()) < 0
    assert s.score(BODY, Context()) < 0  # pure JSON is the JSON compressor's


def test_each_section_compressed_and_headers_kept() -> None:
    out = compress(HTTP, Context(level="lossless"))
    assert out.content_type == "sections" and out.changed
    assert out.text.startswith("HTTP/1.1 200 OK\nContent-Type: application/json\nX-Request-Id: abc\n\n")
    assert "json:minify" in out.transforms and not out.originals


def test_fenced_source_stays() -> None:
    code = "\n".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(40))
    text = f"Here is the file:\n\n```python\n{code}```\n\nand the data:\n\n{BODY}\n"
    out = compress(text, Context())
    assert code in out.text


def test_json_starts_are_the_lines_that_open_a_bracket() -> None:
    import re

    from ctxgate.engine.sections import _json_starts

    for text in ("[1]\n  {x\nno [\n\t[\n", "  {\n", "", "\n{", "a\n\n[", "x [\n", "a\n \r[\n [ {"):
        expected = [(m.start(), m.end() - 1) for m in re.finditer(r"^[ \t]*[\[{]", text, re.M)]
        assert list(_json_starts(text)) == expected


def test_json_starts_from_few_brackets_or_the_line_regex(corpus) -> None:
    """A text with few brackets has its bracket lines found from its brackets, one with many by
    the line regex: the same lines either way, on the corpus and on generated text."""
    import random
    import re

    from ctxgate.engine import sections

    def expected(text: str) -> list[tuple[int, int]]:
        return [(m.start(), m.end() - 1) for m in re.finditer(r"^[ \t]*[\[{]", text, re.M)]

    rnd = random.Random(5)
    texts = ["".join(rnd.choice("[{ \t\nab\r") for _ in range(rnd.randint(0, 300))) for _ in range(400)]
    texts += [f.read_text(errors="replace") for f in sorted((corpus / "outputs").glob("*/*")) if f.suffix != ".jsonl"]
    few = many = 0
    for text in texts:
        assert list(sections._json_starts(text)) == expected(text)
        if sections._brackets(text) is None:
            many += 1
        else:
            few += 1
    assert few > 50 and many > 50  # both ways were taken


def _regex_fences(text: str) -> list[tuple[int, int]]:
    from ctxgate.engine.sections import _FENCE

    return [(m.start("body"), m.end("body")) for m in _FENCE.finditer(text)]


def test_fenced_bodies_are_the_fence_regex_matches(corpus) -> None:
    """The linear fence scan finds what the (quadratic on rst underlines) regex finds."""
    import random

    from ctxgate.engine.sections import fenced_bodies

    cases = [
        "```py\nx = 1\n```\ntext\n~~~\nraw\n~~~ \n",
        "Title\n~~~~~~~~\n\nbody\n\nOther\n~~~~~\n",  # rst underlines: openers without a closer
        "```\n```",  # empty body
        "````\nfour\n```\n",
        "x\n```\nno closer",
        "```no newline",
        "~~~\n```\n~~~\n```\n",
    ]
    rnd = random.Random(7)
    pieces = ["```", "~~~", "````", "```py", "~~~~~~", " ", "\t", "\n", "x", "\n```\n", "\n~~~ \n", "`", "~~"]
    cases += ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 30))) for _ in range(3000)]
    cases += [f.read_text(errors="replace") for f in sorted((corpus / "outputs").rglob("*")) if f.is_file()]
    for text in cases:
        assert list(fenced_bodies(text)) == _regex_fences(text), text[:80]
