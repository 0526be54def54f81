from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ctxgate.errors import ConfigError
from ctxgate.server import create_app
from ctxgate.server.auth import check_config, presented_tokens
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


def test_presented_tokens() -> None:
    headers = [(b"authorization", b"Bearer  abc "), (b"x-ctxgate-token", b"def"), (b"cookie", b"x")]
    assert presented_tokens(headers) == [b"abc", b"def"]
