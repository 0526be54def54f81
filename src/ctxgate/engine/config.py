"""YAML and TOML documents (``kubectl get -o yaml``, ``helm template``, ``pyproject.toml``).

Lossless: trailing whitespace is removed; every line keeps its text.

Lossy (level ``balanced``, YAML only): the document is parsed, reduced with the same
rules as JSON (long lists keep first/last, error, anomalous, request-matching items and
an even sample; link fields are dropped; long multi-line strings are compressed as text
of their own kind), and written back as block YAML with every drop marked in place.
Documents with comments keep the lossless pass, since writing them back would lose them.
TOML is left with the lossless pass: it is configuration that is read to be edited.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import yaml

from ctxgate.engine._api import Context, Original, Result, retrieval_key
from ctxgate.engine._select import request_terms
from ctxgate.engine.json import Reduction

#: a YAML line; the key's words are possessive (a shorter run is followed by a word character
#: or a blank, never the colon), so that a prose line fails without backtracking word by word
_YAML_LINE = re.compile(r"""^\s*+(?:- )*(?:[\w.\-/"'@$]++(?: [\w.\-/"'@$]++)*+:(?:\s|$)|- |-$|---|\.\.\.|#)""")
_TOML_LINE = re.compile(r"""^\s*+(?:\[\[?[\w.\-"' ]+\]\]?\s*$|[\w.\-"']+\s*=\s*\S|#)""")
_COMMENT = re.compile(r"^\s*#|\s#", re.M)
_TRAILING = re.compile(r"[ \t]+$", re.M)

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Loader(_Base):
    """Safe loading that refuses duplicate keys: writing such a document back would drop lines."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        keys = [self.construct_object(k, deep=True) for k, _ in node.value]
        try:
            unique = len(set(keys)) == len(keys)
        except TypeError:  # unhashable keys: not a config document we rewrite
            raise yaml.constructor.ConstructorError(None, None, "unhashable key", node.start_mark) from None
        if not unique:
            raise yaml.constructor.ConstructorError(None, None, "duplicate key", node.start_mark)
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:map", lambda loader, node: loader.construct_mapping(node))


def _mostly(lines: list[str], pattern: re.Pattern[str], share: float) -> bool:
    """Whether at least ``share`` of the non-blank lines (three or more) match ``pattern``;
    stops at the first line that makes it impossible."""
    body = [ln for ln in lines if ln.strip()]
    if len(body) < 3:
        return False
    hits = len(body)
    for ln in body:
        if not pattern.match(ln):
            hits -= 1
            if hits / len(body) < share:  # the same test as at the end, with every other line a hit
                return False
    return True


def kind(text: str) -> str | None:
    """``"yaml"``, ``"toml"`` or None, from line shapes and a successful parse."""
    lines = text.split("\n", 300)[:300]
    if any(ln.lstrip().startswith("[") for ln in lines) and _mostly(lines, _TOML_LINE, 0.8):
        try:
            tomllib.loads(text)
        except (tomllib.TOMLDecodeError, UnicodeError):
            pass
        else:
            return "toml"
    if any(":" in ln for ln in lines) and _mostly(lines, _YAML_LINE, 0.7):
        try:
            docs = list(yaml.load_all(text, Loader=_Loader))
        except (yaml.YAMLError, RecursionError, ValueError):
            return None
        if docs and all(isinstance(d, dict | list) for d in docs if d is not None):
            return "yaml"
    return None


class ConfigCompressor:
    name = "config"
    #: the highest score ``score`` returns (``registry.detect`` skips it once one is beaten)
    max_score = 0.6
    min_tokens = 60

    def score(self, text: str, ctx: Context) -> float:
        return 0.6 if kind(text) else -1.0

    def compress(self, text: str, ctx: Context) -> Result:
        found = kind(text)
        if found is None:
            raise ValueError("not yaml or toml")
        stripped = _TRAILING.sub("", text)
        transforms = ("config:strip",)
        if found != "yaml" or ctx.level != "balanced":
            return Result(stripped, transforms)
        if _COMMENT.search(text):
            return Result(stripped, transforms, (), ("config:sample: comments would be lost",))
        key = retrieval_key(text)
        red = Reduction(ctx, key, request_terms(ctx), exclude=frozenset({"config", "json"}))
        docs = [red.reduce(d) for d in yaml.load_all(text, Loader=_Loader)]
        if not (red.items_dropped or red.links or red.plumbing or red.strings):
            return Result(stripped, transforms)
        body = yaml.dump_all(
            docs, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 30, default_flow_style=False
        )
        markers = [m for m in (red.link_marker(), red.plumbing_marker()) if m]
        lossy: tuple[str, ...] = ("config:sample",) if red.items_dropped else ()
        lossy += ("config:drop-links",) if red.links else ()
        lossy += ("config:drop-k8s-plumbing",) if red.plumbing else ()
        lossy += ("config:inner-minify",) if red.inner else ()
        lossy += ("config:long-strings", *red.transforms) if red.strings else ()
        out = "".join(f"# {m}\n" for m in markers) + body  # a comment: the YAML still parses
        cited = (Original(key, text),) if (markers or red.items_dropped) else ()
        return Result(out, ("config:reserialize", *lossy), (*cited, *red.originals))
