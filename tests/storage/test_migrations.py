"""Migrations: ordered, applied once, safe to run concurrently."""

from __future__ import annotations

import secrets
import threading

import psycopg

from storage.migrations import available, migrate


def fresh_database(pg_url: str) -> str:
    name = "mig_" + secrets.token_hex(4)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(pg_url, dbname=name)


def test_migrations_are_numbered_in_order():
    numbers = [number for number, _, _ in available()]
    assert numbers == sorted(set(numbers))
    assert numbers[0] == 1


def test_migrate_applies_everything_once(pg_url):
    url = fresh_database(pg_url)
    with psycopg.connect(url) as conn:
        first = migrate(conn)
        second = migrate(conn)
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert first == [name for _, name, _ in available()]
    assert second == []
    assert {"spaces", "api_keys", "profiles", "events", "schema_migrations"} <= tables


def test_concurrent_migrations_serialise_on_the_advisory_lock(pg_url):
    url = fresh_database(pg_url)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(url) as conn:
                results.append(migrate(conn))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    applied = [names for names in results if names]
    assert len(applied) == 1  # exactly one starter applied them; the others found them done
