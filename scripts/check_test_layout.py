"""Fail when a module under src/ctxgate has no test module mirroring it.

``src/ctxgate/engine/json.py`` needs ``tests/engine/test_json.py``. Package
``__init__`` files, private helpers listed in ALLOWED, and ``py.typed`` are exempt.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "ctxgate"
TESTS = ROOT / "tests"

#: modules exercised only through others (say which, in a comment)
ALLOWED = {
    "server/run.py",  # started by tests/server/live.py-based tests through the CLI
}


def main() -> int:
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.name == "__init__.py" or rel.as_posix() in ALLOWED:
            continue
        name = rel.name.lstrip("_")
        expected = TESTS / rel.parent / f"test_{name}"
        if not expected.exists():
            missing.append(f"{rel} -> {expected.relative_to(ROOT)}")
    if missing:
        print("modules without a mirroring test module:\n  " + "\n  ".join(missing))
        return 1
    print("ok: every module under src/ctxgate has its test module")
    return 0


if __name__ == "__main__":
    sys.exit(main())
