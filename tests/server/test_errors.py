"""Every error path of the service routes answers in the one pinned shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from ctxgate.server import create_app
from ctxgate.server.errors import ERROR_TYPES, error_body
from ctxgate.settings import Settings


def assert_shape(r: Any, status: int) -> None:
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) >= {"type", "message", "status"}
    assert err["status"] == status and err["type"] == ERROR_TYPES[status]
    assert isinstance(err["message"], str) and err["message"]


@pytest.fixture
def c(tmp_path: Path):  # type: ignore[no-untyped-def]
    app = create_app(Settings(data_dir=tmp_path))
    boom = APIRouter()

    @boom.get("/boom")
    async def explode() -> None:
        raise RuntimeError("secret internals")

    app.include_router(boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_bad_json_400(c: TestClient) -> None:
    assert_shape(c.post("/v1/compress", content=b"{", headers={"content-type": "application/json"}), 400)


def test_missing_messages_422(c: TestClient) -> None:
    assert_shape(c.post("/v1/compress", json={}), 422)


def test_query_validation_422(c: TestClient) -> None:
    assert_shape(c.get("/sessions", params={"within_s": "-5"}), 422)


def test_not_found_404(c: TestClient) -> None:
    assert_shape(c.get("/no/such/path"), 404)


def test_wrong_method_405(c: TestClient) -> None:
    assert_shape(c.post("/stats"), 405)
    r = c.put("/v1/compress", json={"messages": []})  # never forwarded by the proxy catch-all
    assert_shape(r, 405)
    assert r.headers["allow"] == "POST"


def test_internal_error_500_hides_details(c: TestClient) -> None:
    r = c.get("/boom")
    assert_shape(r, 500)
    assert "secret" not in r.text


def test_unauthorized_401(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, auth_token="x" * 20))) as c:
        assert_shape(c.get("/stats"), 401)


def test_error_body() -> None:
    assert error_body(503, "down") == {"error": {"type": "unavailable", "message": "down", "status": 503}}
