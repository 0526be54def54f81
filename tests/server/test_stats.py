"""Read endpoints, with headroom-gateway's field names, types and orderings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ctxgate.server import create_app
from ctxgate.server.state import AppState
from ctxgate.server.stats import cost_block, parse_time
from ctxgate.settings import Settings
from ctxgate.store.base import LedgerRow
from ctxgate.store.ledger import new_request_id


def make_row(**kw: Any) -> LedgerRow:
    base: dict[str, Any] = dict(request_id=new_request_id(), timestamp=time.time(), user="alice",
                                model="claude-sonnet-4-5", provider="anthropic", mode="service",
                                tokens_before=10_000, tokens_after=4_000, estimator="claude-o200k-x1.19",
                                cost_per_mtok=3.0, transforms=["json:table", "json:minify"])
    base.update(kw)
    return LedgerRow(**base)


@pytest.fixture
def c(tmp_path: Path) -> Any:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        yield client


def record(c: TestClient, *rows: LedgerRow) -> None:
    ctx: AppState = c.app.state.ctx  # type: ignore[attr-defined]
    for r in rows:
        ctx.recorder.record(r)


def test_stats_shape_and_numbers(c: TestClient) -> None:
    record(c, make_row(), make_row(user="bob", model="gpt-4o", provider="openai", tokens_before=1_000,
                                   tokens_after=1_000, transforms=[], skip_reason="no_candidates"),
           make_row(tokens_before=2_000, tokens_after=200, cost_per_mtok=15.0, model="claude-opus-4-1"))
    s = c.get("/stats").json()
    summary = s["summary"]
    assert list(summary)[:4] == ["api_requests", "compression", "uncompressed_requests", "cost"]
    assert summary["api_requests"] == 3
    comp = summary["compression"]
    assert comp == {"requests_compressed": 2, "avg_compression_pct": 75.0, "total_tokens_removed": 7_800,
                    "best_compression_pct": 90.0, "best_detail": "2000 → 200 tokens (claude-opus-4-1)"}
    assert summary["uncompressed_requests"] == {"no_candidates": 1}
    cost = summary["cost"]
    assert cost["total_saved_usd"] == round(6_000 * 3 / 1e6 + 1_800 * 15 / 1e6, 4)
    assert round(cost["without_headroom_usd"] - cost["with_headroom_usd"], 4) == cost["total_saved_usd"]
    recent = s["recent_requests"]
    assert len(recent) == 3 and recent[-1]["model"] == "claude-opus-4-1"
    first = recent[0]
    for key in ("request_id", "timestamp", "provider", "model", "input_tokens_original", "input_tokens_optimized",
                "tokens_saved", "savings_percent", "cost_saved_usd", "cost_per_mtok", "tags", "total_latency_ms"):
        assert key in first, key
    assert first["tags"] == {"user-id": "alice"} and first["savings_percent"] == 60.0
    assert first["cost_saved_usd"] == 0.018 and first["cost_per_mtok"] == 3.0


def test_recent_is_capped_at_100_oldest_first(c: TestClient) -> None:
    now = time.time()
    record(c, *[make_row(timestamp=now - 200 + i, tokens_before=100 + i) for i in range(130)])
    recent = c.get("/stats").json()["recent_requests"]
    assert len(recent) == 100
    assert [r["input_tokens_original"] for r in recent] == list(range(130, 230))


@pytest.mark.parametrize(("with_", "saved"), [(0.0, 0.0), (1.23456, 0.00004), (0.1, 0.2), (12.34567, 0.98765)])
def test_cost_block_identity(with_: float, saved: float) -> None:
    b = cost_block(with_, saved)
    assert abs(b["without_headroom_usd"] - b["with_headroom_usd"] - b["total_saved_usd"]) < 0.005


def test_history_holds_only_compressed_calls_newest_first(c: TestClient) -> None:
    now = time.time()
    record(c, make_row(timestamp=now - 3), make_row(timestamp=now - 2, tokens_after=10_000, transforms=[]),
           make_row(timestamp=now - 1, tokens_after=5_000))
    h = c.get("/stats-history").json()
    assert h["lifetime"]["requests"] == 3
    assert h["lifetime"]["tokens_saved"] == 11_000
    assert h["lifetime"]["compression_savings_usd"] == round(11_000 * 3 / 1e6, 5)
    assert [x["total_tokens_saved"] for x in h["history"]] == [5_000, 6_000]
    assert set(h["history"][0]) >= {"timestamp", "model", "total_tokens_saved", "compression_savings_usd",
                                    "cost_per_mtok"}


def test_insights_breakdowns_and_window(c: TestClient) -> None:
    now = time.time()
    record(c, make_row(timestamp=now - 2 * 86400, user="old"), make_row(user="bob", timestamp=now - 10),
           make_row(user="alice", tokens_before=20_000, tokens_after=1_000, model="gpt-4o", provider="openai",
                    transforms=["logs:dedupe"], timestamp=now - 5))
    all_ = c.get("/stats/insights").json()
    assert all_["total_requests"] == 3
    assert all_["engines"] == {"json": 2, "logs": 1}
    assert all_["transforms_detail"] == {"json:minify": 2, "json:table": 2, "logs:dedupe": 1}
    assert [m["model"] for m in all_["by_model"]] == ["gpt-4o", "claude-sonnet-4-5"]
    assert set(all_["by_user"][0]) == {"user", "requests", "tokens_saved", "total_input", "avg_compression_pct",
                                       "cost_saved_usd"}
    assert [u["user"] for u in all_["by_user"]] == ["alice", "bob", "old"]
    hourly = all_["hourly"]
    assert len(hourly) == 24 and hourly[0]["hour"] > hourly[-1]["hour"] and hourly[0]["requests"] >= 1
    day = c.get("/stats/insights", params={"since": "24h"}).json()
    assert day["total_requests"] == 2 and "old" not in [u["user"] for u in day["by_user"]]
    early = c.get("/stats/insights", params={"until": str(now - 86400)}).json()
    assert [u["user"] for u in early["by_user"]] == ["old"]


@pytest.mark.parametrize("params", [{"since": "yesterday"}, {"since": "10", "until": "5"}])
def test_bad_windows_are_400(c: TestClient, params: dict[str, str]) -> None:
    r = c.get("/stats/insights", params=params)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request"


def test_parse_time_forms() -> None:
    assert parse_time("90m", "since", 10_000.0) == 10_000 - 5400
    assert parse_time("1700000000", "since", 0) == 1_700_000_000
    assert parse_time("2023-11-14T22:13:20Z", "since", 0) == 1_700_000_000
    assert parse_time("2023-11-14T22:13:20", "since", 0) == 1_700_000_000
    assert parse_time(None, "since", 0) is None


def test_pricing_endpoint(c: TestClient) -> None:
    record(c, make_row(model="anthropic/claude-opus-4-5-20251101"), make_row(model="mystery-model"))
    p = c.get("/pricing", params={"model": "gpt-4o-2024-08-06"}).json()
    assert p["models"]["claude-sonnet-4-5"] == 3.0 and p["fallback_cost_per_mtok"] == 3.0
    assert all(isinstance(v, float) for v in p["models"].values())
    assert p["prices"]["claude-sonnet-4-5"]["cache_read"] == 0.3
    assert p["lookups"]["gpt-4o-2024-08-06"]["rule"] == "normalized"
    assert p["lookups"]["anthropic/claude-opus-4-5-20251101"]["matched"] == "claude-opus-4-5"
    assert p["lookups"]["mystery-model"]["rule"] == "fallback"


def test_recent_row_price_is_the_price_used(c: TestClient) -> None:
    r = c.post("/v1/compress", json={"messages": [{"role": "user", "content": "hi"}], "model": "claude-opus-4-1"})
    assert r.json()["cost_per_mtok"] == 15.0
    assert c.get("/stats").json()["recent_requests"][-1]["cost_per_mtok"] == 15.0


def test_sessions_lists_active_sessions(c: TestClient) -> None:
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    c.post("/v1/compress", json={"messages": msgs}, headers={"x-ctxgate-session-id": "abc-1"})
    record(c, make_row(session="abc-1"))
    s = c.get("/sessions").json()
    assert set(s) >= {"active_sessions", "max_sessions", "session_ttl_seconds", "sessions"}
    assert s["active_sessions"] == len(s["sessions"]) == 1
    one = s["sessions"][0]
    assert one["session_id"] == "abc-1" and one["user_id"] == "anonymous"
    assert 0 <= one["last_active_seconds_ago"] <= 60
    assert one["tokens_saved"] == 6_000 and one["requests"] == 1
    assert c.get("/sessions", params={"within_s": 1}).json()["active_sessions"] in (0, 1)


def test_reads_answer_503_when_the_ledger_is_down(c: TestClient) -> None:
    import anyio

    anyio.run(c.app.state.ctx.ledger.aclose)  # type: ignore[attr-defined]
    for path in ("/stats", "/stats/insights", "/stats-history"):
        r = c.get(path)
        assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable", path


def test_parse_time_rejects_out_of_range_values() -> None:
    from ctxgate.errors import RequestRejected

    for bad in ("6.77679762335328e+16", "-5", "inf", "nan", "1e400"):
        with pytest.raises(RequestRejected) as err:
            parse_time(bad, "until", 0)
        assert err.value.status == 400
    assert parse_time("999999h", "since", 100.0) == 0.0
