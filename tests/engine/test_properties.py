"""Guarantees of the whole dispatcher, over every registered compressor.

Never raises, never grows (in tokens), unchanged means byte-identical, and the same
input gives the same output in another process under another ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxgate.engine import Context, compress
from ctxgate.engine.registry import COMPRESSORS

LEVELS = ("off", "lossless", "balanced")
TOOLS = (None, "Bash", "Read", "WebFetch", "Grep", "kubectl")
ROOT = Path(__file__).resolve().parents[2]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner, max_size=8),
    max_leaves=60,
)

record_arrays = st.lists(
    st.fixed_dictionaries(
        {"id": st.integers(0, 10**6), "name": st.text(max_size=12), "ok": st.booleans()},
        optional={"error": st.text(max_size=20), "n": st.floats(allow_nan=False, allow_infinity=False)},
    ),
    min_size=0,
    max_size=60,
)

lone_surrogates = st.lists(
    st.sampled_from(["a", " ", "\n", "{", "}", "\ud800", "\udfff", "\x1b[31m", "\r", ":", "\t", "word"]),
    max_size=300,
).map("".join)
binaryish = st.binary(max_size=600).map(lambda b: b.decode("utf-8", "surrogateescape"))
linesish = st.lists(
    st.sampled_from(
        [
            "ERROR boom at /a/b.py:12",
            "INFO request 200 in 12ms",
            "src/x.py:10:def f():",
            "@@ -1,3 +1,4 @@",
            "+added",
            "-removed",
            "NAME   READY   STATUS",
            "web-1   1/1   Running",
            "a,b,c",
            "key: value",
            "  - item",
            "```",
            "<div>html</div>",
            "# Heading",
            "",
        ]
    ),
    max_size=80,
).map("\n".join)


def _inputs() -> st.SearchStrategy[str]:
    pretty = json_values.map(lambda v: json.dumps(v, indent=2))
    records = record_arrays.map(lambda v: json.dumps(v, indent=1))
    truncated = st.tuples(records, st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])])
    ndjson = record_arrays.map(lambda v: "\n".join(json.dumps(x) for x in v))
    return st.one_of(st.text(), pretty, records, truncated, ndjson, lone_surrogates, binaryish, linesish)


def check(text: str, ctx: Context) -> None:
    out = compress(text, ctx)
    assert out.tokens_after <= out.tokens_before
    if not out.changed:
        assert out.text == text
    if ctx.level == "off":
        assert out.text == text
    if ctx.level != "balanced":
        assert not out.originals
    for o in out.originals:
        assert o.key in out.text or any(o.key in p.text for p in out.originals)
    assert compress(text, ctx) == out  # deterministic within the process


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_inputs(), st.sampled_from(LEVELS), st.sampled_from(TOOLS))
def test_never_raises_never_grows(text: str, level: str, tool: str | None) -> None:
    check(text, Context(tool_name=tool, level=level, query="why does web-1 fail?"))  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(record_arrays.filter(lambda v: len(v) > 15))
def test_wrapped_json_keeps_its_envelope(items: list[dict[str, object]]) -> None:
    body = json.dumps(items, indent=2)
    text = f"<returncode>0</returncode>\n<output>\n{body}\n</output>"
    out = compress(text, Context(tool_name="bash"))
    assert out.text.startswith("<returncode>0</returncode>\n<output>\n")
    assert out.text.endswith("</output>")


def test_huge_single_line_and_deep_nesting() -> None:
    for text in (
        "x" * 300_000,
        "[" * 5000 + "]" * 5000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        "\x00\x01\x02" * 5000,
    ):
        for level in LEVELS:
            check(text, Context(level=level))  # type: ignore[arg-type]


def test_every_compressor_has_a_name_and_scores_garbage_safely() -> None:
    names = [c.name for c in COMPRESSORS]
    assert len(names) == len(set(names))
    for c in COMPRESSORS:
        c.score("\ud800\x00 garbage \udfff", Context())


_SCRIPT = r"""
import hashlib, json, sys
from ctxgate.engine import Context, compress
h = hashlib.sha256()
for text, tool in json.load(sys.stdin):
    out = compress(text, Context(tool_name=tool, query="why does item 7 fail"))
    h.update(out.text.encode("utf-8", "surrogatepass"))
    h.update(repr((out.transforms, out.skipped, [o.key for o in out.originals])).encode())
print(h.hexdigest())
"""


def _deterministic_inputs(corpus: Path | None) -> list[tuple[str, str]]:
    items = [
        {"id": i, "kind": ("a", "b", "c")[i % 3], "msg": "error" if i == 7 else "ok"} for i in range(300)
    ]
    table = "NAME   STATUS   RESTARTS\n" + "\n".join(
        f"web-{i}   {'Error' if i == 9 else 'Running'}   {i % 4}" for i in range(200)
    )
    out = [
        (json.dumps(items, indent=2), "Bash"),
        (table, "Bash"),
        ("\n".join(f"{k}: {v}" for k, v in enumerate(items)), "Bash"),
    ]
    if corpus is not None:
        for t in sorted((corpus / "outputs").iterdir()):
            files = sorted(f for f in t.iterdir() if f.name not in ("samples.jsonl", "questions.jsonl"))
            for f in files[:3]:
                out.append((f.read_text(encoding="utf-8", errors="replace"), "Bash"))
    return out


def test_same_output_across_processes_and_hash_seeds(request) -> None:
    from tests.conftest import corpus_dir

    payload = json.dumps(_deterministic_inputs(corpus_dir()))
    digests = set()
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            input=payload,
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        digests.add(proc.stdout.strip())
    assert len(digests) == 1, digests
    assert len(next(iter(digests))) == len(hashlib.sha256().hexdigest())
