"""Run the app under uvicorn, with one or several worker processes.

With ``workers > 1`` every worker builds its own app through the factory import string
``ctxgate.server.app:create_app_from_env`` and shares the stores (one SQLite file in WAL
mode, or PostgreSQL). Prometheus values go to files under ``<data_dir>/prometheus``
(emptied at start) so that ``/metrics`` sums every worker.
"""

from __future__ import annotations

import os
import shutil
import time

import uvicorn

from ctxgate.errors import ConfigError
from ctxgate.server.auth import check_config
from ctxgate.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def run(settings: Settings) -> None:
    try:
        check_config(settings)
    except ConfigError as exc:
        raise SystemExit(f"ctxgate: {exc}") from exc
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["CTXGATE_STARTED_AT"] = repr(time.time())
    if settings.workers > 1:
        prom = settings.data_dir / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(prom.resolve())
        from ctxgate.server.app import SETTINGS_ENV, settings_to_env

        os.environ[SETTINGS_ENV] = settings_to_env(settings)
        uvicorn.run(
            "ctxgate.server.app:create_app_from_env", factory=True, workers=settings.workers,
            host=settings.host, port=settings.port, log_level=settings.log_level,
        )
        return
    from ctxgate.server.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
