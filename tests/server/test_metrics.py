"""/metrics: ctxgate_* counters and the legacy headroom_* series in headroom-gateway's shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ctxgate.server import create_app
from ctxgate.server.metrics import reason_label
from ctxgate.settings import Settings

LEGACY_COUNTERS = ("headroom_requests_total", "headroom_compressed_total", "headroom_tokens_before_total",
                   "headroom_tokens_after_total", "headroom_tokens_saved_total", "headroom_errors_total")


def samples(text: str) -> dict[str, float]:
    """Unlabeled samples, parsed the way headroom-gateway's dashboard does."""
    out = {}
    for line in text.strip().split("\n"):
        if line and not line.startswith("#"):
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = float(parts[1])
    return out


@pytest.fixture
def c(tmp_path: Path):  # type: ignore[no-untyped-def]
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        yield client


def test_legacy_series_shape(c: TestClient) -> None:
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    body = r.text
    for name in LEGACY_COUNTERS:
        assert f"# TYPE {name} counter" in body
        assert re.search(rf"^{name} [0-9.e+]+$", body, re.M), name  # one unlabeled sample
    assert "# TYPE headroom_uptime_seconds gauge" in body
    assert samples(body)["headroom_uptime_seconds"] >= 0
    assert "_created" not in body


def test_each_call_adds_one(c: TestClient) -> None:
    msgs = [{"role": "user", "content": "hello " * 50}]
    before = samples(c.get("/metrics").text)
    j = c.post("/v1/compress", json={"messages": msgs, "model": "metrics-test"},
               headers={"x-maas-username": "secret-user-42"}).json()
    after_text = c.get("/metrics").text
    after = samples(after_text)
    assert after["headroom_requests_total"] == before.get("headroom_requests_total", 0) + 1
    assert after["headroom_tokens_before_total"] == before.get("headroom_tokens_before_total", 0) + j["tokens_before"]
    assert after["headroom_tokens_saved_total"] - before.get("headroom_tokens_saved_total", 0) == j["tokens_saved"]
    assert "secret-user-42" not in after_text  # never a user id in a label
    assert 'ctxgate_requests_total{mode="service",provider="openai"}' in after_text
    assert re.search(r'ctxgate_skipped_requests_total\{mode="service",reason="[a-z0-9_]+"\}', after_text)
    assert 'ctxgate_compression_duration_seconds_bucket{le="0.1",mode="service"}' in after_text


def test_ctxgate_names_follow_prometheus_rules(c: TestClient) -> None:
    c.post("/v1/compress", json={"messages": []})
    names = set(re.findall(r"^# TYPE (\S+) (\w+)$", c.get("/metrics").text, re.M))
    for name, kind in names:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name)
        if name.startswith("ctxgate_") and kind == "counter":
            assert name.endswith("_total")
    assert ("ctxgate_compression_duration_seconds", "histogram") in names


@pytest.mark.parametrize(("reason", "label"), [
    (None, "no_savings"), ("time_budget", "time_budget"), ("JSON: parse failed!", "json_parse_failed"),
    ("x" * 100, "x" * 40), ("???", "unknown"),
])
def test_reason_labels_are_bounded(reason: str | None, label: str) -> None:
    assert reason_label(reason) == label
