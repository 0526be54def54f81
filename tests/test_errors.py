from ctxgate import errors


def test_tree() -> None:
    assert issubclass(errors.UpstreamTimeout, errors.UpstreamError)
    assert issubclass(errors.UpstreamConnectError, errors.UpstreamError)
    for cls in (errors.ConfigError, errors.StoreError, errors.UpstreamError, errors.RequestRejected):
        assert issubclass(cls, errors.CtxgateError)


def test_request_rejected_carries_status() -> None:
    assert errors.RequestRejected("too big", status=413).status == 413
    assert errors.RequestRejected("bad").status == 400
