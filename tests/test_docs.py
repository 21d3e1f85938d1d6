"""The project's own documentation stays true: docs/api.md lists exactly the server's routes,
its relative links lead to files that exist, and nothing in the repository points outside it
(a clone on its own is what every user has). The error table is checked against the registry
in tests/perkamo/test_errors.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

from perkamo.http.routes import build_router
from tests.api_reference import endpoints

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_SKIP = {".git", ".venv", ".perkamo", "node_modules", "__pycache__", ".mypy_cache",
         ".ruff_cache", ".pytest_cache"}  # fmt: skip


def _written_once(pattern: str) -> str:
    """A run of wildcard segments (``/v1/client/*/*/*``: one to four segments) is one row."""
    return re.sub(r"(/\*)+", "/*", pattern)


def test_the_endpoint_table_of_docs_api_md_is_the_route_table():
    served = {(r.method, _written_once(r.pattern)) for r in build_router().routes}
    documented = endpoints()
    assert ("GET", "/openapi.json") in served and ("GET", "/docs") in served
    missing = sorted(served - documented)
    unknown = sorted(documented - served)
    assert not missing, (
        f"docs/api.md 'Endpoints' lacks these routes of perkamo/http/routes.py: {missing}"
    )
    assert not unknown, f"docs/api.md 'Endpoints' lists routes the server has not: {unknown}"


def _anchors(doc: Path) -> set[str]:
    """The anchors of a markdown file's headings, as GitHub spells them."""
    headings = re.findall(r"^#+ (.+)$", doc.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_relative_links_in_the_docs_lead_to_files_and_headings():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            path, _, anchor = target.partition("#")
            if "://" in path:
                continue
            linked = (doc.parent / path) if path else doc
            if not linked.exists() or (anchor and anchor not in _anchors(linked)):
                broken.append(f"{doc.relative_to(ROOT)} → {target}")
    assert not broken, broken


def test_nothing_in_the_repository_points_outside_it():
    outside = "/".join(("..", "shared"))  # not written whole, or this file would match
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [s for s in subfolders if s not in _SKIP and not s.endswith(".egg-info")]
        for name in files:
            path = Path(folder, name)
            if outside in path.read_bytes().decode("utf-8", "replace"):
                found.append(str(path.relative_to(ROOT)))
    assert not found, f"these files refer to {outside}: {found}"
