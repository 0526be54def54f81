"""Run the app under uvicorn."""

from __future__ import annotations

import uvicorn

from ctxgate.server.app import create_app
from ctxgate.settings import Settings


def run(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
