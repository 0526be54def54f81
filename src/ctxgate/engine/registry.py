"""The one dispatcher: pick the compressor with the highest score, fail open.

``compress(text, ctx)`` never raises and never grows the text (in tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from ctxgate import tokens
from ctxgate.engine._api import Compressor, Context, Original

#: Compressors in tie-break order. Filled in by the content-type modules.
COMPRESSORS: tuple[Compressor, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    text: str
    content_type: str
    tokens_before: int
    tokens_after: int
    transforms: tuple[str, ...]
    originals: tuple[Original, ...]
    #: reasons the content was left as it was, e.g. ("json: parse failed",)
    skipped: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.tokens_after < self.tokens_before


def _unchanged(text: str, kind: str, n: int, reason: str) -> Outcome:
    return Outcome(text, kind, n, n, (), (), (reason,))


def detect(text: str, ctx: Context, compressors: tuple[Compressor, ...] | None = None) -> Compressor | None:
    """The compressor with the highest positive score, or None."""
    best: Compressor | None = None
    best_score = 0.0
    for c in COMPRESSORS if compressors is None else compressors:
        s = c.score(text, ctx)
        if s > best_score:
            best, best_score = c, s
    return best


def compress(text: str, ctx: Context) -> Outcome:
    """Compress one piece of tool output. Never raises; never returns more tokens."""
    before = tokens.count(text, ctx.model).tokens
    if ctx.level == "off":
        return _unchanged(text, "unknown", before, "level: off")
    if before < ctx.min_tokens:
        return _unchanged(text, "unknown", before, "below min_tokens")
    compressor = detect(text, ctx)
    if compressor is None:
        return _unchanged(text, "unknown", before, "no compressor")
    try:
        result = compressor.compress(text, ctx)
    except (ValueError, RecursionError, UnicodeError) as exc:
        return _unchanged(text, compressor.name, before, f"{compressor.name}: {exc}")
    after = tokens.count(result.text, ctx.model).tokens
    if after >= before:
        return _unchanged(text, compressor.name, before, f"{compressor.name}: no gain")
    return Outcome(
        result.text, compressor.name, before, after, result.transforms, result.originals, result.skipped
    )
