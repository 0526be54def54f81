from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ctxgate.server import create_app
from ctxgate.server.app import SETTINGS_ENV, create_app_from_env, open_ledger, settings_to_env
from ctxgate.settings import Settings
from ctxgate.store.ledger import MemoryLedger, SqliteLedger


def test_health(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok"}


def test_routes_are_wired(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        paths = set(c.get("/openapi.json").json()["paths"])
        assert c.get("/metrics").status_code == 200
    assert {"/health", "/readyz", "/v1/compress", "/stats", "/stats/insights", "/stats-history", "/sessions",
            "/pricing", "/metrics"} <= paths


def test_open_ledger_follows_settings(tmp_path: Path) -> None:
    assert isinstance(open_ledger(Settings(data_dir=tmp_path, ledger_store="memory")), MemoryLedger)
    led = open_ledger(Settings(data_dir=tmp_path))
    assert isinstance(led, SqliteLedger) and led.path == str(tmp_path / "ledger.sqlite3")


def test_settings_travel_to_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tmp_path, auth_token="tok-123", port=9999, level="lossless")
    raw = settings_to_env(settings)
    data = json.loads(raw)
    assert data["auth_token"] == "tok-123" and data["port"] == 9999
    monkeypatch.setenv(SETTINGS_ENV, raw)
    app = create_app_from_env()
    ctx = app.state.ctx
    assert ctx.settings == settings
    with TestClient(app) as c:
        assert c.get("/stats").status_code == 401


def test_shutdown_writes_queued_rows_and_totals_survive(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as c:
        for _ in range(3):
            c.post("/v1/compress", json={"messages": [{"role": "user", "content": "hi"}]})
    with TestClient(create_app(settings)) as c:
        assert c.get("/stats-history").json()["lifetime"]["requests"] == 3
        assert c.get("/stats").json()["summary"]["api_requests"] == 3
