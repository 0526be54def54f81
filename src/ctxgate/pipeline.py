"""One request end to end: candidate blocks, compress-once decisions, splice, validate.

``Pipeline.run(raw, info)`` never raises. It parses the body with the wire-format
module, identifies the session, looks up every tool output's compress-once decision,
decides the new ones (protection policy, duplicates, the engine), splices the results
into the raw bytes, validates the output against the input, records the new decisions
and returns the new body. Any error, store failure or time-budget overrun sends the
original bytes instead, with the reason in ``skip_reason``.

The clock lives here (``clock`` for session times, ``timer`` for the budget), never in
``conversation/`` or ``engine/``. See docs/ARCHITECTURE.md, "Decision lifecycle".
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import re
import time
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ctxgate import conversation, engine, tokens
from ctxgate.conversation import Conversation, Edit
from ctxgate.conversation import policy as pol
from ctxgate.conversation import references as refs
from ctxgate.engine._api import retrieval_key
from ctxgate.errors import ConfigError, StoreError
from ctxgate.settings import Level, Settings
from ctxgate.store.base import DecisionStore, OriginalsStore, SessionActivity, SessionStore
from ctxgate.store.decisions import MAX_VALUE_CHARS, MemoryDecisionStore, SqliteDecisionStore

WireFormat = Literal["anthropic", "openai_chat", "openai_responses"]
Clock = Callable[[], float]
#: model name -> input price in USD per 1M tokens, None when unknown
PriceOf = Callable[[str], float | None]

#: share of the time budget after which no new block is decided (the rest stay verbatim, undecided)
_SOFT_BUDGET = 0.7
#: bounds of the per-session memo of the previous request (parse, hashes, token counts): sessions
#: kept, and characters of request text held in all (a body over a quarter of it is not kept)
_MEMO_SESSIONS = 256
_MEMO_CHARS = 32_000_000


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the pipeline needs to know about a request besides its body."""

    fmt: WireFormat
    model: str = "default"
    tenant: str = "default"
    user: str = "anonymous"
    #: session id from a header (x-claude-code-session-id, x-ctxgate-session-id), if any
    session_id: str | None = None
    #: per-request overrides
    level: Level | None = None
    exclude_tools: tuple[str, ...] = ()
    min_tokens: int | None = None
    #: take ``model`` from the body's top-level ``"model"`` string when it has one (proxy mode)
    model_from_body: bool = False
    #: top-level body fields to return in ``PipelineResult.fields`` (read from the pipeline's own
    #: parse, so that the caller need not parse the body again)
    fields: tuple[str, ...] = ()
    #: return before ``tokens_before`` is counted; the caller finishes it with ``PipelineResult.count()``
    #: (proxy mode: the count runs while the body travels upstream, off the request's path)
    defer_count: bool = False


@dataclass(slots=True)
class PipelineResult:
    body: bytes
    tokens_before: int
    tokens_after: int
    estimator: str
    session_id: str
    transforms: list[str] = field(default_factory=list)
    ccr_hashes: list[str] = field(default_factory=list)
    #: set when nothing was changed: "level_off", "no_candidates", "store_unavailable", "error", ...
    skip_reason: str | None = None
    error: str | None = None
    #: what happened to the request's blocks: "replayed", "compressed", "verbatim", "old_kept",
    #: "protected", "file_read", "error_result", "small", "duplicate", "echo", "repeat" (references,
    #: see ``conversation.references``), "stale_read", "cold_cache", "first_with_history", "deferred"
    #: (time budget), ...
    counts: dict[str, int] = field(default_factory=dict)
    #: the top-level body fields ``RequestInfo.fields`` asked for (those the body has); None when
    #: the body was not parsed (too large, not JSON, time budget, error)
    fields: dict[str, Any] | None = None
    #: the model the request was counted for (``RequestInfo.model``, or the body's with ``model_from_body``)
    model: str | None = None
    #: with ``RequestInfo.defer_count``: the count still to make, and the tokens the edits removed
    pending: Callable[[], tokens.Count] | None = field(default=None, repr=False, compare=False)
    removed: int = field(default=0, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        return self.tokens_after < self.tokens_before

    async def count(self) -> None:
        """Make a deferred count (``RequestInfo.defer_count``): set ``tokens_before``, ``tokens_after``
        and ``estimator``. Does nothing when counted already; never raises (chars/4 when counting fails)."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        try:
            n = await asyncio.to_thread(pending)
            before, estimator = n.tokens, n.estimator
        except Exception:  # noqa: BLE001 - counting must not fail a request
            before, estimator = len(self.body) // 4 + self.removed, "chars/4"
        self.tokens_before, self.tokens_after, self.estimator = before, before - self.removed, estimator


@dataclass(frozen=True, slots=True)
class _Decision:
    """What to send for one new block: the text (None: verbatim) and why."""

    value: str | None
    reason: str  # the count it adds to: "compressed", "duplicate", "protected", "small", ...
    originals: dict[str, str] = field(default_factory=dict)
    transforms: tuple[str, ...] = ()


#: what a message must hold once sent: its role, tool ids and tool-output texts
Expectation = tuple[str, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _Checked:
    """An output that passed ``_validate``: the next output of the session builds on it."""

    text: str
    #: output range of each message (each one checked to be a JSON value on its own)
    spans: list[tuple[int, int]]
    expect: list[Expectation]
    #: the output before the first message and after the last
    outer: tuple[str, str]


@dataclass(slots=True)
class _Memo:
    """What a session's latest request leaves for the next one, which usually repeats it and adds a turn.

    Everything here is reused only where the new body provably holds the same characters at
    the same place (``Conversation.shared``) or the very same string object, so a memo that
    belongs to another conversation, or one that is stale, costs time but never changes a result.
    """

    conv: Conversation
    #: block start -> (its text object, its content hash)
    hashes: dict[int, tuple[str, str]] = field(default_factory=dict)
    #: token estimator the counts below were made with
    estimator: str = ""
    #: message (start, end) -> its tokens (see ``Pipeline._count``)
    message_tokens: dict[tuple[int, int], int] = field(default_factory=dict)
    #: the text around the messages and its tokens
    rest: tuple[str, int] = ("", -1)
    #: this request's output, once validated
    checked: _Checked | None = None
    #: block start -> (its text object, the text sent instead, tokens saved, model)
    saved: dict[int, tuple[str, str, int, str]] = field(default_factory=dict)
    #: tool call id -> its arguments split and indexed for references (see ``references.Calls``)
    call_args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Prepared:
    """A parsed request with its session and its blocks' decision keys (computed in a worker thread)."""

    conv: Conversation
    session: str
    memo: _Memo
    keys: list[str]
    #: ``info`` with the body's model when it asked for it
    info: RequestInfo
    fields: dict[str, Any] = field(default_factory=dict)
    #: the store's answer when it was read in the same thread (see ``Pipeline._prepare``):
    #: (now, the session's previous activity, existing decisions), or the store's error
    read: tuple[float, SessionActivity | None, dict[str, str | None]] | StoreError | None = None


@dataclass(slots=True)
class _Plan:
    """The outcome of deciding one request (computed in a worker thread)."""

    body: bytes
    before: tokens.Count | None = None
    delta: int = 0  # tokens removed
    edits: int = 0
    decisions: dict[str, str | None] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)
    transforms: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    invalid: str | None = None


def fingerprint(tenant: str, model: str, first_user: str) -> str:
    """The session id of a request without a session header."""
    h = hashlib.sha256("\x1f".join((tenant, model, first_user)).encode("utf-8", "surrogatepass"))
    return "fp-" + h.hexdigest()[:32]


def decision_key(tenant: str, session: str, content_hash: str, tool: str, occurrence: str) -> str:
    """Key of one block's decision: tenant, session, content, tool, the call it answers, policy version."""
    parts = (pol.POLICY_VERSION, tenant, session, content_hash, tool, occurrence)
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _content_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        decisions: DecisionStore,
        originals: OriginalsStore,
        sessions: SessionStore | None = None,
        *,
        clock: Clock = time.time,
        timer: Clock = time.perf_counter,
        price_of: PriceOf | None = None,
    ) -> None:
        self.settings = settings
        self.decisions = decisions
        self.originals = originals
        if sessions is None:
            own = hasattr(decisions, "touch") and hasattr(decisions, "active")
            sessions = decisions if own else MemoryDecisionStore(settings.decision_ttl_s)  # type: ignore[assignment]
        self.sessions: SessionStore = sessions  # type: ignore[assignment]
        self.clock = clock
        self.timer = timer
        self.price_of: PriceOf = price_of or (lambda model: None)
        self._memos: OrderedDict[tuple[str, str, str], _Memo] = OrderedDict()
        self._memo_chars = 0

    # --- public -----------------------------------------------------------

    async def run(self, raw: bytes, info: RequestInfo) -> PipelineResult:
        """The body to send upstream, and what was done to it. Never raises."""
        start = self.timer()
        try:
            return await self._run(raw, info, start)
        except Exception as exc:  # noqa: BLE001 - fail open: the original goes upstream
            return await self._passthrough(raw, info, None, "", "error", f"{type(exc).__name__}: {exc}")

    async def active_sessions(self, tenant: str | None = None, within_s: float = 3600) -> list[dict[str, Any]]:
        """Sessions seen in the last ``within_s`` seconds, most recent first. Raises StoreError."""
        rows = await self.sessions.active(tenant, self.clock() - within_s)
        return [r.as_dict() for r in rows]

    async def original(self, tenant: str, key: str) -> str | None:
        """The original content behind a retrieval key, within one tenant. Raises StoreError."""
        return await self.originals.get(tenant, key)

    async def ping(self) -> None:
        """Raise StoreError when a store does not answer (for /readyz)."""
        for store in (self.decisions, self.originals, self.sessions):
            probe = getattr(store, "ping", None)
            if callable(probe):
                await probe()

    async def aclose(self) -> None:
        seen: set[int] = set()
        for store in (self.decisions, self.originals, self.sessions):
            if id(store) not in seen:
                seen.add(id(store))
                await store.aclose()

    # --- one request ----------------------------------------------------------

    async def _run(self, raw: bytes, info: RequestInfo, start: float) -> PipelineResult:
        s = self.settings
        budget = s.time_budget_ms / 1000.0
        if len(raw) > s.max_body_bytes:
            n = len(raw) // 4
            return PipelineResult(raw, n, n, "chars/4", info.session_id or "", skip_reason="too_large")
        level = info.level or s.level
        policy = pol.Policy.from_settings(s, level=level, exclude_tools=info.exclude_tools, min_tokens=info.min_tokens)
        skip = None
        if level == "off":
            skip = "level_off"
        elif not info.model_from_body and policy.below_price_floor(self.price_of(info.model)):
            skip = "price_floor"
        memo_key = self._memo_key(raw, info)
        prev = self._memos.get(memo_key)
        try:
            prep = await asyncio.wait_for(
                asyncio.to_thread(self._prepare, raw, info, prev, skip is None, policy), budget
            )
        except TimeoutError:
            return await self._passthrough(raw, info, None, info.session_id or "", "time_budget", None)
        except ValueError as exc:
            return await self._passthrough(raw, info, None, info.session_id or "", "error", f"parse: {exc}")
        conv, session, info = prep.conv, prep.session, prep.info
        self._remember(memo_key, prep.memo)
        if skip is None and info.model_from_body and policy.below_price_floor(self.price_of(info.model)):
            skip = "price_floor"
        if skip is None and not conv.blocks:
            skip = "no_candidates"
        now = self.clock()
        keys = prep.keys
        both = getattr(self.decisions, "touch_get_many", None) if self.sessions is self.decisions else None
        if isinstance(prep.read, StoreError):
            return await self._passthrough(raw, info, conv, session, "store_unavailable", str(prep.read), prev)
        if skip is None and prep.read is not None:
            now, prev_seen, existing = prep.read
        elif skip is None and both is not None:
            # one store round trip (one thread hop for SQLite) instead of two
            try:
                prev_seen, existing = await both(info.tenant, session, info.user, info.model, now, keys)
            except StoreError as exc:
                return await self._passthrough(raw, info, conv, session, "store_unavailable", str(exc), prev)
        else:
            try:
                prev_seen = await self.sessions.touch(info.tenant, session, info.user, info.model, now)
            except StoreError as exc:
                return await self._passthrough(raw, info, conv, session, skip or "store_unavailable", str(exc), prev)
            if skip:
                return await self._passthrough(raw, info, conv, session, skip, None, prev)
            try:
                existing = await self.decisions.get_many(keys)
            except StoreError as exc:
                return await self._passthrough(raw, info, conv, session, "store_unavailable", str(exc), prev)

        known = prev_seen is not None
        cold = known and prev_seen is not None and now - prev_seen.last_seen > conv.cache_lifetime_s
        remaining = budget - (self.timer() - start)
        if remaining <= 0:
            return await self._passthrough(raw, info, conv, session, "time_budget", None, prev)
        soft_deadline = start + budget * _SOFT_BUDGET
        try:
            plan = await asyncio.wait_for(
                asyncio.to_thread(
                    self._decide, raw, conv, info, keys, existing, known, cold, policy, soft_deadline, prev, prep.memo
                ),
                remaining,
            )
        except TimeoutError:
            return await self._passthrough(raw, info, conv, session, "time_budget", None, prev)
        if plan.invalid:
            return await self._passthrough(raw, info, conv, session, "validation_failed", plan.invalid, prev)
        put_all = getattr(self.decisions, "put_all", None) if self.originals is self.decisions else None
        try:
            if put_all is not None:  # one round trip, one transaction
                if plan.originals or plan.decisions:
                    await put_all(info.tenant, plan.originals, plan.decisions)
            else:
                for key, text in plan.originals.items():
                    await self.originals.put(info.tenant, key, text)
                if plan.decisions:
                    await self.decisions.put_many(plan.decisions)
        except StoreError as exc:
            return await self._passthrough(raw, info, conv, session, "store_unavailable", str(exc), prev)
        result = PipelineResult(
            body=plan.body,
            tokens_before=0,
            tokens_after=0,
            estimator="pending",
            session_id=session,
            transforms=sorted(plan.transforms),
            ccr_hashes=sorted(plan.originals),
            skip_reason=None if plan.edits else "no_change",
            counts=dict(plan.counts),
            fields=prep.fields,
            model=info.model,
        )
        if info.defer_count:
            result.pending = functools.partial(self._count, conv, info.model, prev, prep.memo)
            result.removed = plan.delta
            return result
        before = plan.before
        assert before is not None
        result.tokens_before, result.tokens_after = before.tokens, before.tokens - plan.delta
        result.estimator = before.estimator
        return result

    def _prepare(
        self, raw: bytes, info: RequestInfo, prev: _Memo | None, with_keys: bool, policy: pol.Policy | None = None
    ) -> _Prepared:
        """Parse (reusing the session's previous request), name the session, key every block.

        With a store that can be called from this worker thread (``touch_get_many_blocking``,
        SQLite) and a request that will be decided, the session is touched and the blocks'
        decisions read here too: one thread hop instead of two.
        """
        conv = conversation.parse(raw, info.fmt, prev.conv if prev is not None else None)
        fields = conv.top_level(info.fields) if info.fields else {}
        if info.model_from_body:
            model = fields["model"] if "model" in fields else conv.top_level(("model",)).get("model")
            if isinstance(model, str):
                info = dataclasses.replace(info, model=model)
        session = info.session_id or fingerprint(info.tenant, info.model, conv.first_user)
        memo = _Memo(conv)
        if not with_keys:
            return _Prepared(conv, session, memo, [], info, fields)
        old = prev.hashes if prev is not None else {}
        hashes = []
        for b in conv.blocks:
            seen = old.get(b.start)
            # the same string object: the block was reused from the previous parse as it is
            h = seen[1] if seen is not None and seen[0] is b.text else _content_hash(b.text)
            memo.hashes[b.start] = (b.text, h)
            hashes.append(h)
        prep = _Prepared(conv, session, memo, self._keys(conv, hashes, info.tenant, session), info, fields)
        blocking = getattr(self.decisions, "touch_get_many_blocking", None) if self.sessions is self.decisions else None
        cheap = policy is not None and info.model_from_body and policy.below_price_floor(self.price_of(info.model))
        if blocking is not None and conv.blocks and policy is not None and not cheap:
            now = self.clock()
            try:
                prev_seen, existing = blocking(info.tenant, session, info.user, info.model, now, prep.keys)
                prep.read = (now, prev_seen, existing)
            except StoreError as exc:
                prep.read = exc
        return prep

    def _memo_key(self, raw: bytes, info: RequestInfo) -> tuple[str, str, str]:
        """Where a request finds its session's previous one: the session header, else the body's opening."""
        if info.session_id:
            return (info.tenant, info.fmt, info.session_id)
        return (info.tenant, info.fmt, hashlib.blake2b(raw[:4096], digest_size=16).hexdigest())

    def _remember(self, key: tuple[str, str, str], memo: _Memo) -> None:
        """Keep ``memo`` as the latest request of its session, within the memo's bounds (LRU)."""
        size = 2 * len(memo.conv.text)  # the request, and the output kept once it is validated
        old = self._memos.pop(key, None)
        if old is not None:
            self._memo_chars -= 2 * len(old.conv.text)
        if size <= _MEMO_CHARS // 4:
            self._memos[key] = memo
            self._memo_chars += size
        while self._memo_chars > _MEMO_CHARS or len(self._memos) > _MEMO_SESSIONS:
            _, dropped = self._memos.popitem(last=False)
            self._memo_chars -= 2 * len(dropped.conv.text)

    @staticmethod
    def _keys(conv: Conversation, hashes: list[str], tenant: str, session: str) -> list[str]:
        seen: Counter[str] = Counter()
        keys = []
        for b, h in zip(conv.blocks, hashes, strict=True):
            occurrence = b.tool_id or f"#{seen[h]}"
            seen[h] += 1
            keys.append(decision_key(tenant, session, h, b.tool_name or "", f"{occurrence}/{b.part}"))
        return keys

    def _decide(
        self,
        raw: bytes,
        conv: Conversation,
        info: RequestInfo,
        keys: list[str],
        existing: dict[str, str | None],
        known: bool,
        cold: bool,
        policy: pol.Policy,
        soft_deadline: float,
        prev: _Memo | None = None,
        memo: _Memo | None = None,
    ) -> _Plan:
        """Decide every block (pure apart from the timer); splice and validate; count the tokens."""
        plan = _Plan(body=raw)
        if not info.defer_count:
            plan.before = self._count(conv, info.model, prev, memo)
        dups = refs.duplicates(conv.blocks)
        calls = refs.Calls(conv.calls.values(), dict(prev.call_args) if prev is not None else None)
        if memo is not None:
            memo.call_args = calls.cache
        stale = pol.stale_reads(conv) if cold and policy.level == "balanced" else {}
        later_texts = {b.text for b in conv.blocks if b.index in dups}
        sent: dict[int, str] = {}  # block index -> text that goes upstream
        edits: list[Edit] = []
        for b, key in zip(conv.blocks, keys, strict=True):
            old = b.message <= conv.last_assistant
            stale_here = b.index in stale and b.text not in later_texts
            if key in existing and not stale_here:
                value = existing[key]
                plan.counts["replayed"] += 1
            elif known and old and not cold:
                # probably cached verbatim by the provider: never touched, never recorded
                plan.counts["old_kept"] += 1
                sent[b.index] = b.text
                continue
            elif self.timer() > soft_deadline:
                plan.counts["deferred"] += 1
                sent[b.index] = b.text
                continue
            else:
                d = self._new_decision(b, conv, info, policy, dups, stale if stale_here else {}, sent, calls)
                value, reason = d.value, d.reason
                if value is not None:
                    # every change must shrink the block and fit the store, or the block stays verbatim
                    big = len(value) > MAX_VALUE_CHARS or any(len(t) > MAX_VALUE_CHARS for t in d.originals.values())
                    n_old, n_new = tokens.count(b.text, info.model).tokens, tokens.count(value, info.model).tokens
                    if big or n_new >= n_old:
                        value, reason = None, "too_large" if big else "no_gain"
                    else:
                        plan.originals.update(d.originals)
                        plan.transforms.update(d.transforms)
                plan.counts[reason] += 1
                plan.decisions[key] = value
                if old:
                    plan.counts["cold_cache" if known else "first_with_history"] += 1
            text = b.text if value is None else value
            sent[b.index] = text
            if text != b.text:
                edits.append(Edit(b.start, b.end, text))
                plan.delta += self._saved(b, text, info.model, prev, memo)
        if edits:
            plan.edits = len(edits)
            out, shifts = conversation.splice_shifts(conv.text, edits)
            plan.body = out.encode("utf-8")
            checked = prev.checked if prev is not None else None
            plan.invalid, checked = _validate(out, _out_spans(conv, shifts), conv, info.fmt, sent, checked)
            if memo is not None:
                memo.checked = checked
        return plan

    def _new_decision(
        self,
        b: conversation.Block,
        conv: Conversation,
        info: RequestInfo,
        policy: pol.Policy,
        dups: dict[int, conversation.Block],
        stale: dict[int, tuple[str, conversation.ToolCall]],
        sent: dict[int, str],
        calls: refs.Calls,
    ) -> _Decision:
        """What to send for a block seen for the first time."""
        if b.index in stale:
            path, writer = stale[b.index]
            ref = retrieval_key(b.text)
            return _Decision(pol.stale_marker(path, writer, ref), "stale_read", {ref: b.text}, ("stale_read",))
        call = conv.calls.get(b.tool_id)
        first = dups.get(b.index)
        reason = policy.exemption(b, call)
        # the earlier outputs a protected one may be a whole copy of (``references``'s ``exact``)
        exact_kept = reason in ("protected", "file_read") and not policy.protected_runs
        copies = self._copy_sources(b, conv, sent) if exact_kept else None
        referable = first is not None or policy.protected_runs or bool(calls.before(b.message)) or bool(copies)
        if reason is not None and (reason == "level_off" or not referable):
            return _Decision(None, reason)  # kept whatever its size: not counted here (see ``_count``)
        # an output that stays exact whatever its size need not be counted, unless it is a duplicate
        n = tokens.count(b.text, info.model).tokens if reason is None or first is not None else 0
        if reason is None:
            reason = policy.protection(b, call, n)
        # a protected output may point only at a copy that went upstream exactly
        if (
            first is not None
            and n >= refs.DEDUP_MIN_TOKENS
            and policy.level_for(b.tool_name) != "off"
            and (reason not in ("protected", "file_read") or sent.get(first.index) == first.text)
        ):
            ref = retrieval_key(b.text)
            return _Decision(refs.duplicate_marker(first, ref), "duplicate", {ref: b.text}, ("duplicate",))
        if reason is not None and reason not in ("protected", "file_read"):
            return _Decision(None, reason)
        ctx = engine.Context(
            tool_name=b.tool_name,
            tool_args=call.args if call else None,
            query=conv.query,
            level=policy.level_for(b.tool_name),
            model=info.model,
            min_tokens=policy.min_tokens,
        )
        best = self._references(
            b, call, conv, policy, sent, calls, protected=reason is not None, ctx=ctx, copies=copies
        )
        if reason is not None:  # protected: a reference, or nothing
            return best if best is not None else _Decision(None, reason)
        outcome = engine.compress(b.text, ctx, tokens_before=n)  # n: counted above (reason is None)
        if best is not None and tokens.count(best.value or "", info.model).tokens < outcome.tokens_after:
            return best
        if not outcome.changed:
            return _Decision(None, "verbatim")
        return _Decision(outcome.text, "compressed", {o.key: o.text for o in outcome.originals}, outcome.transforms)

    @staticmethod
    def _references(
        b: conversation.Block,
        call: conversation.ToolCall | None,
        conv: Conversation,
        policy: pol.Policy,
        sent: dict[int, str],
        calls: refs.Calls,
        *,
        protected: bool,
        ctx: engine.Context,
        copies: list[tuple[conversation.Block, str]] | None = None,
    ) -> _Decision | None:
        """The block with the runs the request already holds replaced by references, or None.

        Sources: the call's own arguments and earlier calls' (never changed), and earlier outputs
        as they went upstream. A protected output may point at runs of earlier outputs only with
        ``protected_runs``; without it, at earlier calls only when they cover it whole, and at an
        earlier output only when one that went upstream exactly holds it whole; an unprotected one
        may also point at the full text of an output sent shortened (``balanced``), and its text
        between the references goes through the engine.
        """
        earlier, unshown, exact = None, [], []
        window = conv.blocks[max(0, b.index - refs.LOOKBACK) : b.index]
        if not protected or policy.protected_runs:
            earlier = [(e, sent[e.index]) for e in window]
            if not protected and ctx.level == "balanced":
                unshown = [(e, e.text) for e in window if sent[e.index] != e.text]
        else:  # a protected output may be a whole copy of part of one that went upstream exactly
            exact = copies if copies is not None else Pipeline._copy_sources(b, conv, sent)
        whole = protected and not policy.protected_runs
        found = refs.references(b, call, earlier, calls, whole=whole, unshown=unshown, exact=exact)
        if not found:
            return None
        ref = retrieval_key(b.text)
        originals: dict[str, str] = {ref: b.text}
        transforms: set[str] = set()

        def fill(gap: str) -> str:
            o = engine.compress(gap, ctx)
            if not o.changed:
                return gap
            originals.update({x.key: x.text for x in o.originals})
            transforms.update(o.transforms)
            return o.text

        text = refs.reference_text(b, call, found, ref, None if protected else fill)
        kinds = {("repeat" if r.shown else "repeat_lossy") if isinstance(r, refs.Repeat) else "echo" for r in found}
        return _Decision(text, "echo" if kinds == {"echo"} else "repeat", originals, tuple(sorted(kinds | transforms)))

    # --- helpers ------------------------------------------------------------

    @staticmethod
    def _copy_sources(
        b: conversation.Block, conv: Conversation, sent: dict[int, str]
    ) -> list[tuple[conversation.Block, str]]:
        """Earlier outputs of the window that went upstream exactly and may hold ``b`` whole."""
        window = conv.blocks[max(0, b.index - refs.LOOKBACK) : b.index]
        return refs.copy_sources(b, [(e, e.text) for e in window if sent.get(e.index) == e.text])

    @staticmethod
    def _saved(b: conversation.Block, text: str, model: str, prev: _Memo | None, memo: _Memo | None) -> int:
        """Tokens of ``b`` minus those of ``text``, its replacement (remembered for the next request:
        a replayed block would otherwise have its original hashed again on every turn)."""
        seen = prev.saved.get(b.start) if prev is not None else None
        if seen is not None and seen[0] is b.text and seen[1] == text and seen[3] == model:
            n = seen[2]
        else:
            n = tokens.count(b.text, model).tokens - tokens.count(text, model).tokens
        if memo is not None:
            memo.saved[b.start] = (b.text, text, n, model)
        return n

    def _count(
        self, conv: Conversation, model: str, prev: _Memo | None = None, memo: _Memo | None = None
    ) -> tokens.Count:
        """Tokens of the request as ``tokens_before`` reports them.

        Each tool output counts as its decoded text (what the model reads, and the unit that
        ``tokens_after`` subtracts from), each message as its JSON text without those string
        literals plus its outputs, and the text around the messages (model, system, tools...)
        as JSON text. Counts are cached by content; a message the previous request of the
        session (``prev``) already counted at the same place is not counted again, so the cost
        grows with the new messages. ``memo`` receives this request's counts for the next one.
        """
        counter = tokens.counter_for(model)
        text, blocks = conv.text, conv.blocks
        reuse = prev.message_tokens if prev is not None and prev.estimator == counter.name else {}
        counted: dict[tuple[int, int], int] = {}
        total, k = 0, 0
        for mi, m in enumerate(conv.messages):
            while k < len(blocks) and blocks[k].message < mi:
                k += 1
            span = (m.start, m.end)
            n = reuse.get(span) if m.end < conv.shared else None
            if n is None:
                n, pos, parts = 0, m.start, []
                while k < len(blocks) and blocks[k].message == mi:
                    b = blocks[k]
                    parts.append(text[pos : b.start])
                    n += tokens.count(b.text, model).tokens
                    pos = b.end
                    k += 1
                parts.append(text[pos : m.end])
                n += tokens.count("".join(parts), model).tokens
            counted[span] = n
            total += n
        rest = text[: conv.messages[0].start] + text[conv.messages[-1].end :] if conv.messages else text
        if prev is not None and prev.estimator == counter.name and prev.rest[1] >= 0 and prev.rest[0] == rest:
            n_rest = prev.rest[1]
        else:
            n_rest = tokens.count(rest, model).tokens
        if memo is not None:
            memo.estimator, memo.message_tokens, memo.rest = counter.name, counted, (rest, n_rest)
        return tokens.Count(total + n_rest, counter.name, counter.exact)

    async def _passthrough(
        self,
        raw: bytes,
        info: RequestInfo,
        conv: Conversation | None,
        session: str,
        reason: str,
        error: str | None,
        prev: _Memo | None = None,
    ) -> PipelineResult:
        fields = None
        if conv is not None:
            try:
                fields = conv.top_level(info.fields)
            except ValueError:
                fields = None
        if info.defer_count:
            def count_raw() -> tokens.Count:
                return tokens.count(raw.decode("utf-8", "replace"), info.model)

            pending = functools.partial(self._count, conv, info.model, prev) if conv is not None else count_raw
            return PipelineResult(raw, 0, 0, "pending", session, skip_reason=reason, error=error, fields=fields,
                                  model=info.model, pending=pending)
        try:
            if conv is not None:
                n = await asyncio.to_thread(self._count, conv, info.model, prev)
            else:
                n = await asyncio.to_thread(tokens.count, raw.decode("utf-8", "replace"), info.model)
            before, estimator = n.tokens, n.estimator
        except Exception:  # noqa: BLE001 - counting must not turn a pass-through into a failure
            before, estimator = len(raw) // 4, "chars/4"
        return PipelineResult(
            raw, before, before, estimator, session, skip_reason=reason, error=error, fields=fields, model=info.model
        )


_SEPARATOR = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
#: stands for the message list when the rest of an output is checked
_SENTINEL = "ctxgate:message-list"


def _out_spans(conv: Conversation, shifts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Where each message of ``conv`` lies in the output spliced with ``shifts``."""
    ends = [end for end, _ in shifts]

    def at(x: int) -> int:
        k = bisect_right(ends, x)
        return x + (shifts[k - 1][1] if k else 0)

    return [(at(m.start), at(m.end)) for m in conv.messages]


def _expectations(conv: Conversation, sent: dict[int, str]) -> list[Expectation]:
    """What each message must hold in the output: role, tool ids and the texts decided for its outputs."""
    texts: list[list[str]] = [[] for _ in conv.messages]
    for b in conv.blocks:
        texts[b.message].append(sent.get(b.index, b.text))
    return [(m.role, m.tool_ids, tuple(t)) for m, t in zip(conv.messages, texts, strict=True)]


def _validate(
    out: str,
    spans: list[tuple[int, int]],
    conv: Conversation,
    fmt: str,
    sent: dict[int, str],
    prev: _Checked | None = None,
) -> tuple[str | None, _Checked | None]:
    """None when ``out`` keeps the messages, roles, tool ids and pairing of the input (else the reason).

    ``out`` is read back with ``json.loads`` and the format's ``outline``, a reading independent
    of the scanner that located the edits: each message on its own (the range ``spans`` gives
    it must be one JSON value with the expected role, tool ids and tool-output texts), the
    separators between messages, and the rest of the body with the message list replaced by a
    sentinel (valid JSON, and the list is the one the provider reads). A leading run of
    messages that an earlier validated output of the session (``prev``) holds at the same
    place, byte for byte and with the same expectations, was read back then and is not read
    again, so the cost grows with the new messages. Returns the reason, and what the next
    output may build on.
    """
    module = conversation.FORMATS[fmt]
    expect = _expectations(conv, sent)
    if not spans or len(spans) != len(expect):
        return "messages, roles or tool ids changed", None
    outer = (out[: spans[0][0]], out[spans[-1][1] :])
    first = 0
    if prev is not None:
        shared = conversation.shared_prefix(prev.text, out)
        n = min(len(spans), len(prev.spans))
        while first < n and spans[first] == prev.spans[first] and spans[first][1] < shared:
            if expect[first] != prev.expect[first]:
                break
            first += 1
    try:
        if prev is None or outer != prev.outer:
            data = json.loads(f'{outer[0]}"{_SENTINEL}"{outer[1]}')
            if not isinstance(data, dict) or data.get(module.LIST_KEY) != [_SENTINEL]:
                return "the message list is not the body's", None
        for k in range(first, len(spans)):
            start, end = spans[k]
            if k and not _SEPARATOR.fullmatch(out, spans[k - 1][1], start):
                return "messages changed: no separator between two messages", None
            shape, texts = module.outline({module.LIST_KEY: [json.loads(out[start:end])]})
            if shape != [expect[k][:2]]:
                return "messages, roles or tool ids changed", None
            if tuple(texts) != expect[k][2]:
                return "tool outputs do not hold their decided texts", None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"output is not valid: {type(exc).__name__}: {exc}", None
    return None, _Checked(out, spans, expect, outer)


def build_pipeline(
    settings: Settings, *, clock: Clock = time.time, price_of: PriceOf | None = None
) -> Pipeline:
    """Open the configured stores and return the pipeline (the app calls this at start-up)."""
    ttl = settings.decision_ttl_s
    store: Any
    if settings.decision_store == "memory":
        if settings.workers > 1:
            # each process would decide on its own: the same block could go out two ways
            raise ConfigError("decision_store=memory cannot be shared by workers > 1; use sqlite or redis")
        store = MemoryDecisionStore(ttl, max_entries=min(settings.decision_max_entries, 200_000), clock=clock)
    elif settings.decision_store == "redis":
        if settings.redis_url is None:
            raise ConfigError("decision_store=redis needs redis_url (CTXGATE_REDIS_URL)")
        from ctxgate.store.redis import RedisDecisionStore

        store = RedisDecisionStore(settings.redis_url.get_secret_value(), ttl, clock=clock)
    else:
        path = settings.data_dir / "decisions.sqlite3"
        store = SqliteDecisionStore(path, ttl, max_entries=settings.decision_max_entries, clock=clock)
    return Pipeline(settings, store, store, store, clock=clock, price_of=price_of)
