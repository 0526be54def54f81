"""Compress the shared corpus with ctxgate and score it with the corpus's own score.py.

Every output file of ``<corpus>/outputs/<type>/`` and every trajectory tool message is
compressed as the newest tool result of a request whose tool fits the type (a shell
command for logs, diffs, test runs, grep and JSON fetched with curl; a web fetch for
HTML and prose; a file read for source). The results are written as a mirror in the
layout ``score.py`` reads (``<mirror>/outputs/<type>/<file>`` and
``<mirror>/tool_outputs/<key>.txt``), ``score.py score`` runs on it, and a per-type table
of o200k token ratio, question recall (loose) and needle recall is printed next to the
targets of issue 4.

Two ways to compress:

* ``--via api``: ``ctxgate.compress(messages, model=...)`` on an OpenAI Chat request
  (user request, assistant tool call, tool result), the way a library user calls it;
* ``--via engine``: ``ctxgate.engine.compress(text, Context(tool_name, tool_args))``.

``--via auto`` (the default) uses the API when it compresses (it reports something other
than ``not_implemented``) and the engine otherwise, and says which it used.

With ``--headroom PYTHON`` (the interpreter of a venv with ``headroom-ai``) the same inputs
also go through headroom's ``compress`` and get their own column.

    .venv/bin/python bench/bench_corpus.py [--corpus ../shared/corpus] [--level balanced]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import ctxgate  # noqa: E402
from ctxgate import engine  # noqa: E402

MODEL = "gpt-4o"

#: type -> (tool name, default command or None for non-shell tools)
TOOLS: dict[str, tuple[str, str | None]] = {
    "diff": ("Bash", "git show --stat --patch"),
    "grep": ("Bash", "rg -n -C 3 PATTERN"),
    "html": ("WebFetch", None),
    "json_api": ("Bash", "curl -s https://api.github.com/"),
    "k8s_json": ("Bash", "kubectl get pod -o json"),
    "logs": ("Bash", "docker logs --tail 2000 app"),
    "prose": ("WebFetch", None),
    "source": ("Read", None),
    "test_output": ("Bash", "python -m pytest"),
}

#: issue 4 targets at level balanced: type -> (ratio at most, question recall at least)
TARGETS: dict[str, tuple[float, float]] = {
    "diff": (0.90, 0.98),
    "grep": (0.75, 0.98),
    "html": (0.30, 0.98),
    "json_api": (0.55, 0.98),
    "k8s_json": (0.45, 0.98),
    "logs": (0.45, 0.98),
    "prose": (0.92, 0.98),
    "source": (1.00, 1.00),
    "test_output": (0.60, 0.98),
}
NEEDLE_TARGET = 0.98


@dataclass(frozen=True)
class Item:
    """One tool output to compress, and where its result goes in the mirror."""

    dest: str  # path relative to the mirror
    text: str
    tool: str
    args: str
    query: str | None


def _command(sample: dict[str, Any], default: str | None) -> str | None:
    how = sample.get("how") or ""
    m = re.search(r"`([^`]+)`", how)
    if m:
        return m.group(1)
    if sample.get("request"):
        return f"curl -s https://api.github.com{sample['request'].split(' ', 1)[-1]}"
    return default


def output_items(corpus: Path, types: list[str]) -> Iterator[Item]:
    for t in types:
        tool, default = TOOLS.get(t, ("Bash", "cat output.txt"))
        samples = [json.loads(ln) for ln in (corpus / "outputs" / t / "samples.jsonl").open() if ln.strip()]
        for s in samples:
            text = (corpus / "outputs" / t / s["file"]).read_text(encoding="utf-8", errors="replace")
            if tool == "Bash":
                args = {"command": _command(s, default)}
            elif tool == "WebFetch":
                args = {"url": s.get("source_repo") or "https://example.com/", "prompt": "Read this page"}
            else:
                args = {"file_path": "/repo/" + (s.get("source_path") or s["file"])}
            yield Item(f"outputs/{t}/{s['file']}", text, tool, json.dumps(args), None)


def _tool_key(conv_id: str, idx: int) -> str:
    return f"{conv_id.replace('/', '__')}__m{idx:04d}"


def trajectory_items(corpus: Path) -> Iterator[Item]:
    for path in sorted((corpus / "trajectories").glob("*.jsonl")):
        if path.name == "needles.jsonl":
            continue
        for line in path.open(encoding="utf-8"):
            conv = json.loads(line)
            calls: dict[str, tuple[str, str]] = {}
            query: str | None = None
            for i, m in enumerate(conv["messages"]):
                if m["role"] == "user" and isinstance(m.get("content"), str):
                    query = m["content"]
                for tc in m.get("tool_calls") or []:
                    fn = tc.get("function") or {}
                    calls[tc.get("id", "")] = (fn.get("name", ""), fn.get("arguments", "") or "")
                if m["role"] == "tool":
                    name, args = calls.get(m.get("tool_call_id", ""), (m.get("name") or "", ""))
                    content = m.get("content") or ""
                    if not isinstance(content, str):
                        content = json.dumps(content)
                    yield Item(
                        f"tool_outputs/{_tool_key(conv['id'], i)}.txt", content, name or "tool", args, query
                    )


#: the user request of a corpus output, which has none of its own (both paths see the same text)
DEFAULT_REQUEST = "Help me with this task."


def _messages(item: Item) -> list[dict[str, Any]]:
    call = {"id": "call_1", "type": "function", "function": {"name": item.tool, "arguments": item.args}}
    return [
        {"role": "user", "content": item.query or DEFAULT_REQUEST},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": item.text},
    ]


def api_works() -> bool:
    """Whether ``ctxgate.compress`` compresses (the library API may still be a passthrough)."""
    probe = Item(
        "",
        json.dumps([{"id": i, "name": f"item {i}", "ok": True} for i in range(300)], indent=2),
        "Bash",
        json.dumps({"command": "curl -s localhost/items"}),
        None,
    )
    ctxgate.compress(_messages(probe), model=MODEL, level="balanced", settings=api_settings())  # warm-up
    res = ctxgate.compress(_messages(probe), model=MODEL, level="balanced", settings=api_settings())
    return res.skip_reason != "not_implemented" and res.tokens_after < res.tokens_before


SKIPS: Counter[str] = Counter()
_SETTINGS: list[Any] = []


def api_settings() -> Any:
    """Settings for the library API: in-memory stores, so that no decision of an earlier run
    (compress-once) is replayed and nothing is written to ./data; every other setting default."""
    if not _SETTINGS:
        from ctxgate.settings import load_settings

        data = Path(tempfile.mkdtemp(prefix="ctxgate-bench-data-"))
        _SETTINGS.append(load_settings(decision_store="memory", ledger_store="memory", data_dir=data))
    return _SETTINGS[0]


def compress_item(item: Item, via: str, level: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    if via == "api":
        res = ctxgate.compress(_messages(item), model=MODEL, level=level, settings=api_settings())
        content = res.messages[-1].get("content")
        out = content if isinstance(content, str) else item.text
        if res.skip_reason:
            SKIPS[res.skip_reason] += 1
    else:
        ctx = engine.Context(
            tool_name=item.tool,
            tool_args=item.args,
            query=item.query or DEFAULT_REQUEST,
            level=level,  # type: ignore[arg-type]
            model=MODEL,
        )
        out = engine.compress(item.text, ctx).text
    return out, time.perf_counter() - t0


def write_mirror(items: list[Item], mirror: Path, via: str, level: str) -> tuple[float, float]:
    total = worst = 0.0
    for item in items:
        out, took = compress_item(item, via, level)
        total += took
        worst = max(worst, took)
        dest = mirror / item.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("w", encoding="utf-8", errors="surrogatepass", newline="") as f:
            f.write(out)
    return total, worst


_HEADROOM_SCRIPT = r"""
import json, sys, pathlib
from headroom import compress
spec = json.load(open(sys.argv[1]))
for it in spec:
    msgs = [
        {"role": "user", "content": it["query"] or "Help me with this task."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": it["tool"], "arguments": it["args"]}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": it["text"]},
    ]
    try:
        res = compress(msgs, model="gpt-4o")
        out = res.messages[-1]["content"]
        if not isinstance(out, str):
            out = it["text"]
    except Exception as exc:  # a failure counts as passthrough
        out = it["text"]
    dest = pathlib.Path(sys.argv[2]) / it["dest"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(out, encoding="utf-8", errors="surrogatepass")
"""


def write_headroom_mirror(python: str, items: list[Item], mirror: Path) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps([it.__dict__ for it in items]), encoding="utf-8")
        script = Path(tmp) / "run.py"
        script.write_text(_HEADROOM_SCRIPT)
        proc = subprocess.run([python, str(script), str(spec), str(mirror)], capture_output=True, text=True)
        if proc.returncode != 0:
            return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    return None


def score(corpus: Path, mirror: Path, types: list[str]) -> dict[str, Any]:
    report = mirror / "report.json"
    cmd = [
        sys.executable,
        str(corpus / "score.py"),
        "score",
        "--compressed",
        str(mirror),
        "--json",
        str(report),
    ]
    cmd += ["--types", ",".join(types)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _get(row: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    return None


def table(ours: dict[str, Any], theirs: dict[str, Any] | None, types: list[str]) -> str:
    head = "| type | n | tokens before | tokens after | ratio | q recall | needle all / novel | target |"
    sep = "|---|---|---|---|---|---|---|---|"
    if theirs is not None:
        head += " headroom ratio / recall |"
        sep += "---|"
    lines = [head, sep]
    for t in types:
        row = ours.get(t) or {}
        ratio = _get(row, "ratio_o200k", "ratio")
        if t == "trajectories":
            target = f"needle >= {NEEDLE_TARGET:.2f}"
        else:
            tr, tq = TARGETS.get(t, (1.0, 0.98))
            target = f"<= {tr:.2f} / >= {tq:.2f}"
        needle = "-"
        if t == "trajectories":
            needle = f"{_pct(_get(row, 'needle_recall_all'))} / {_pct(_get(row, 'needle_recall_novel'))}"
        cells = [
            t,
            str(_get(row, "samples", "n") or "-"),
            str(_get(row, "tokens_before_o200k", "tokens_before_chars4") or "-"),
            str(_get(row, "tokens_after_o200k", "tokens_after_chars4") or "-"),
            "-" if ratio is None else f"{ratio:.3f}",
            _pct(_get(row, "qa_recall_loose", "qa_loose")),
            needle,
            target,
        ]
        if theirs is not None:
            hr = theirs.get(t) or {}
            hratio = _get(hr, "ratio_o200k", "ratio")
            recall = _get(hr, "needle_recall_all") if t == "trajectories" else _get(hr, "qa_recall_loose")
            cells.append(f"{'-' if hratio is None else f'{hratio:.3f}'} / {_pct(recall)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--corpus",
        type=Path,
        default=Path(os.environ.get("CTXGATE_CORPUS", ROOT.parent / "shared" / "corpus")),
    )
    p.add_argument("--level", default="balanced", choices=["off", "lossless", "balanced"])
    p.add_argument("--via", default="auto", choices=["auto", "api", "engine"])
    p.add_argument(
        "--types", default="", help="comma list of output types and/or 'trajectories'; default all"
    )
    p.add_argument("--out", type=Path, default=None, help="mirror directory (default: a temporary one)")
    p.add_argument(
        "--headroom", default=None, help="python of a venv with headroom-ai, for a comparison column"
    )
    p.add_argument("--json", type=Path, default=None, help="also write both score reports here")
    args = p.parse_args(argv)

    corpus: Path = args.corpus.resolve()
    all_types = sorted(d.name for d in (corpus / "outputs").iterdir() if (d / "samples.jsonl").is_file())
    wanted = [t for t in args.types.split(",") if t] or [*all_types, "trajectories"]
    out_types = [t for t in wanted if t in all_types]
    via = args.via
    if via == "auto":
        via = "api" if api_works() else "engine"
    print(f"compressing via {via} at level {args.level} (model {MODEL}, tokens o200k)")

    items = list(output_items(corpus, out_types))
    if "trajectories" in wanted:
        items += list(trajectory_items(corpus))
    mirror = args.out or Path(tempfile.mkdtemp(prefix="ctxgate-corpus-"))
    mirror.mkdir(parents=True, exist_ok=True)
    total, worst = write_mirror(items, mirror, via, args.level)
    print(f"{len(items)} outputs in {total:.1f} s (slowest {1000 * worst:.0f} ms); mirror: {mirror}")
    if SKIPS:
        print("library API skip reasons: " + ", ".join(f"{k} {v}" for k, v in SKIPS.most_common()))
    ours = score(corpus, mirror, wanted)

    theirs = None
    if args.headroom:
        hmirror = Path(tempfile.mkdtemp(prefix="headroom-corpus-"))
        err = write_headroom_mirror(args.headroom, items, hmirror)
        if err:
            print(f"headroom failed: {err}")
        else:
            theirs = score(corpus, hmirror, wanted)
    print(table(ours, theirs, wanted))
    if args.json:
        args.json.write_text(json.dumps({"ctxgate": ours, "headroom": theirs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
