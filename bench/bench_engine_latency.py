"""Per-call cost of ``engine.compress`` on ~10K-token tool outputs, one core.

For each corpus type, outputs are concatenated (or cut) to about 10,000 o200k tokens
at a line boundary; JSON types use the corpus file nearest to 10K tokens, plus a
generated array of 200 objects (about 10K tokens pretty-printed). Each input is compressed ``--repeat`` times at level ``balanced`` with the token
count cache emptied before every call (in production every block is new), and p50 /
p99 / max in milliseconds are printed per type. Two ways, alternating call by call: as
the proxy calls it (the input counted by the caller, which needs that count for its
ledger whether or not the block is compressed, and passed as ``tokens_before``; the
result is counted by the engine), and with the engine counting the input as well.
Targets (issue 4): p50 < 5 ms, p99 < 50 ms. Reported, never asserted in tests.

    .venv/bin/python bench/bench_engine_latency.py [--corpus ../shared/corpus] [--repeat 50]

Before and after a change, interleaved so that both see the same load: ``--compare OLD_SRC``
runs ``--rounds`` alternating fresh processes of the engine in OLD_SRC (a ``src`` folder, e.g.
from ``git archive <commit> src | tar -x -C /tmp/old``) and of this checkout (or ``--src``),
``--repeat`` calls per type each, and prints the pooled p50 / p99 of both:

    .venv/bin/python bench/bench_engine_latency.py --compare /tmp/old/src --rounds 10 --repeat 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _src(argv: list[str]) -> Path:
    """The engine source tree to measure: ``--src PATH``, else this checkout's (read before the
    import below, which it decides)."""
    return Path(argv[argv.index("--src") + 1]) if "--src" in argv[:-1] else ROOT / "src"


sys.path.insert(0, str(_src(sys.argv)))

from ctxgate import engine, tokens  # noqa: E402

TARGET_TOKENS = 10_000
TOOLS = {"html": "WebFetch", "prose": "WebFetch", "source": "Read"}


def _cut(texts: list[str]) -> str:
    """Lines of ``texts`` up to about TARGET_TOKENS tokens."""
    out: list[str] = []
    n = 0
    for text in texts:
        for line in text.split("\n"):
            n += tokens.count(line + "\n").tokens
            out.append(line)
            if n >= TARGET_TOKENS:
                return "\n".join(out)
    return "\n".join(out)


def samples(corpus: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for d in sorted(p for p in (corpus / "outputs").iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.name not in ("samples.jsonl", "questions.jsonl"))
        if d.name in ("json_api", "k8s_json"):
            docs = {f: f.read_text(encoding="utf-8") for f in files}
            nearest = min(docs, key=lambda f: abs(tokens.count(docs[f]).tokens - TARGET_TOKENS))
            out[d.name] = (docs[nearest], "Bash")
        else:
            texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
            out[d.name] = (_cut(texts), TOOLS.get(d.name, "Bash"))
    items = [
        {
            "id": i,
            "name": f"item-{i}",
            "state": ("open", "closed")[i % 2],
            "score": (i * 37) % 101,
            "tags": ["a", "b"],
        }
        for i in range(200)
    ]
    out["json_generated"] = (json.dumps(items, indent=2), "Bash")
    return out


def measure(text: str, tool: str, repeat: int) -> tuple[list[float], list[float]]:
    """Milliseconds per call, two ways, alternating so that both see the same load:
    the call as the proxy makes it (the input already counted for the ledger, passed as
    ``tokens_before``; the result is counted by the engine), and the engine counting the
    input too."""
    ctx = engine.Context(tool_name=tool, level="balanced", model="gpt-4o")
    given, counting = [], []
    for _ in range(repeat):
        tokens._CACHE._data.clear()  # every block is new in production: no cached counts
        n = tokens.count(text, ctx.model).tokens  # the caller's count, not timed
        tokens._CACHE._data.clear()
        t0 = time.perf_counter()
        engine.compress(text, ctx, tokens_before=n)
        given.append((time.perf_counter() - t0) * 1000)
        tokens._CACHE._data.clear()
        t0 = time.perf_counter()
        engine.compress(text, ctx)
        counting.append((time.perf_counter() - t0) * 1000)
    return given, counting


def every_file(folder: Path, repeat: int) -> int:
    """One row per corpus file of a type: the cost depends on the document, not only its size."""
    tool = TOOLS.get(folder.name, "Bash")
    rows = []
    for f in sorted(x for x in folder.iterdir() if x.suffix != ".jsonl"):
        text = f.read_text(encoding="utf-8", errors="replace")
        given, counting = measure(text, tool, repeat)
        n = tokens.count(text, "gpt-4o").tokens
        rows.append((n, statistics.median(given), statistics.median(counting), f.name))
    print("| file | tokens in | p50 ms | p50 ms per 10K tokens | p50 ms counting the input |")
    print("|---|---|---|---|---|")
    for n, ms, ms_counting, name in sorted(rows):
        print(f"| {name} | {n} | {ms:.2f} | {ms / n * 10_000:.2f} | {ms_counting:.2f} |")
    per10k = sorted(ms / n * 10_000 for n, ms, _, _ in rows)
    under = sum(1 for n, ms, _, _ in rows if ms / n * 10_000 < 5)
    print(
        f"\nmedian over files: {statistics.median(per10k):.2f} ms per 10K tokens "
        f"(min {per10k[0]:.2f}, max {per10k[-1]:.2f}); under 5 ms per 10K tokens: {under} of {len(rows)}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--corpus",
        type=Path,
        default=Path(os.environ.get("CTXGATE_CORPUS", ROOT.parent / "shared" / "corpus")),
    )
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument(
        "--src", type=Path, help="the engine source tree to measure (default: this checkout's src)"
    )
    p.add_argument("--json", action="store_true", help="print every call's milliseconds per type as JSON")
    p.add_argument(
        "--compare", type=Path, metavar="OLD_SRC", help="interleaved before (OLD_SRC) and after runs"
    )
    p.add_argument("--rounds", type=int, default=10, help="with --compare: alternating runs of each")
    p.add_argument(
        "--every-file",
        metavar="TYPE",
        help="instead of one sample per type: every corpus file of TYPE, with its median ms per 10K tokens",
    )
    args = p.parse_args(argv)
    if args.compare:
        return compare(args)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    engine.compress("warm up " * 100, engine.Context())
    if args.every_file:
        return every_file(args.corpus / "outputs" / args.every_file, args.repeat)
    if args.json:
        print(
            json.dumps(
                {
                    name: measure(text, tool, args.repeat)
                    for name, (text, tool) in samples(args.corpus).items()
                }
            )
        )
        return 0
    print(
        "| type | tokens in | tokens out | compressor | p50 ms | p99 ms | max ms "
        "| p50 ms counting the input | p99 ms counting the input |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (text, tool) in samples(args.corpus).items():
        out = engine.compress(text, engine.Context(tool_name=tool, model="gpt-4o"))
        given, counting = (sorted(x) for x in measure(text, tool, args.repeat))
        print(
            f"| {name} | {out.tokens_before} | {out.tokens_after} | {out.content_type} | "
            f"{statistics.median(given):.2f} | {_p99(given):.2f} | {given[-1]:.2f} | "
            f"{statistics.median(counting):.2f} | {_p99(counting):.2f} |"
        )
    return 0


def compare(args: argparse.Namespace) -> int:
    """Interleaved fresh-process runs of the engine in ``args.compare`` and of this one; pooled
    p50 / p99 per type, both ways (``measure``)."""
    import subprocess

    runs = (("before", args.compare), ("after", args.src or ROOT / "src"))
    pooled: dict[str, dict[str, tuple[list[float], list[float]]]] = {"before": {}, "after": {}}
    for _ in range(args.rounds):
        for label, src in runs:
            cmd = [sys.executable, __file__, "--src", str(src), "--json"]
            cmd += ["--repeat", str(args.repeat), "--corpus", str(args.corpus)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            for name, (given, counting) in json.loads(out).items():
                g, c = pooled[label].setdefault(name, ([], []))
                g.extend(given)
                c.extend(counting)

    def cell(took: list[float]) -> str:
        return f"{statistics.median(took):.2f} / {_p99(sorted(took)):.2f}"

    print("| type | counting the input: before | after | input counted by the caller: before | after |")
    print("|---|---|---|---|---|")
    for name, (given, counting) in pooled["after"].items():
        old_given, old_counting = pooled["before"][name]
        print(f"| {name} | {cell(old_counting)} | {cell(counting)} | {cell(old_given)} | {cell(given)} |")
    return 0


def _p99(took: list[float]) -> float:
    return took[min(len(took) - 1, round(0.99 * (len(took) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
