from __future__ import annotations

from ctxgate.engine import Context
from ctxgate.engine._select import budget, flatten, is_error, request_terms, select


def test_budget() -> None:
    assert budget(5) == 5 and budget(12) == 12
    assert 12 < budget(100) < 30


def test_flatten() -> None:
    assert flatten({"a": {"b": {"c": 1, "d": [1]}}, "e": "x"}) == {"a.b.c": 1, "e": "x"}


def test_is_error() -> None:
    assert is_error({"msg": "connection refused"})
    assert is_error({"status": "Failed"})
    assert is_error({"exit_code": 2})
    assert is_error({"error": "x"})
    assert not is_error({"error": None, "status": "ok", "exit_code": 0})


def test_request_terms() -> None:
    terms = request_terms(
        Context(query="Why does pod web-7 crash?", tool_args='{"command": "kubectl get pods"}')
    )
    assert "web-7" in terms and "crash" in terms and "kubectl" in terms and "the" not in terms


def test_select_keeps_the_right_items() -> None:
    recs = [{"id": i, "kind": "a" if i != 50 else "b", "msg": "ok"} for i in range(100)]
    recs[70]["msg"] = "fatal: disk full"
    texts = [str(r) for r in recs]
    sel = select(recs, texts, Context())
    assert {0, 1, 99, 50, 70} <= set(sel.kept)
    assert len(sel.kept) < 40
    assert sel.gaps(100)[0][0] == 2
    assert sel.summary == "all kind=a, msg=ok"


def test_select_is_deterministic_and_short_lists_are_kept() -> None:
    recs = [{"v": i} for i in range(10)]
    assert select(recs, [""] * 10, Context()).kept == tuple(range(10))
    big = [{"v": i % 7} for i in range(500)]
    a = select(big, [str(r) for r in big], Context())
    assert a == select(big, [str(r) for r in big], Context())


def test_names_of_omitted_records() -> None:
    from ctxgate.engine._select import describe, names

    recs = [{"id": i, "login": f"u{i}", "name": "Same", "type": "User"} for i in range(4)]
    assert names(recs) == "login: u0, u1, u2, u3"  # "name" repeats, so the unique "login" wins
    assert describe(recs) == "all name=Same, type=User; login: u0, u1, u2, u3"
    many = [{"metadata.name": f"pod-{i}"} for i in range(50)]
    assert names(many).endswith("pod-39, ... 10 more")
    assert names([{"x": 1}]) == ""


def test_describe_leaves_out_what_the_whole_list_shares() -> None:
    from ctxgate.engine._select import describe, uniform_fields

    recs = [{"kind": "Pod", "phase": "Running" if i % 2 else "Failed", "name": f"p{i}"} for i in range(6)]
    everyone = uniform_fields(recs)
    assert everyone == frozenset({"kind"})
    assert describe(recs[1::2], everyone) == "all phase=Running; name: p1, p3, p5"
