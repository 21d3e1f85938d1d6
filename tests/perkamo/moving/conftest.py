"""Moving a Space: a fresh database beside the session's (the other instance an import goes
to), a Space holding every kind of row, and the ``perkamo`` command against either."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from perkamo.cli.main import main
from storage.migrations import migrate

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def fresh_url(pg_url: str) -> Iterator[str]:
    """A new, migrated database on the session's PostgreSQL: another instance's storage."""
    name = "moved_" + secrets.token_hex(4)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = make_conninfo(pg_url, dbname=name)
    with psycopg.connect(url) as conn:
        migrate(conn)
    yield url
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    """``perkamo ARGS --database-url URL``: (exit status, stdout, stderr)."""

    def run(url: str, *argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--database-url", url, "--data-dir", str(tmp_path)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
