"""The Redis server named by CTXGATE_TEST_REDIS_URL (scripts/test.sh starts one), or a skip."""

from __future__ import annotations

import os
import uuid

import pytest

URL_ENV = "CTXGATE_TEST_REDIS_URL"


def redis_url() -> str:
    url = os.environ.get(URL_ENV)
    if not url:
        pytest.skip(f"{URL_ENV} not set (scripts/test.sh starts a Redis server and sets it)")
    return url


def fresh_prefix() -> str:
    """A key prefix no other test uses, so tests share one server without seeing each other."""
    return f"ctxgate-test:{uuid.uuid4().hex[:12]}:"
