from ctxgate.store.base import LedgerRow


def _row(**kw) -> LedgerRow:
    base = dict(request_id="r", timestamp=0.0, user="u", model="m", provider="openai", mode="service",
                tokens_before=1000, tokens_after=400, estimator="o200k_base", cost_per_mtok=3.0)
    base.update(kw)
    return LedgerRow(**base)


def test_saved_at_list_price() -> None:
    r = _row()
    assert r.tokens_saved == 600 and r.dollars_saved == 0.0018


def test_saved_from_billed_usage_when_known() -> None:
    r = _row(billed_usd=0.01, counterfactual_usd=0.025)
    assert r.dollars_saved == 0.015


def test_never_negative_tokens_saved() -> None:
    assert _row(tokens_after=2000).tokens_saved == 0
