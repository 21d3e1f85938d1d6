"""What no answer, error body or log may ever carry: a trace, SQL, a source path, a
database URL. One list for every test that checks."""

from __future__ import annotations

NEVER = ("Traceback", "SELECT ", "INSERT ", "psycopg", 'File "', '.py"', "postgresql://")


def assert_no_leak(text: str | bytes) -> None:
    raw = text.encode() if isinstance(text, str) else text
    for leak in NEVER:
        assert leak.encode() not in raw, (leak, raw[:300])
