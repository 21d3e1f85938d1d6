"""The tables of ``docs/api.md`` that tests compare with the code: the error codes (code,
status) and the endpoints (method, path). A table row is a line starting with ``|``; its
first cells are read, backticks and surrounding spaces ignored, so prose and extra columns
may change freely."""

from __future__ import annotations

import re
from pathlib import Path

API_MD = Path(__file__).resolve().parents[1] / "docs" / "api.md"

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def section(heading: str, text: str | None = None) -> str:
    """The text under ``## heading`` up to the next heading of level 1 or 2."""
    text = API_MD.read_text() if text is None else text
    found = re.search(rf"^## {re.escape(heading)}[ \t]*$", text, re.M)
    assert found, f"docs/api.md has no '## {heading}' section"
    rest = text[found.end() :]
    end = re.search(r"^#{1,2} ", rest, re.M)
    return rest[: end.start()] if end else rest


def _rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            cells = [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # not the header's underline
                rows.append(cells)
    return rows


def error_codes(text: str | None = None) -> dict[str, int]:
    """``## Error codes``: code → status, from rows ``| `code` | status | … |``."""
    table: dict[str, int] = {}
    for cells in _rows(section("Error codes", text)):
        if len(cells) >= 2 and re.fullmatch(r"[a-z_]+", cells[0]) and cells[1].isdigit():
            assert cells[0] not in table, f"docs/api.md lists {cells[0]} twice"
            table[cells[0]] = int(cells[1])
    return table


def endpoints(text: str | None = None) -> set[tuple[str, str]]:
    """``## Endpoints``: (method, path) from rows ``| METHOD | `path` | … |``."""
    found = set()
    for cells in _rows(section("Endpoints", text)):
        if len(cells) >= 2 and cells[0] in _METHODS and cells[1].startswith("/"):
            found.add((cells[0], cells[1]))
    return found
