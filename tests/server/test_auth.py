from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from ctxgate.errors import ConfigError
from ctxgate.server import create_app
from ctxgate.server.auth import check_config, strip_credentials
from ctxgate.settings import Settings

TOKEN = "t0ken-with-enough-entropy"


@pytest.fixture
def c(tmp_path: Path):  # type: ignore[no-untyped-def]
    with TestClient(create_app(Settings(data_dir=tmp_path, auth_token=TOKEN))) as client:
        yield client


@pytest.mark.parametrize("path", ["/stats", "/stats/insights", "/stats-history", "/sessions", "/pricing",
                                  "/metrics", "/openapi.json"])
def test_reads_need_the_token(c: TestClient, path: str) -> None:
    r = c.get(path)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
    assert c.get(path, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_compress_needs_the_token(c: TestClient) -> None:
    body = {"messages": []}
    assert c.post("/v1/compress", json=body).status_code == 401
    assert c.post("/v1/compress", json=body, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/v1/compress", json=body, headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
    assert c.post("/v1/compress", json=body, headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    # where Authorization carries the provider's key (proxy mode), the token travels in its own header
    assert c.post("/v1/compress", json=body, headers={"authorization": "Bearer sk-provider",
                                                      "x-ctxgate-token": TOKEN}).status_code == 200


def test_health_and_readyz_stay_open(c: TestClient) -> None:
    assert c.get("/health").status_code == 200
    assert c.get("/readyz").status_code == 200


def test_no_token_means_no_auth_on_loopback(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        assert c.get("/stats").status_code == 200


def test_refuses_an_open_server_on_a_public_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CTXGATE_AUTH_TOKEN"):
        create_app(Settings(data_dir=tmp_path, host="0.0.0.0"))
    check_config(Settings(host="0.0.0.0", auth_token=TOKEN))
    check_config(Settings(host="0.0.0.0", allow_unauthenticated=True))
    check_config(Settings(host="127.0.0.2"))


def test_strip_credentials() -> None:
    tok = TOKEN.encode()
    headers = [(b"authorization", b"Bearer sk-provider"), (b"x-ctxgate-token", tok), (b"x-api-key", b"k")]
    assert strip_credentials(headers, tok) == [(b"authorization", b"Bearer sk-provider"), (b"x-api-key", b"k")]
    assert strip_credentials([(b"authorization", b"Bearer  " + tok + b" ")], tok) == []
    assert strip_credentials([(b"authorization", b"Bearer nope"), (b"x-ctxgate-token", b"nope")], tok) is None
    assert strip_credentials([], tok) is None


def test_routes_never_see_the_token(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, auth_token=TOKEN))
    echo = APIRouter()

    @echo.get("/echo-headers")
    async def headers(request: Request) -> dict[str, str]:
        return dict(request.headers)

    app.include_router(echo)
    with TestClient(app) as c:
        seen = c.get("/echo-headers", headers={"authorization": f"Bearer {TOKEN}"}).json()
        assert "authorization" not in seen and TOKEN not in str(seen)
        seen = c.get("/echo-headers", headers={"authorization": "Bearer sk-provider", "x-ctxgate-token": TOKEN}).json()
        assert seen["authorization"] == "Bearer sk-provider" and "x-ctxgate-token" not in seen
