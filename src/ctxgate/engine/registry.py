"""The one dispatcher: pick the compressor with the highest score, fail open.

``compress(text, ctx)`` never raises and never grows the text (in tokens). Steps:

1. ``level == "off"`` or a text under ``ctx.min_tokens``: identity.
2. An agent envelope (``<returncode>..<output>..``, ``///PROCESS-DONE..``) is split off
   (``wrappers.unwrap``); ANSI escapes and carriage-return progress bars are cleaned from
   the body (``wrappers.clean``).
3. Every compressor scores the body; the highest positive score wins (ties: the earlier
   entry in ``COMPRESSORS``). Scores, by convention: 0.9 and up for a full structural
   parse (JSON, a unified diff), 0.5 to 0.9 for strong line-shape evidence (logs, grep,
   tables), 0.2 to 0.5 for weak evidence or a fallback (prose, mixed sections). A score of
   ``FINAL_SCORE`` (0.95) or more ends the search at once (a file read, a complete JSON
   parse), which keeps the other scorers off the largest outputs. A compressor whose
   ``max_score`` (the most its ``score`` returns) cannot change the answer is not asked
   either; the cheap ``ASK_FIRST`` scorers (HTML) run first for that (``detect``).
4. Below the winner's minimum size (``ctx.min_tokens_for(name, compressor.min_tokens)``)
   nothing happens. A compressor with ``verbatim = True`` (source code) is never changed.
5. The compressor runs. ``ValueError`` (or any other error) means the original passes
   through, with the reason in ``Outcome.skipped``. A lossy result at level ``lossless``
   is refused the same way.
6. The envelope is put back; when the result is not smaller in tokens, the original is
   returned unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ctxgate import tokens
from ctxgate.engine import wrappers
from ctxgate.engine._api import Compressor, Context, Original, retrieval_key
from ctxgate.engine.code import CodeCompressor
from ctxgate.engine.config import ConfigCompressor
from ctxgate.engine.diff import DiffCompressor
from ctxgate.engine.grep import GrepCompressor
from ctxgate.engine.html import HtmlCompressor
from ctxgate.engine.json import JsonCompressor
from ctxgate.engine.logs import LogCompressor
from ctxgate.engine.prose import ProseCompressor
from ctxgate.engine.sections import SectionsCompressor
from ctxgate.engine.table import TableCompressor

#: A score at least this high is final: later compressors are not asked (file reads, full JSON parses).
FINAL_SCORE = 0.95

#: Compressors in tie-break order, one per line. The first ones can end detection early (FINAL_SCORE).
COMPRESSORS: tuple[Compressor, ...] = (
    CodeCompressor(),
    JsonCompressor(),
    TableCompressor(),
    ConfigCompressor(),
    DiffCompressor(),
    GrepCompressor(),
    HtmlCompressor(),
    LogCompressor(),
    ProseCompressor(),
    SectionsCompressor(),
)


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
    #: the agent envelope that was split off and put back, e.g. ``"mini-swe-agent"``
    wrapper: str | None = None

    @property
    def changed(self) -> bool:
        return self.tokens_after < self.tokens_before

    @property
    def lossy(self) -> bool:
        return bool(self.originals)


def _unchanged(text: str, kind: str, n: int, *reasons: str, wrapper: str | None = None) -> Outcome:
    return Outcome(text, kind, n, n, (), (), tuple(reasons), wrapper)


def _score(c: Compressor, text: str, ctx: Context) -> float:
    return _prepare(c, text, ctx)[0]


def _prepare(c: Compressor, text: str, ctx: Context) -> tuple[float, Any]:
    """The score, and what the compressor's ``prepare`` found on the way (its parse), if it has one."""
    try:
        prepare = getattr(c, "prepare", None)
        if prepare is None:
            return float(c.score(text, ctx)), None
        score, state = prepare(text, ctx)
        return float(score), state
    except Exception:  # noqa: BLE001 - a broken scorer means "not mine", never a failed request
        return -1.0, None


#: Compressors whose scorer is cheap or fails fast on other content, and is often final: asked
#: before the others, so that a final score (a JSON document, an HTML page) spares the scorers
#: that cannot win. Not asked early after an entry that may score above ``FINAL_SCORE`` (a file
#: read): that one decides first.
ASK_FIRST = frozenset({"json", "html"})


def max_score(c: Compressor, ctx: Context) -> float:
    """The most ``c.score`` returns in ``ctx``: its ``max_score_for(ctx)``, else ``max_score``."""
    for_ctx = getattr(c, "max_score_for", None)
    return float(for_ctx(ctx)) if for_ctx is not None else float(getattr(c, "max_score", 1.0))


def detect(text: str, ctx: Context, compressors: tuple[Compressor, ...] | None = None) -> Compressor | None:
    """The first compressor (in order) with a ``FINAL_SCORE``, else the one with the highest
    positive score (ties: the earlier one), or None.

    The ``ASK_FIRST`` scorers run first; the others are then asked in order, skipping those
    whose ``max_score`` cannot change the answer: below ``FINAL_SCORE`` when a later entry
    already has a final score, no higher than the best earlier score, or below a later entry's.
    """
    return _detect(text, ctx, COMPRESSORS if compressors is None else compressors)[0]


def _detect(text: str, ctx: Context, cs: tuple[Compressor, ...]) -> tuple[Compressor | None, Any]:
    """``detect``, with the winner's ``prepare`` state (None when it has no ``prepare``)."""
    caps = [max_score(c, ctx) for c in cs]
    outbid = next((i for i, cap in enumerate(caps) if cap > FINAL_SCORE), len(cs))
    early = {i: _prepare(c, text, ctx) for i, c in enumerate(cs[:outbid]) if c.name in ASK_FIRST}
    final = next((i for i in sorted(early) if early[i][0] >= FINAL_SCORE), None)
    best: tuple[Compressor | None, Any] = (None, None)
    best_score = 0.0
    for i, c in enumerate(cs):
        if i == final:
            return c, early[i][1]  # no earlier entry had a final score
        scored = early.get(i)
        if scored is None:
            cap = caps[i]
            if final is not None:
                if cap < FINAL_SCORE:
                    continue  # the answer is a final score, here or later: this one cannot give it
            elif cap <= best_score or any(v[0] > cap for j, v in early.items() if j > i):
                continue  # it cannot win (ties go to the earlier entry): not worth scoring
            scored = _prepare(c, text, ctx)
        if scored[0] >= FINAL_SCORE:
            return c, scored[1]
        if scored[0] > best_score:
            best, best_score = (c, scored[1]), scored[0]
    return best


def compress(text: str, ctx: Context, *, tokens_before: int | None = None) -> Outcome:
    """Compress one piece of tool output. Never raises; never returns more tokens.

    ``tokens_before``: the caller's count of ``text`` for ``ctx.model``
    (``tokens.count(text, ctx.model).tokens``), when it has one (the proxy counts every
    block for its ledger anyway): the input is then not counted again. The never-grow
    rule compares with it, so it must be that exact count.
    """
    return _dispatch(text, ctx, COMPRESSORS, before=tokens_before)


def compress_part(
    text: str, ctx: Context, exclude: frozenset[str] = frozenset(), fallback: str | None = None
) -> Outcome:
    """Compress one part of a larger content (a section, a long JSON string value).

    For compressors that delegate: the same dispatcher, without the compressors named in
    ``exclude`` (at least the caller itself, so that delegation cannot loop). When no
    compressor claims the part, or the one that does leaves it as it is, the one named
    ``fallback`` (if registered) tries: the caller knows what the part is (a container's last
    log lines are logs, whatever they look like).
    """
    allowed = tuple(c for c in COMPRESSORS if c.name not in exclude)
    out = _dispatch(text, ctx, allowed, fallback)
    if out.changed or not fallback or out.content_type == fallback:
        return out
    only = tuple(c for c in allowed if c.name == fallback)
    counted = out.tokens_before if out.content_type != "unknown" or out.tokens_before else None
    return _dispatch(text, ctx, only, fallback, before=counted) if only else out


def _dispatch(
    text: str,
    ctx: Context,
    compressors: tuple[Compressor, ...],
    fallback: str | None = None,
    before: int | None = None,
) -> Outcome:
    if before is None:
        try:
            before = tokens.count(text, ctx.model).tokens
        except Exception as exc:  # noqa: BLE001 - e.g. text that cannot be encoded at all
            return Outcome(text, "unknown", 0, 0, (), (), (f"tokens: {type(exc).__name__}",))
    if ctx.level == "off":
        return _unchanged(text, "unknown", before, "level: off")
    if before < ctx.min_tokens:
        return _unchanged(text, "unknown", before, "below min_tokens")
    try:
        return _run(text, ctx, compressors, before, fallback)
    except Exception as exc:  # noqa: BLE001 - fail open, whatever went wrong
        return _unchanged(text, "unknown", before, f"engine: {type(exc).__name__}: {exc}")


def _run(
    text: str, ctx: Context, compressors: tuple[Compressor, ...], before: int, fallback: str | None = None
) -> Outcome:
    wrapped = wrappers.unwrap(text)
    body, cleaned = wrappers.clean(wrapped.body)
    form = wrapped.form
    pre = ((f"unwrap:{form}",) if form else ()) + cleaned
    state: Any = None
    if fallback and len(compressors) == 1 and compressors[0].name == fallback:
        compressor: Compressor | None = compressors[0]  # it runs whatever it would score
    else:
        compressor, state = _detect(body, ctx, compressors)
    if compressor is None and fallback:
        compressor = next((c for c in compressors if c.name == fallback), None)
    if compressor is None:
        return _finish(text, wrapped.rewrap(body), "unknown", before, ctx, pre, (), ("no compressor",), form)
    kind = compressor.name
    if getattr(compressor, "verbatim", False):
        return _unchanged(text, kind, before, f"{kind}: left untouched", wrapper=form)
    minimum = ctx.min_tokens_for(kind, int(getattr(compressor, "min_tokens", 0)))
    if before < minimum:
        return _unchanged(text, kind, before, f"{kind}: below min_tokens ({minimum})", wrapper=form)
    try:
        if state is not None:  # what its scorer parsed is not parsed again
            result = compressor.compress_prepared(body, ctx, state)  # type: ignore[attr-defined]
        else:
            result = compressor.compress(body, ctx)
    except ValueError as exc:
        reason = f"{kind}: {exc}"
        return _finish(text, wrapped.rewrap(body), kind, before, ctx, pre, (), (reason,), form)
    except Exception as exc:  # noqa: BLE001 - a bug in one compressor must not break a session
        reason = f"{kind}: {type(exc).__name__}: {exc}"
        return _finish(text, wrapped.rewrap(body), kind, before, ctx, pre, (), (reason,), form)
    if result.originals and ctx.level != "balanced":
        return _unchanged(
            text, kind, before, f"{kind}: lossy result refused at level {ctx.level}", wrapper=form
        )
    return _finish(
        text,
        wrapped.rewrap(result.text),
        kind,
        before,
        ctx,
        pre + result.transforms,
        result.originals,
        result.skipped,
        form,
    )


def _finish(
    original: str,
    text: str,
    kind: str,
    before: int,
    ctx: Context,
    transforms: tuple[str, ...],
    originals: tuple[Original, ...],
    skipped: tuple[str, ...],
    form: str | None,
) -> Outcome:
    if text == original or not any(t for t in transforms if not t.startswith("unwrap:")):
        return _unchanged(original, kind, before, *(skipped or (f"{kind}: nothing to do",)), wrapper=form)
    if originals:
        text, originals = _rekey(original, text, originals)
    after = tokens.count(text, ctx.model).tokens  # of the text as returned, new keys included
    if after >= before:
        return _unchanged(original, kind, before, *skipped, f"{kind}: no gain", wrapper=form)
    return Outcome(text, kind, before, after, transforms, originals, skipped, form)


def _rekey(original: str, text: str, originals: tuple[Original, ...]) -> tuple[str, tuple[Original, ...]]:
    """Make retrieval return the raw tool output as received (envelope and ANSI included).

    Compressors key what they were given (the unwrapped, cleaned body); the caller stores
    and retrieves the whole original. Keys have a fixed length, but another key's hex digits
    may take a token more or less: the result is counted after this.
    """
    key = retrieval_key(original)
    for o in originals:
        text = text.replace(o.key, key)
    return text, (Original(key, original),)
