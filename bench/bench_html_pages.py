"""HTML extraction on any set of pages: ratio, time, and what another extractor found that ctxgate dropped.

    .venv/bin/python bench/bench_html_pages.py PAGE.html ... [--list FILE] [--trafilatura PYTHON]

The corpus's questions ask about titles, first and last paragraphs; this bench looks at the
whole text on pages the engine was not tuned on (for example the HTML documentation a machine
already has: ``/usr/share/doc/**/*.html``, a Rust toolchain's ``share/doc/rust/html``). Each
page goes through ``engine.compress`` as a WebFetch result at level ``balanced``.

With ``--trafilatura PYTHON`` (the interpreter of a separate virtual environment with
``trafilatura`` installed; ctxgate does not depend on it) every page is also extracted by
trafilatura (markdown, links, formatting, tables, recall-oriented), and the share of its
sentences longer than 50 characters that ctxgate's output holds (case, punctuation, markdown
marks and link targets aside) is reported, with the pages where the most are missing.
``--rules-only`` measures resiliparse's main-content rules alone (no runs put back, no lone
characters kept), the baseline the restoring in ``engine/html.py`` is judged against.

``--pathological`` times generated pages instead: deep nesting, many links, long lists, one
huge line, one line repeated thousands of times between dropped lists.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ctxgate import engine, tokens  # noqa: E402
from ctxgate.engine import html as html_engine  # noqa: E402

MODEL = "gpt-4o"
_TRAFILATURA = """
import json, sys, trafilatura
out = {}
for path in json.load(sys.stdin):
    page = open(path, encoding="utf-8", errors="replace").read()
    out[path] = trafilatura.extract(page, output_format="markdown", include_links=True,
        include_formatting=True, include_tables=True, include_comments=False, favor_recall=True,
        deduplicate=False, fast=True) or ""
json.dump(out, sys.stdout)
"""
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MARKS = re.compile(r"</?sup>|[*`\\|#]")
_NOT_WORD = re.compile(r"[\W_]+")


def _plain(text: str) -> str:
    return _MARKS.sub("", _LINK.sub(r"\1", text))


def _norm(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n", _plain(text)) if len(s) > 50]


def pathological() -> None:
    """Seconds per generated page through the HTML compressor (one call each)."""
    body = "<!DOCTYPE html><html><body>{}</body></html>".format
    pages = {
        "20,000 nested <div>s": body("<div>" * 20000 + "<p>deep text paragraph</p>" + "</div>" * 20000),
        "200,000 links": body("<main><p>intro</p>" + "".join(f"<a href='/p{i}'>link {i}</a> " for i in range(200000))),
        "100,000 list items": body(
            "<main><h1>x</h1><ul>" + "".join(f"<li>item {i} <a href='/{i}'>l</a></li>" for i in range(100000))
        ),
        "one 5 MB line": body("<p>" + "word " * 1000000 + "</p>"),
        "one line 20,000 times, lists between": body(
            "<main><h1>T</h1>" + "<p>-</p><ul><li><a href='x'>y</a> more words here</li></ul>" * 20000
        ),
    }
    compressor = html_engine.HtmlCompressor()
    ctx = engine.Context(level="balanced")
    print("| page | size KB | seconds | transform |\n|---|---|---|---|")
    for name, page in pages.items():
        t0 = time.perf_counter()
        result = compressor.compress(page, ctx)
        print(f"| {name} | {len(page) // 1000} | {time.perf_counter() - t0:.3f} | {', '.join(result.transforms)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pages", nargs="*", type=Path)
    ap.add_argument("--list", type=Path, help="a file with one page path per line")
    ap.add_argument("--trafilatura", help="python of a venv with trafilatura, to compare with")
    ap.add_argument("--repeat", type=int, default=3, help="calls per page (median time)")
    ap.add_argument("--worst", type=int, default=8, help="pages listed with the most missing")
    ap.add_argument("--rules-only", action="store_true", help="resiliparse's main-content rules alone")
    ap.add_argument("--pathological", action="store_true", help="time generated worst-case pages")
    args = ap.parse_args()
    if args.pathological:
        pathological()
        return
    if args.rules_only:
        html_engine._restore_dropped = lambda main, visible: main  # type: ignore[assignment]
        html_engine._keep_lone_characters = lambda page: page  # type: ignore[assignment]
    pages = list(args.pages)
    if args.list:
        pages += [Path(p) for p in args.list.read_text().split("\n") if p.strip()]
    if not pages:
        ap.error("no pages")
    ctx = engine.Context(tool_name="WebFetch", level="balanced", model=MODEL)
    engine.compress("<!DOCTYPE html><html><body><p>warm up</p></body></html>", ctx)
    rows = []
    for path in pages:
        page = path.read_text(encoding="utf-8", errors="replace")
        n = tokens.count(page, MODEL).tokens
        times = []
        for _ in range(args.repeat):
            tokens._CACHE._data.clear()
            t0 = time.perf_counter()
            out = engine.compress(page, ctx, tokens_before=n)
            times.append((time.perf_counter() - t0) * 1000)
        rows.append((path, n, out.tokens_after, statistics.median(times), out.text, out.transforms))
    before, after = sum(r[1] for r in rows), sum(r[2] for r in rows)
    per10k = [r[3] * 10000 / max(r[1], 1) for r in rows]
    print(
        f"{len(rows)} pages, {before:,} tokens -> {after:,} (ratio {after / before:.3f}); "
        f"p50 ms per 10K tokens {statistics.median(per10k):.2f} (max {max(per10k):.2f}), "
        f"input counted by the caller"
    )
    if not args.trafilatura:
        return
    theirs = json.loads(
        subprocess.run(
            [args.trafilatura, "-c", _TRAFILATURA],
            input=json.dumps([str(r[0]) for r in rows]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    total = found = 0
    misses = []
    for path, _, _, _, text, _ in rows:
        ours = _norm(_plain(text))
        wanted = sentences(theirs[str(path)])
        missing = [s for s in wanted if _norm(s) not in ours]
        total += len(wanted)
        found += len(wanted) - len(missing)
        misses.append((len(missing), len(wanted), path, missing[:2]))
    print(
        f"trafilatura's sentences over 50 characters found in ctxgate's output: {found / max(total, 1):.2%} "
        f"of {total}"
    )
    for n_missing, n_wanted, path, examples in sorted(misses, key=lambda m: -m[0])[: args.worst]:
        if n_missing:
            print(f"  {path}: {n_missing} of {n_wanted} missing, e.g. {[e[:70] for e in examples]}")


if __name__ == "__main__":
    main()
