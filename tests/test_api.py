from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import ctxgate
from ctxgate.api import detect_format
from ctxgate.settings import Settings
from tests.factories import anthropic_messages, big_json, big_log, openai_chat_messages


def test_empty_messages() -> None:
    r = ctxgate.compress([])
    assert r.messages == [] and r.tokens_before == r.tokens_after == r.tokens_saved == 0
    assert r.compression_ratio == 1.0


def test_passes_content_through_and_counts() -> None:
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    r = ctxgate.compress(msgs, model="gpt-4o")
    assert r.messages == msgs
    assert r.tokens_before > 0 and 0.0 <= r.compression_ratio <= 1.0


def test_rejects_non_list() -> None:
    with pytest.raises(TypeError):
        ctxgate.compress({"role": "user"})  # type: ignore[arg-type]


# --- the conversation layer through the library API ------------------------------

T1 = [("user", "go"), ("call", "t1", "Bash", {"command": "x"}), ("result", "t1", big_log())]
T2 = T1 + [("call", "t2", "Bash", {"command": "y"}), ("result", "t2", big_json())]


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, time_budget_ms=60_000)


def test_detect_format() -> None:
    assert detect_format(anthropic_messages(T1)) == "anthropic"
    assert detect_format(openai_chat_messages(T1)) == "openai_chat"
    assert detect_format([{"role": "user", "content": "hi"}, "junk"]) == "openai_chat"  # type: ignore[list-item]


@pytest.mark.parametrize("build", [anthropic_messages, openai_chat_messages])
def test_compresses_and_replays_the_same_bytes_across_calls(tmp_path: Path, build: object) -> None:
    first = ctxgate.compress(build(T1), model="claude-sonnet-4-5", session="s1", settings=_settings(tmp_path))  # type: ignore[operator]
    assert first.tokens_saved > 0 and first.skip_reason is None and first.session_id == "s1"
    assert first.counts == {"compressed": 1}
    second = ctxgate.compress(build(T2), model="claude-sonnet-4-5", session="s1", settings=_settings(tmp_path))  # type: ignore[operator]
    assert second.messages[: len(first.messages)] == first.messages  # the old turn comes back identical
    assert second.counts == {"replayed": 1, "compressed": 1}
    assert (tmp_path / "decisions.sqlite3").exists()


def test_tenants_and_sessions_are_separate(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    a = ctxgate.compress(anthropic_messages(T1), session="x", tenant="a", settings=s)
    b = ctxgate.compress(anthropic_messages(T1), session="x", tenant="b", settings=s)
    assert a.counts == b.counts == {"compressed": 1}  # b did not replay a's decision
    fp = ctxgate.compress(anthropic_messages(T1), tenant="a", settings=s)
    assert fp.session_id.startswith("fp-")


def test_options(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    off = ctxgate.compress(anthropic_messages(T1), level="off", settings=s)
    assert off.skip_reason == "level_off" and off.tokens_saved == 0
    kept = ctxgate.compress(anthropic_messages(T1), exclude_tools=["Bash"], session="k", settings=s)
    assert kept.counts == {"protected": 1} and kept.messages == anthropic_messages(T1)
    with pytest.raises(TypeError, match="unknown options: colour"):
        ctxgate.compress([], colour="red")


async def test_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    r = ctxgate.compress(anthropic_messages(T1), settings=_settings(tmp_path))
    assert r.tokens_saved > 0
    await asyncio.sleep(0)


def test_unencodable_text_is_escaped(tmp_path: Path) -> None:
    msgs = anthropic_messages([("user", "a\ud800b"), ("call", "t", "Bash", {}), ("result", "t", "x\ud800")])
    r = ctxgate.compress(msgs, settings=_settings(tmp_path))
    assert r.messages == msgs and r.skip_reason == "no_change"
