"""A throwaway PostgreSQL database per test, on the server named by CTXGATE_TEST_POSTGRES_DSN."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

DSN_ENV = "CTXGATE_TEST_POSTGRES_DSN"


def server_dsn() -> str:
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        pytest.skip(f"{DSN_ENV} not set (scripts/test.sh starts a PostgreSQL server and sets it)")
    return dsn


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create a database with a random name, yield its DSN, drop it afterwards."""
    base = server_dsn()
    name = "ctxgate_t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(base)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
