from __future__ import annotations

import json

import pytest

from ctxgate import tokens
from ctxgate.engine import Context, compress
from ctxgate.engine.json import JsonCompressor, dedupe, parse
from tests.engine.decoders import decode_json, decode_ndjson

J = JsonCompressor()
LOSSLESS = Context(level="lossless")
BALANCED = Context(level="balanced")


def users(n: int) -> list[dict[str, object]]:
    return [
        {
            "id": i,
            "login": f"user{i}",
            "type": "User",
            "score": 10 + (i * 7) % 13,
            "avatar_url": f"https://avatars.example.com/u/{i}?v=4",
            "followers_url": f"https://api.example.com/users/user{i}/followers",
            "html_url": f"https://example.com/user{i}",
        }
        for i in range(n)
    ]


def test_score_claims_json_and_ndjson_only() -> None:
    assert J.score('{"a": [1, 2]}', BALANCED) >= 0.9
    assert J.score('{"a": 1}\n{"a": 2}\n', BALANCED) >= 0.9
    assert J.score("{not json}", BALANCED) < 0
    assert J.score("hello", BALANCED) < 0
    assert J.score('{"a": 1, "a": 2}', BALANCED) < 0  # duplicate keys cannot round-trip
    assert J.score('\ufeff{"a": 1}', BALANCED) >= 0.9  # a byte-order mark is not content


def test_parse_refuses_non_standard_numbers() -> None:
    with pytest.raises(ValueError):
        parse('{"a": NaN}')
    with pytest.raises(ValueError):
        parse('{"a": 1e999}')


def test_minify_is_value_equal() -> None:
    doc = {"a": [1, 2.5, None, True], "b": {"c": "ünï", "d": []}}
    out = J.compress(json.dumps(doc, indent=4), LOSSLESS)
    assert out.transforms[0] == "json:minify"
    assert json.loads(out.text) == doc
    assert not out.originals


def test_table_is_lossless_and_keeps_types() -> None:
    items = [{"id": i, "name": str(i), "ok": i % 2 == 0, "tags": ["x"] * (i % 3)} for i in range(30)]
    items[3]["extra"] = {"k": 1}
    del items[5]["ok"]
    text = json.dumps({"items": items}, indent=2)
    out = J.compress(text, LOSSLESS)
    assert "json:table" in out.transforms
    assert '"@columns":["id","name","ok","tags"]' in out.text
    assert '["1","1"' not in out.text  # the string "1" stays a string, next to the number 1
    assert decode_json(out.text) == {"items": items}


def test_no_table_when_data_uses_the_table_keys() -> None:
    items = [{"@columns": i, "b": i} for i in range(20)]
    out = J.compress(json.dumps(items, indent=1), LOSSLESS)
    assert "json:table" not in out.transforms and json.loads(out.text) == items
    assert out.skipped == ("json:table: data has @columns/@rows keys",)


def test_ndjson_lines_minified() -> None:
    lines = [{"level": "info", "msg": f"request {i}", "ms": i} for i in range(5)]
    text = "\n".join(json.dumps(x, indent=None, separators=(", ", ": ")) for x in lines) + "\n"
    out = J.compress(text, LOSSLESS)
    assert decode_ndjson(out.text) == lines


def test_balanced_samples_long_arrays_visibly() -> None:
    data = users(200)
    data[117]["type"] = "Organization"  # the only one: an anomaly
    data[150]["error"] = "rate limited"
    out = J.compress(json.dumps(data), BALANCED)
    assert "json:sample" in out.transforms
    assert "of 200 items omitted" in out.text
    key = out.originals[0].key
    assert f"retrieve: {key}" in out.text
    assert out.originals[0].text == json.dumps(data)
    for must in ("user0", "user1", "user199", "Organization", "rate limited"):
        assert must in out.text


def test_request_terms_pick_items() -> None:
    data = users(200)
    out = J.compress(json.dumps(data), Context(query="what about user173?"))
    assert '"user173"' in out.text
    out = J.compress(json.dumps(data), Context(tool_args='{"command": "curl /users?q=user88"}'))
    assert '"user88"' in out.text


def test_link_fields_dropped_with_marker() -> None:
    doc = {
        "id": 1,
        "html_url": "https://example.com/x",
        "events_url": "https://api.example.com/x/events{/id}",
    }
    doc["body"] = "word " * 50
    out = J.compress(json.dumps(doc), BALANCED)
    assert "events_url" not in out.text.split("\n", 1)[1]
    assert out.text.startswith("[... 1 of 4 fields omitted: link fields events_url; retrieve: ctx_")
    assert "https://example.com/x" in out.text
    kept = J.compress(json.dumps(doc), Context(query="show me the events_url"))
    assert "api.example.com/x/events" in kept.text


def test_dedupe_refers_to_first_copy() -> None:
    repo = {"id": 7, "name": "octo/repo", "description": "a repository with a long enough description"}
    value, n = dedupe(
        {"a": [{"n": 1, "repo": repo}, {"n": 2, "repo": dict(repo)}], "b": [{"n": 1, "repo": repo}]}
    )
    assert n == 2
    assert value["a"][1]["repo"] == "[same as $.a[0].repo]"
    assert value["b"] == ["[same as $.a[0]]"]


def test_embedded_pretty_json_string_is_minified() -> None:
    inner = json.dumps([{"name": "eth0", "ips": ["10.0.0.1"], "default": True}], indent=4)
    doc = {"annotations": {"network-status": inner}, "pad": "x" * 300}
    out = J.compress(json.dumps(doc), BALANCED)
    assert "json:inner-minify" in out.transforms
    assert json.loads(json.loads(out.text)["annotations"]["network-status"]) == json.loads(inner)


def test_lossless_level_through_dispatcher_never_drops() -> None:
    data = users(200)
    out = compress(json.dumps(data, indent=2), LOSSLESS)
    assert out.changed and not out.originals
    assert decode_json(out.text) == data


def test_dispatcher_counts_tokens() -> None:
    text = json.dumps(users(50), indent=2)
    out = compress(text, BALANCED)
    assert out.content_type == "json"
    assert out.tokens_before == tokens.count(text).tokens
    assert out.tokens_after == tokens.count(out.text).tokens < out.tokens_before


def test_kubernetes_plumbing_dropped_inside_objects_only() -> None:
    pod = {
        "metadata": {"name": "web-0", "uid": "4f346c63-4d5b-461b-898c-9c0fca14b797", "resourceVersion": "1"},
        "spec": {
            "containers": [
                {"name": "app", "image": "nginx:1", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}
            ]
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "app", "containerID": "cri-o://" + "ab" * 32}],
        },
    }
    out = J.compress(json.dumps(pod, indent=2), BALANCED)
    header, body = out.text.split("\n", 1)
    assert "Kubernetes bookkeeping/plumbing fields containerID, resourceVersion, uid, volumeMounts" in header
    assert "uid" not in body and "cri-o://" not in body and "nginx:1" in body
    assert out.originals[0].key in header
    not_k8s = {"uid": "4f346c63-4d5b-461b-898c-9c0fca14b797", "items": ["x" * 40] * 3}
    assert '"uid"' in J.compress(json.dumps(not_k8s, indent=2), BALANCED).text
    asked = J.compress(json.dumps(pod, indent=2), Context(query="what is the uid of web-0?"))
    assert "4f346c63" in asked.text


def test_lists_of_plain_values_are_kept_up_to_a_hundred() -> None:
    paths = [f"src/pkg/module_{i:03d}/implementation_file.py" for i in range(90)]
    out = J.compress(json.dumps({"files": paths}, indent=2), BALANCED)
    assert all(p in out.text for p in paths) and not out.originals
    many = [f"src/pkg/module_{i:04d}/implementation_file.py" for i in range(1000)]
    out = J.compress(json.dumps({"files": many}, indent=2), BALANCED)
    assert "of 1000 items omitted" in out.text


def test_ndjson_stream_of_objects_becomes_one_table() -> None:
    lines = [
        {"ts": f"2024-01-01T00:00:{i:02d}Z", "level": "info", "msg": f"request {i}", "ms": i}
        for i in range(40)
    ]
    text = "\n".join(json.dumps(x) for x in lines)
    out = J.compress(text, LOSSLESS)
    assert out.text.startswith('{"@columns":["ts","level","msg","ms"],"@rows":[\n["2024-01-01T00:00:00Z"')
    assert decode_ndjson(out.text) == lines


def test_small_items_are_not_sampled_when_markers_would_eat_the_gain() -> None:
    items = [{"id": i, "msg": f"request {i}"} for i in range(40)]
    out = J.compress(json.dumps(items), BALANCED)
    assert not out.originals and decode_json(out.text) == items


def _dedupe_reference(value: object) -> tuple[object, int]:
    """``dedupe`` as first written: every value walked, every long text remembered."""
    import json

    from ctxgate.engine.json import _IDENT, _MIN_REPEAT_CHARS, _SAME_AS, _dump, _is_marker

    seen: dict[str, str] = {}
    count = 0

    def walk(v: object, path: str) -> object:
        nonlocal count
        t = json.dumps(v, ensure_ascii=False, separators=(",", ":")) if isinstance(v, dict | list | str) else None
        if t is not None and len(t) >= _MIN_REPEAT_CHARS and not _is_marker(v):
            ref = seen.get(t)
            if ref is not None and len(ref) + len(_SAME_AS) + 16 < len(t):
                count += 1
                return f"{_SAME_AS}{ref}]"
            seen.setdefault(t, path)
        if isinstance(v, dict):
            return {k: walk(x, path + (f".{k}" if _IDENT.match(k) else f"[{_dump(k)}]")) for k, x in v.items()}
        if isinstance(v, list):
            out, shown = [], 0
            for x in v:
                if _is_marker(x):
                    out.append(x)
                    continue
                out.append(walk(x, f"{path}[{shown}]"))
                shown += 1
            return out
        return v

    return walk(value, "$"), count


def test_dedupe_matches_the_plain_walk() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    long = st.sampled_from(["x" * 50, "y" * 60, "short", "[... 3 of 9 items omitted; retrieve: ctx_" + "a" * 20 + "]"])
    leaf = st.one_of(st.integers(0, 3), long, st.none())
    tree = st.recursive(
        leaf,
        lambda kids: st.one_of(
            st.lists(kids, max_size=5), st.dictionaries(st.sampled_from(["a", "b-c", "id", "n"]), kids, max_size=4)
        ),
        max_leaves=40,
    )

    @settings(max_examples=300, deadline=None)
    @given(tree)
    def check(value: object) -> None:
        assert dedupe(value) == _dedupe_reference(value)

    item = {"a": "x" * 50, "b": [1, 2, {"n": "y" * 60}]}
    twice = [item, dict(item), {"c": [dict(item)]}]
    assert dedupe(twice) == _dedupe_reference(twice) and dedupe(twice)[1] == 2

    check()
