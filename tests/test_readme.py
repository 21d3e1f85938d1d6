"""The README's guarantees name real tests: a renamed or deleted test breaks this."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_guarantees_name_exists():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Guarantees, and the tests that prove them")[1].split("\n## ")[0]
    named = re.findall(r"`((?:tests/(?:\w+/)*)?(\w+\.py))(?:::(\w+))?`", section)
    assert len(named) > 20
    for path, filename, name in named:
        candidates = [ROOT / path] if "/" in path else list(ROOT.glob(f"tests/**/{filename}"))
        assert candidates and all(c.exists() for c in candidates), path
        if name:
            defined = {
                node.name
                for c in candidates
                for node in ast.walk(ast.parse(c.read_text()))
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            assert name in defined, f"{path}::{name}"
