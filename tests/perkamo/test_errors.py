"""The error registry is the error table of docs/api.md: one row per code, with its status."""

from __future__ import annotations

from perkamo.errors import Code, PerkamoError
from tests.api_reference import error_codes


def test_the_registry_equals_the_table_of_docs_api_md():
    documented = error_codes()
    registry = {code.value: code.status for code in Code}
    assert len(documented) > 30
    missing = {c: s for c, s in registry.items() if c not in documented}
    unknown = {c: s for c, s in documented.items() if c not in registry}
    wrong = {c: (documented[c], s) for c, s in registry.items() if documented.get(c, s) != s}
    assert not missing, (
        f"docs/api.md 'Error codes' lacks these codes of perkamo/errors.py: {missing}"
    )
    assert not unknown, (
        f"docs/api.md 'Error codes' lists codes perkamo/errors.py has not: {unknown}"
    )
    assert not wrong, f"docs/api.md 'Error codes' gives another status (docs, code): {wrong}"


def test_every_code_has_a_user_safe_default_message_and_retryable_ones_say_when():
    for code in Code:
        assert code.message.endswith("."), code
        error = PerkamoError(code)
        assert error.message == code.message and error.status == code.status
        assert ("retry-after" in error.headers) == (code.status in (429, 503))
