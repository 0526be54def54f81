"""/openapi.json is published and every documented operation survives arbitrary input without a 5xx."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxgate.server import create_app
from ctxgate.settings import Settings

_DATA = Path(tempfile.mkdtemp(prefix="ctxgate-openapi-"))
SETTINGS = Settings(data_dir=_DATA, ledger_store="memory", decision_store="memory")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(SETTINGS))

#: text including lone surrogates: valid in JSON ("\ud800"), not in UTF-8
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "tool", "system", "x"])},
    optional={"content": json_values, "tool_calls": json_values, "type": st.text(max_size=12),
              "tool_call_id": st.text(max_size=8)},
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"messages": st.lists(message, max_size=5)},
                          optional={"model": json_values, "config": json_values, "system": json_values,
                                    "tools": json_values, "protect_recent": json_values,
                                    "min_tokens_to_compress": json_values, "tokenBudget": json_values}),
)


@pytest.fixture(scope="module")
def c() -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS)) as client:
        yield client


def test_schema_is_published(c: TestClient) -> None:
    doc = c.get("/openapi.json").json()
    body = doc["paths"]["/v1/compress"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "messages" in body["required"] and "$defs" not in json.dumps(body)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.text[:300])


@given(body=bodies)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_compress_handles_arbitrary_json(c: TestClient, body: Any) -> None:
    r = c.post("/v1/compress", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 400, 422), r.text[:300]
    j = r.json()
    if r.status_code == 200:
        assert j["messages"] == body["messages"] or not j["compression_skipped"]
        assert 0.0 <= j["compression_ratio"] <= 1.0
    else:
        assert j["error"]["message"]


@given(raw=st.binary(max_size=200))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_compress_handles_arbitrary_bytes(c: TestClient, raw: bytes) -> None:
    r = c.post("/v1/compress", content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400, 422)
