from fastapi.testclient import TestClient

from ctxgate.server import create_app
from ctxgate.settings import Settings


def test_health(tmp_path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok"}
