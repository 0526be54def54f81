"""The contract between the dispatcher and each content-type compressor.

A compressor is a small object with a ``name``, a ``score(text, ctx)`` that says
how sure it is that the text is its kind (below 0: not mine), and a
``compress(text, ctx)`` that returns a shorter text. Compressors are pure: no
I/O, no clock, no randomness, no global mutable state. They may raise
``ValueError`` when the input is not what they expected; the dispatcher in
``engine/registry.py`` catches that and passes the original through. Optional
attributes the dispatcher reads: ``min_tokens`` (below it nothing happens),
``verbatim`` (never changed) and ``max_score`` (the most ``score`` ever returns: once a
better score is found the compressor is not asked; a test checks it on the corpus) or
``max_score_for(ctx)`` where it depends on the context (source code scores 0.97 only for a
file read), and
``prepare(text, ctx) -> (score, state)`` with ``compress_prepared(text, ctx, state)``: a
scorer that parses the whole text (JSON) hands its parse to the compressor that way, when
it wins, instead of parsing twice (``state`` None: ``compress`` is called as usual).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, Protocol

Level = Literal["off", "lossless", "balanced"]


@dataclass(frozen=True, slots=True)
class Context:
    """What a compressor may know besides the text itself."""

    tool_name: str | None = None
    #: the tool call's arguments as sent by the model (usually a JSON string)
    tool_args: str | None = None
    #: the latest user request text, for query-relevant selection
    query: str | None = None
    level: Level = "balanced"
    #: model name, for token counting
    model: str = "default"
    #: minimum size in tokens below which nothing happens, whatever the type
    min_tokens: int = 0
    #: per-type minimum sizes in tokens, ``(("json", 40), ("logs", 120))``; a type not named here
    #: uses its compressor's own ``min_tokens`` attribute (0 when it has none)
    min_tokens_by_type: tuple[tuple[str, int], ...] = ()

    def min_tokens_for(self, kind: str, default: int = 0) -> int:
        """The minimum size for content of type ``kind``: the larger of the global and the per-type one."""
        for name, n in self.min_tokens_by_type:
            if name == kind:
                return max(self.min_tokens, n)
        return max(self.min_tokens, default)


@dataclass(frozen=True, slots=True)
class Original:
    """Content a lossy transform dropped, retrievable by ``key``."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class Result:
    """What one compressor returns for one piece of content."""

    text: str
    #: names of the transforms that ran, e.g. ``("json:minify", "json:table")``
    transforms: tuple[str, ...] = ()
    #: dropped content, keyed by the retrieval key quoted in the output's markers
    originals: tuple[Original, ...] = ()
    #: why a transform was considered and not applied, e.g. ``("json:table: no gain",)``
    skipped: tuple[str, ...] = field(default=())

    @property
    def lossy(self) -> bool:
        return bool(self.originals)


class Compressor(Protocol):
    name: str

    def score(self, text: str, ctx: Context) -> float: ...

    def compress(self, text: str, ctx: Context) -> Result: ...


def retrieval_key(text: str) -> str:
    """The deterministic retrieval key of a piece of original content."""
    return "ctx_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def omission_marker(omitted: int, total: int, unit: str, what: str, key: str) -> str:
    """The one in-place marker for dropped content, shared by every lossy transform.

    ``[... 57 of 100 items omitted: all level=INFO, status=200; retrieve: ctx_...]``
    """
    detail = f": {what}" if what else ""
    return f"[... {omitted} of {total} {unit} omitted{detail}; retrieve: {key}]"
