from __future__ import annotations

from ctxgate import tokens
from ctxgate.engine import Context, Original, Result, compress, registry
from ctxgate.engine._api import Compressor


class Upper:
    name = "upper"

    def score(self, text: str, ctx: Context) -> float:
        return 1.0 if text.startswith("U") else -1.0

    def compress(self, text: str, ctx: Context) -> Result:
        if "boom" in text:
            raise ValueError("parse failed")
        return Result(text[: len(text) // 2], ("upper:halve",))


def test_detect_picks_highest_score() -> None:
    found = registry.detect("Uabc", Context(), (Upper(),))
    assert found is not None and found.name == "upper"
    assert registry.detect("abc", Context(), (Upper(),)) is None


def test_level_off_is_identity() -> None:
    out = compress("anything " * 100, Context(level="off"))
    assert out.text == "anything " * 100 and out.skipped == ("level: off",)


def test_fail_open_and_never_grow(monkeypatch) -> None:
    monkeypatch.setattr(registry, "COMPRESSORS", (Upper(),))
    text = "U" + " word" * 200
    ok = registry.compress(text, Context())
    assert ok.changed and ok.transforms == ("upper:halve",)
    bad = registry.compress(text + " boom", Context())
    assert bad.text == text + " boom" and bad.skipped == ("upper: parse failed",)


def test_below_min_tokens() -> None:
    out = compress("short", Context(min_tokens=10))
    assert out.text == "short" and out.skipped == ("below min_tokens",)


class Lossy:
    name = "lossy"

    def score(self, text: str, ctx: Context) -> float:
        return 0.5

    def compress(self, text: str, ctx: Context) -> Result:
        return Result("short", ("lossy:drop",), (Original("k", text),))


class Broken:
    name = "broken"

    def score(self, text: str, ctx: Context) -> float:
        raise KeyError("bug in a scorer")

    def compress(self, text: str, ctx: Context) -> Result:
        raise AssertionError("never called")


class Crashing:
    name = "crashing"
    min_tokens = 5

    def score(self, text: str, ctx: Context) -> float:
        return 0.9

    def compress(self, text: str, ctx: Context) -> Result:
        return Result(text[1_000_000], ("x",))  # IndexError: a bug, not a ValueError


def test_lossy_result_refused_at_lossless(monkeypatch) -> None:
    monkeypatch.setattr(registry, "COMPRESSORS", (Lossy(),))
    text = "word " * 100
    assert registry.compress(text, Context()).text == "short"
    out = registry.compress(text, Context(level="lossless"))
    assert out.text == text and out.skipped == ("lossy: lossy result refused at level lossless",)


def test_any_error_fails_open(monkeypatch) -> None:
    monkeypatch.setattr(registry, "COMPRESSORS", (Broken(), Crashing()))
    text = "word " * 100
    out = registry.compress(text, Context())
    assert out.text == text and out.content_type == "crashing"
    assert out.skipped[0].startswith("crashing: IndexError")


def test_per_type_minimum(monkeypatch) -> None:
    monkeypatch.setattr(registry, "COMPRESSORS", (Lossy(),))
    text = "word " * 100
    out = registry.compress(text, Context(min_tokens_by_type=(("lossy", 1000),)))
    assert out.text == text and out.skipped == ("lossy: below min_tokens (1000)",)
    assert Context(min_tokens=50, min_tokens_by_type=(("lossy", 10),)).min_tokens_for("lossy") == 50
    assert Context().min_tokens_for("other", 7) == 7


def test_compress_part_excludes_the_caller(monkeypatch) -> None:
    monkeypatch.setattr(registry, "COMPRESSORS", (Lossy(),))
    text = "word " * 100
    assert registry.compress_part(text, Context(), exclude=frozenset({"lossy"})).skipped == ("no compressor",)


class Sure:
    name = "sure"

    def score(self, text: str, ctx: Context) -> float:
        return registry.FINAL_SCORE

    def compress(self, text: str, ctx: Context) -> Result:
        return Result(text)


def test_a_final_score_ends_detection() -> None:
    higher = type("Higher", (Sure,), {"name": "higher", "score": lambda self, text, ctx: 0.99})()
    first = registry.detect("x", Context(), (Sure(), higher))
    assert first is not None and first.name == "sure"  # the later, higher score is never asked
    found = registry.detect("x", Context(), (Lossy(), Sure(), Lossy()))
    assert found is not None and found.name == "sure"


def test_a_compressor_that_cannot_win_is_not_asked() -> None:
    asked: list[str] = []

    class Capped:
        name = "capped"
        max_score = 0.5

        def score(self, text: str, ctx: Context) -> float:
            asked.append(self.name)
            return 0.5

        def compress(self, text: str, ctx: Context) -> Result:
            return Result(text)

    idle = Idle()  # scores 0.3, no max_score: always asked
    assert registry.detect("x", Context(), (idle, Capped())) is not None
    assert asked == ["capped"]
    asked.clear()
    better = type("Better", (Idle,), {"name": "better", "score": lambda self, text, ctx: 0.5})()
    found = registry.detect("x", Context(), (better, Capped()))
    assert found is not None and found.name == "better" and asked == []  # a tie goes to the earlier one anyway


def test_max_scores_hold_on_the_corpus(corpus) -> None:
    """No compressor scores above its declared ``max_score`` (which would make detection skip a winner)."""
    files = sorted(f for f in (corpus / "outputs").rglob("*") if f.is_file() and f.suffix != ".jsonl")
    tools = (None, "Bash", "WebFetch", "Read")
    for f in files[::3]:
        text = f.read_text(encoding="utf-8", errors="replace")
        for c in registry.COMPRESSORS:
            for tool in tools:
                ctx = Context(tool_name=tool)
                cap = registry.max_score(c, ctx)
                assert registry._score(c, text, ctx) <= cap <= c.max_score, (c.name, f.name)  # type: ignore[attr-defined]


class Halver:
    name = "halver"

    def score(self, text: str, ctx: Context) -> float:
        return -1.0  # never claims anything by itself

    def compress(self, text: str, ctx: Context) -> Result:
        return Result(text[: len(text) // 2], ("halver:cut",), (Original("k", text),))


class Idle:
    name = "idle"

    def score(self, text: str, ctx: Context) -> float:
        return 0.3

    def compress(self, text: str, ctx: Context) -> Result:
        return Result(text)


def test_compress_part_fallback(monkeypatch) -> None:
    monkeypatch.setattr(registry, "COMPRESSORS", (Halver(),))
    text = "line of text\n" * 50
    assert not registry.compress_part(text, Context()).changed
    out = registry.compress_part(text, Context(), fallback="halver")
    assert out.changed and out.content_type == "halver"
    # a compressor that claims the part but leaves it unchanged does not stop the fallback
    monkeypatch.setattr(registry, "COMPRESSORS", (Idle(), Halver()))
    assert registry.compress_part(text, Context(), fallback="halver").content_type == "halver"
    assert not registry.compress_part(
        text, Context(), exclude=frozenset({"halver"}), fallback="halver"
    ).changed


def test_retrieval_returns_the_raw_output_with_its_envelope() -> None:
    from ctxgate.engine._api import retrieval_key

    lines = "\n".join(f"2024-01-01 12:00:{i % 60:02d} INFO worker-{i} processed item {i} in {i % 7} ms" for i in range(400))
    raw = f"<returncode>0</returncode>\n<output>\n\x1b[32m{lines}\x1b[0m\n</output>"
    out = compress(raw, Context(tool_name="bash"))
    assert out.content_type == "logs" and out.lossy
    assert out.originals == (type(out.originals[0])(retrieval_key(raw), raw),)
    assert retrieval_key(raw) in out.text
    assert out.tokens_after == tokens.count(out.text).tokens  # counted with the new key in place


def test_token_counts_are_of_the_returned_text_on_the_corpus(corpus) -> None:
    files = sorted(f for f in (corpus / "outputs").rglob("*") if f.is_file() and f.suffix != ".jsonl")
    for f in files[::4]:
        out = compress(f.read_text(encoding="utf-8", errors="replace"), Context(tool_name="Bash"))
        assert out.tokens_after == tokens.count(out.text).tokens, f.name


def test_ask_first_final_score_spares_scorers_that_cannot_win(monkeypatch) -> None:
    asked: list[str] = []

    def scorer(name: str, score: float, cap: float) -> Compressor:
        def score_fn(self: object, text: str, ctx: Context) -> float:
            asked.append(name)
            return score

        return type(name, (), {"name": name, "max_score": cap, "score": score_fn, "compress": Idle.compress})()  # type: ignore[no-any-return]

    monkeypatch.setattr(registry, "ASK_FIRST", frozenset({"cheap"}))
    weak, sure, cheap = scorer("weak", 0.8, 0.85), scorer("sure", -1.0, 0.95), scorer("cheap", 0.95, 0.95)
    found = registry.detect("x", Context(), (weak, sure, cheap))
    # an earlier entry that could tie with the final score is still asked (ties go to it)
    assert found is cheap and asked == ["cheap", "sure"]
    asked.clear()
    tie = scorer("tie", 0.95, 0.95)
    assert registry.detect("x", Context(), (weak, tie, cheap)) is tie and asked == ["cheap", "tie"]
    asked.clear()
    # without a final score the cheap entry's score still rules out earlier ones below it
    low, mid = scorer("low", 0.3, 0.5), scorer("cheap", 0.7, 0.95)
    assert registry.detect("x", Context(), (low, mid)) is mid and asked == ["cheap"]
    asked.clear()
    high = scorer("high", 0.9, 0.9)
    assert registry.detect("x", Context(), (high, mid)) is high and asked == ["cheap", "high"]


def test_detect_gives_the_same_answer_as_asking_every_scorer_in_order(corpus) -> None:
    """``ASK_FIRST`` and the ``max_score`` skips change what is asked, never the answer."""

    def slow(text: str, ctx: Context) -> str | None:
        for c in registry.COMPRESSORS:  # the first final score, else the highest (earliest on ties)
            if registry._score(c, text, ctx) >= registry.FINAL_SCORE:
                return c.name
        scored = [(registry._score(c, text, ctx), -i, c.name) for i, c in enumerate(registry.COMPRESSORS)]
        best = max(scored)
        return best[2] if best[0] > 0 else None

    files = sorted(f for f in (corpus / "outputs").rglob("*") if f.is_file() and f.suffix != ".jsonl")
    for f in files[1::3]:
        text = f.read_text(encoding="utf-8", errors="replace")
        for tool in (None, "WebFetch", "Read"):
            found = registry.detect(text, Context(tool_name=tool))
            assert (found.name if found else None) == slow(text, Context(tool_name=tool)), f.name


def test_a_count_from_the_caller_is_used_and_changes_nothing_else() -> None:
    lines = "\n".join(f"2024-01-01 12:00:{i % 60:02d} INFO worker-{i} processed item {i}" for i in range(300))
    ctx = Context(tool_name="bash", model="gpt-4o")
    own = compress(lines, ctx)
    given = compress(lines, ctx, tokens_before=tokens.count(lines, "gpt-4o").tokens)
    assert own == given and own.changed
    # the never-grow rule compares with the count given: a smaller one leaves the text as it is
    small = compress(lines, ctx, tokens_before=own.tokens_after)
    assert small.text == lines and not small.changed and small.tokens_before == own.tokens_after


def test_the_winners_prepared_state_reaches_its_compressor(monkeypatch) -> None:
    calls: list[str] = []

    class Parsing:
        name = "parsing"

        def score(self, text: str, ctx: Context) -> float:
            return self.prepare(text, ctx)[0]

        def prepare(self, text: str, ctx: Context) -> tuple[float, list[str] | None]:
            calls.append("parse")
            return (0.9, text.split()) if text.startswith("P") else (-1.0, None)

        def compress(self, text: str, ctx: Context) -> Result:
            return self.compress_prepared(text, ctx, self.prepare(text, ctx)[1] or [])

        def compress_prepared(self, text: str, ctx: Context, words: list[str]) -> Result:
            calls.append("compress")
            return Result(" ".join(words[: len(words) // 2]), ("parsing:halve",))

    monkeypatch.setattr(registry, "COMPRESSORS", (Parsing(), Idle()))
    out = registry.compress("P" + " word" * 100, Context())
    assert out.changed and calls == ["parse", "compress"]  # parsed once
    calls.clear()
    assert registry.compress("x" + " word" * 100, Context()).content_type == "idle" and calls == ["parse"]


def test_json_parses_once_per_call(monkeypatch) -> None:
    from ctxgate.engine import json as js

    parses: list[int] = []
    real = js.parse
    monkeypatch.setattr(js, "parse", lambda text: parses.append(1) or real(text))
    text = "[" + ",".join(f'{{"id": {i}, "name": "item {i}", "state": "open"}}' for i in range(60)) + "]"
    out = compress(text, Context())
    assert out.content_type == "json" and out.changed and len(parses) == 1


def test_the_code_cap_depends_on_the_tool() -> None:
    code = next(c for c in registry.COMPRESSORS if c.name == "code")
    assert registry.max_score(code, Context(tool_name="Read")) == 0.97
    assert registry.max_score(code, Context(tool_name="Bash")) == 0.9
    assert code.score('{\n  "a": [1,\n    2]\n}\n', Context(tool_name="Bash")) <= 0.9
