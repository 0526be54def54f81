"""Against the real ``ctxgate serve`` over HTTP: restart persistence, several workers on one
SQLite file, the PostgreSQL ledger and model_pricing (slow: real processes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.conftest import ROOT
from tests.server.live import LiveServer, ctxgate_command, metric
from tests.store.pgdb import fresh_database

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "user", "content": "run the tests"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "\n".join(f"PASSED tests/test_{i}.py" for i in range(80))},
]


def compress(url: str, user: str, model: str = "gpt-4o") -> dict:  # type: ignore[type-arg]
    # a fresh connection per call, so that calls spread over the workers
    r = httpx.post(url + "/v1/compress", json={"messages": MESSAGES, "model": model},
                   headers={"x-maas-username": user, "connection": "close"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def served_by_pid(prom_dir: Path) -> dict[str, float]:
    """headroom_requests_total per worker process, from the Prometheus multiprocess files."""
    out = {}
    for f in prom_dir.glob("counter_*.db"):
        values = MmapedDict(str(f))
        try:
            n = sum(v for key, v, *_ in values.read_all_values() if key.startswith('["headroom_requests"'))
        finally:
            values.close()
        if n:
            out[f.stem] = n
    return out


def test_totals_survive_a_restart(tmp_path: Path) -> None:
    with LiveServer(tmp_path) as srv:
        ids = [compress(srv.url, "alice")["request_id"] for _ in range(4)]
        first = httpx.get(srv.url + "/stats-history").json()["lifetime"]
        assert first["requests"] == 4
    with LiveServer(tmp_path) as srv:
        life = httpx.get(srv.url + "/stats-history").json()["lifetime"]
        stats = httpx.get(srv.url + "/stats").json()
        compress(srv.url, "bob")
        after = httpx.get(srv.url + "/stats").json()
    assert life == first
    assert stats["summary"]["api_requests"] == 4
    assert [r["request_id"] for r in stats["recent_requests"]] == ids
    assert after["summary"]["api_requests"] == 5 and after["recent_requests"][-1]["tags"] == {"user-id": "bob"}


def test_workers_share_one_sqlite_file_and_one_counter(tmp_path: Path) -> None:
    n = 48
    with LiveServer(tmp_path, workers=3) as srv:
        before = metric(httpx.get(srv.url + "/metrics").text, "headroom_requests_total")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: compress(srv.url, f"user{i % 4}"), range(n)))
        # any worker answers /metrics with the sum over all workers
        counts = {metric(httpx.get(srv.url + "/metrics", headers={"connection": "close"}).text,
                         "headroom_requests_total") for _ in range(6)}
        assert counts == {before + n}
        one = compress(srv.url, "solo")
        assert metric(httpx.get(srv.url + "/metrics").text, "headroom_requests_total") == before + n + 1
        results.append(one)
        served = served_by_pid(tmp_path / "prometheus")
    assert len(served) >= 2 and sum(served.values()) == n + 1  # several workers really served the calls
    ids = {r["request_id"] for r in results}
    assert len(ids) == n + 1
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        stored = {row[0] for row in db.execute("SELECT id FROM ledger")}
        lifetime = db.execute("SELECT requests FROM lifetime").fetchone()[0]
    assert stored == ids and lifetime == n + 1


@pytest.mark.postgres
def test_postgres_ledger_and_model_pricing(tmp_path: Path) -> None:
    with fresh_database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE model_pricing (model TEXT PRIMARY KEY, provider TEXT,"
                         " input_cost_per_mtok NUMERIC, output_cost_per_mtok NUMERIC,"
                         " cache_write_cost_per_mtok NUMERIC, cache_read_cost_per_mtok NUMERIC)")
            conn.execute("INSERT INTO model_pricing VALUES ('acme-large', 'acme', 4.2, 8.4, 4.2, 0.42)")
        env = {"CTXGATE_LEDGER_STORE": "postgres", "CTXGATE_POSTGRES_DSN": dsn,
               "CTXGATE_PRICING_SOURCE": "postgres", "CTXGATE_PRICING_REFRESH_S": "5"}
        with LiveServer(tmp_path, workers=2, env=env) as srv:
            for _ in range(50):
                lookups = httpx.get(srv.url + "/pricing", params={"model": "acme-large-2025-01-01"}).json()
                if lookups["lookups"]["acme-large-2025-01-01"]["input"] == 4.2:
                    break
            assert lookups["prices"]["acme-large"]["source"] == "postgres"
            assert lookups["lookups"]["acme-large-2025-01-01"]["rule"] == "normalized"
            results = [compress(srv.url, "carol", model="acme-large") for _ in range(6)]
            assert {r["cost_per_mtok"] for r in results} == {4.2}
            stats = httpx.get(srv.url + "/stats").json()
            assert stats["summary"]["api_requests"] >= 1
        with psycopg.connect(dsn) as conn:
            stored = {r[0] for r in conn.execute("SELECT id FROM ctxgate_ledger")}
            users = {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM ctxgate_ledger")}
        assert stored == {r["request_id"] for r in results} and users == {"carol"}


def test_readme_curl_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    curl = next(b for b in blocks if "/v1/compress" in b)
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    with LiveServer(tmp_path) as srv:
        out = subprocess.run(["bash", "-c", curl.replace("http://127.0.0.1:8787", srv.url)],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        recent = httpx.get(srv.url + "/stats").json()["recent_requests"]
    j = json.loads(out)
    assert j["messages"] == [{"role": "user", "content": "hi"}] and j["tokens_before"] > 0
    assert recent[-1]["tags"] == {"user-id": "alice"} and recent[-1]["model"] == "gpt-4o"


def test_refuses_to_serve_a_public_address_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXGATE_")}
    done = subprocess.run([*ctxgate_command(), "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert "CTXGATE_AUTH_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_contract_over_http(tmp_path: Path) -> None:
    token = "live-token-0123456789"
    auth = {"authorization": f"Bearer {token}"}
    env = {"CTXGATE_AUTH_TOKEN": token, "CTXGATE_MAX_BODY_BYTES": "65536", "CTXGATE_TIME_BUDGET_MS": "2000"}
    log = "\n".join(f"2025-01-01 12:00:{i % 60:02d} INFO worker-{i % 3} processed batch {i} ok" for i in range(300))
    messages = [*MESSAGES[:2], {"role": "tool", "tool_call_id": "call_1", "content": log}]
    with LiveServer(tmp_path, env=env) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.get("/health").json() == {"status": "ok"} and c.get("/readyz").json()["status"] == "ready"
        assert c.post("/v1/compress", json={"messages": messages}).status_code == 401
        assert c.get("/stats").status_code == 401
        j = c.post("/v1/compress", json={"messages": messages, "model": "gpt-4o"},
                   headers={**auth, "x-headroom-user-id": "dave"}).json()
        assert set(j) >= {"messages", "tokens_before", "tokens_after", "tokens_saved", "compression_ratio",
                          "transforms_applied", "ccr_hashes", "compression_skipped", "request_id"}
        assert j["tokens_saved"] == j["tokens_before"] - j["tokens_after"]
        assert 0 <= j["compression_ratio"] <= 1 and j["messages"][:2] == messages[:2]
        if not j["compression_skipped"]:
            assert j["tokens_after"] < j["tokens_before"] and j["transforms_applied"]
        big = [{"role": "user", "content": "x" * 70_000}]
        tl = c.post("/v1/compress", json={"messages": big}, headers=auth).json()
        assert tl["skip_reason"] == "too_large" and tl["messages"] == big
        bp = c.post("/v1/compress", json={"messages": messages}, headers={**auth, "x-ctxgate-bypass": "1"}).json()
        assert bp["skip_reason"] == "bypass" and bp["messages"] == messages
        empty = c.post("/v1/compress", json={"messages": []}, headers=auth).json()
        assert empty["messages"] == [] and empty["tokens_before"] == empty["tokens_after"] == 0
        bad = c.post("/v1/compress", content=b"{", headers={**auth, "content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request"
        assert c.post("/v1/compress", json={"model": "x"}, headers=auth).status_code == 422
        stats = c.get("/stats", headers=auth).json()
        users = [r["tags"]["user-id"] for r in stats["recent_requests"]]
        assert users == ["dave", "anonymous", "anonymous", "anonymous"]
        assert stats["summary"]["uncompressed_requests"].get("too_large") == 1


def test_time_budget_fails_open_over_http(tmp_path: Path) -> None:
    content = "\n".join(f'{{"id": {i}, "name": "item-{i}", "tags": ["a", "b"]}}' for i in range(40_000))
    messages = [*MESSAGES[:2], {"role": "tool", "tool_call_id": "call_1", "content": content}]
    with LiveServer(tmp_path, env={"CTXGATE_TIME_BUDGET_MS": "1"}) as srv:
        r = httpx.post(srv.url + "/v1/compress", json={"messages": messages, "model": "gpt-4o"}, timeout=60)
    j = r.json()
    assert r.status_code == 200 and j["messages"] == messages
    assert j["compression_skipped"] and j["skip_reason"] == "time_budget" and j["error"]
