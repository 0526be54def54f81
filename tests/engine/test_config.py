from __future__ import annotations

import yaml

from ctxgate.engine import Context
from ctxgate.engine.config import ConfigCompressor, kind

C = ConfigCompressor()


def pods_yaml(n: int) -> str:
    items = [
        {
            "metadata": {"name": f"web-{i}", "namespace": "prod"},
            "status": {"phase": "Failed" if i == 40 else "Running", "restarts": 0},
        }
        for i in range(n)
    ]
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}, sort_keys=False)


def test_kind() -> None:
    assert kind(pods_yaml(3)) == "yaml"
    assert kind('[tool]\nname = "x"\nversion = "1"\n[deps]\na = "1"\n') == "toml"
    assert kind("hello: world but this is\njust prose\nwith a colon") is None


def test_lossless_strips_trailing_whitespace_only() -> None:
    text = "a: 1   \nb:\n  - x  \n  - y\n"
    out = C.compress(text, Context(level="lossless"))
    assert out.text == "a: 1\nb:\n  - x\n  - y\n" and not out.originals


def test_balanced_samples_long_lists() -> None:
    text = pods_yaml(120)
    out = C.compress(text, Context())
    assert "config:sample" in out.transforms
    assert "web-0" in out.text and "web-119" in out.text and "Failed" in out.text
    assert "of 120 items omitted" in out.text
    assert out.originals[0].text == text
    assert isinstance(yaml.safe_load(out.text), dict)


def test_comments_block_rewriting() -> None:
    text = "# Source: chart/templates/x.yaml\n" + pods_yaml(120)
    out = C.compress(text, Context())
    assert not out.originals and "config:sample: comments would be lost" in out.skipped


def test_duplicate_keys_are_not_config() -> None:
    # log lines shaped like "LEVEL: message" parse as YAML with repeated keys; rewriting would lose lines
    assert kind("INFO: a\nINFO: b\nWARN: c\nINFO: d\n") is None


def test_kubernetes_yaml_drops_are_announced() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "uid": "4f346c63-4d5b-461b-898c-9c0fca14b797", "resourceVersion": "1"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1", "imagePullPolicy": "IfNotPresent"}] * 3},
        "status": {"phase": "Running"},
    }
    text = yaml.safe_dump(pod, sort_keys=False)
    out = C.compress(text, Context())
    assert out.text.startswith("# [... ") and "Kubernetes bookkeeping/plumbing fields" in out.text
    assert "config:drop-k8s-plumbing" in out.transforms and out.originals[0].text == text
    assert "uid" not in out.text.split("\n", 1)[1] and "nginx:1" in out.text
    assert yaml.safe_load(out.text)["metadata"]["name"] == "web-0"


def test_possessive_yaml_line_pattern_matches_as_the_backtracking_one(corpus) -> None:
    import random
    import re

    from ctxgate.engine.config import _YAML_LINE

    plain = re.compile(r"""^\s*+(?:- )*(?:[\w.\-/"'@$]+(?: [\w.\-/"'@$]+)*:(?:\s|$)|- |-$|---|\.\.\.|#)""")
    rnd = random.Random(11)
    lines = ["".join(rnd.choice("ab -:./#\t\n'") for _ in range(rnd.randint(0, 14))) for _ in range(3000)]
    lines += ["- ", "- - a: b", "a b c: d", "a b c, d: e", "-", "--- x", "  - key.x/y: 1", "a  b: c"]
    for f in sorted((corpus / "outputs").glob("*/*")):
        if f.suffix != ".jsonl":
            lines += f.read_text(errors="replace").split("\n", 400)[:400]
    hits = 0
    for line in lines:
        m, ref = _YAML_LINE.match(line), plain.match(line)
        assert (m and m.group(0)) == (ref and ref.group(0)), line
        hits += m is not None
    assert hits > 1000
