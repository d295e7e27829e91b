"""Every setting a service reads is in README's settings table, under the variable name it is read from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
# The variables named in the first cell of a table row; a row may document several together.
DOCUMENTED = {
    name
    for line in README.splitlines()
    if line.startswith("| `")
    for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
}


def variable(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"{Settings.model_config.get('env_prefix', '')}{name}".upper()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_the_setting_is_documented(name: str) -> None:
    assert variable(name) in DOCUMENTED, f"README's settings tables have no row for {variable(name)}"
