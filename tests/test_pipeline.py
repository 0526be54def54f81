import pytest

from ctxgate.pipeline import Pipeline, RequestInfo
from ctxgate.settings import Settings


class _Null:
    async def get_many(self, keys):
        return {}

    async def put_many(self, decisions):
        return None

    async def put(self, tenant, key, text):
        return None

    async def get(self, tenant, key):
        return None

    async def aclose(self):
        return None


@pytest.mark.asyncio
async def test_passthrough_keeps_bytes() -> None:
    raw = b'{"model":"x","messages":[]}'
    p = Pipeline(Settings(), _Null(), _Null())
    r = await p.run(raw, RequestInfo(fmt="anthropic"))
    assert r.body == raw and not r.changed
