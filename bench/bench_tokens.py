"""Token counting throughput: cold (first sight) and warm (cached by content hash).

    .venv/bin/python bench/bench_tokens.py [--corpus ../shared/corpus]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ctxgate import tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    args = ap.parse_args()
    texts = [p.read_text(errors="replace") for p in sorted((args.corpus / "outputs").rglob("*.*"))
             if p.suffix != ".jsonl"]
    chars = sum(len(t) for t in texts)
    tokens.load_encoding("o200k_base")
    for model in ("gpt-4o", "claude-sonnet-4-5"):
        t0 = time.perf_counter()
        n = sum(tokens.count(t, model).tokens for t in texts)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        sum(tokens.count(t, model).tokens for t in texts)
        warm = time.perf_counter() - t0
        print(f"{model:20s} {len(texts)} texts {chars/1e6:.1f} MB {n} tokens | cold {n/cold/1e6:.2f} Mtok/s "
              f"({chars/cold/1e6:.1f} MB/s) | warm (cached) {n/warm/1e6:.1f} Mtok/s | warm/cold time {warm/cold:.3f}")


if __name__ == "__main__":
    main()
