"""Docs stay honest: every setting is documented, and the README's first commands are the real ones."""

from __future__ import annotations

import re

from ctxgate.settings import ENV_PREFIX, Settings
from tests.conftest import ROOT


def test_every_setting_is_documented_with_its_default() -> None:
    doc = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{ENV_PREFIX}{name.upper()}`" not in doc]
    assert missing == []


def test_documented_settings_exist() -> None:
    doc = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    documented = set(re.findall(rf"`{ENV_PREFIX}([A-Z0-9_]+)`", doc)) - {"CONFIG"}
    assert documented <= {n.upper() for n in Settings.model_fields}


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", readme, re.S)
    assert blocks[0].strip().endswith("ctxgate serve")
    assert blocks[1].strip() == "bash scripts/test.sh"
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec bash scripts/test.sh")


def test_architecture_names_every_package() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for pkg in ("engine/", "conversation/", "store/", "server/"):
        assert pkg in doc


def test_configuration_table_is_current() -> None:
    import subprocess
    import sys

    rc = subprocess.call([sys.executable, str(ROOT / "scripts" / "gen_config_doc.py"), "--check"])
    assert rc == 0, "docs/CONFIGURATION.md is stale: run scripts/gen_config_doc.py"
