"""The app factory: wires settings, stores and routers. Keep it thin."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from ctxgate import __version__
from ctxgate.settings import Settings


def create_app(settings: Settings, *, upstream_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    app = FastAPI(title="ctxgate", version=__version__)
    app.state.settings = settings
    app.state.upstream_transport = upstream_transport

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
