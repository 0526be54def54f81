from __future__ import annotations

from pathlib import Path

import anyio
from fastapi.testclient import TestClient

from ctxgate.server import create_app
from ctxgate.settings import Settings


def test_health_is_ok(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        r = c.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_reports_the_db_and_uptime(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        j = c.get("/readyz").json()
    assert j["status"] == "ready"
    assert j["db"] == f"sqlite:{tmp_path / 'ledger.sqlite3'}"
    assert isinstance(j["uptime_seconds"], int) and j["uptime_seconds"] >= 0


def test_readyz_names_the_failing_component(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        anyio.run(c.app.state.ctx.ledger.aclose)  # type: ignore[attr-defined]
        r = c.get("/readyz")
        assert c.get("/health").status_code == 200  # liveness does not depend on the stores
    assert r.status_code == 503
    j = r.json()
    assert j["status"] == "not_ready" and j["component"] == "ledger" and "ledger unavailable" in j["error"]


def test_readyz_never_shows_a_dsn(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, ledger_store="postgres",
                        postgres_dsn="postgresql://admin:s3cret@127.0.0.1:1/x?connect_timeout=1")
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
    assert r.status_code == 503 and "s3cret" not in r.text and "admin" not in r.text
