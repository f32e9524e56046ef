"""README's layout table is the map of the package: every module is on it, and nothing else."""
from __future__ import annotations

import re

from conftest import REPO_ROOT


def test_readme_layout_table_lists_every_module():
    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("## Layout"):]
    listed = set()
    for row in re.findall(r"^\| (.+?) \|", table, flags=re.M):
        listed |= set(re.findall(r"`([\w/]+\.py)`", row))
    modules = {p.name for p in (REPO_ROOT / "lib" / "hpstudy").glob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert modules - listed == set(), "modules missing from README's layout table"
    assert listed - modules == set(), "README's layout table names modules that do not exist"
