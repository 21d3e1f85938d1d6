"""The error registry is the table of API.md §5: one entry per code, with its status."""

from __future__ import annotations

import re
from pathlib import Path

from perkamo.errors import Code, PerkamoError

API_MD = Path(__file__).resolve().parents[3] / "shared" / "spec" / "API.md"


def spec_table() -> set[tuple[int, str]]:
    text = API_MD.read_text()
    section = text.split("**Error codes**")[1].split("**Order of checks**")[0]
    rows = set()
    for status, codes in re.findall(r"^\| (\d{3}) \| (.+) \|$", section, re.M):
        for code in re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", codes)):
            rows.add((int(status), code))
    return rows


def test_the_registry_equals_the_table_of_api_md():
    table = spec_table()
    assert len(table) > 30
    assert {(code.status, code.value) for code in Code} == table


def test_every_code_has_a_user_safe_default_message_and_retryable_ones_say_when():
    for code in Code:
        assert code.message.endswith("."), code
        error = PerkamoError(code)
        assert error.message == code.message and error.status == code.status
        assert ("retry-after" in error.headers) == (code.status in (429, 503))
