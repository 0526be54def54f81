from __future__ import annotations

from ctxgate.engine import Context, Result, compress, registry


class Upper:
    name = "upper"

    def score(self, text: str, ctx: Context) -> float:
        return 1.0 if text.startswith("U") else -1.0

    def compress(self, text: str, ctx: Context) -> Result:
        if "boom" in text:
            raise ValueError("parse failed")
        return Result(text[: len(text) // 2], ("upper:halve",))


def test_detect_picks_highest_score() -> None:
    assert registry.detect("Uabc", Context(), (Upper(),)).name == "upper"
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
