from ctxgate.engine._api import Original, Result, retrieval_key


def test_retrieval_key_is_deterministic() -> None:
    assert retrieval_key("abc") == retrieval_key("abc") != retrieval_key("abd")
    assert retrieval_key("abc").startswith("ctx_")


def test_result_lossy_iff_originals() -> None:
    assert not Result("x").lossy
    assert Result("x", originals=(Original("k", "xyz"),)).lossy
