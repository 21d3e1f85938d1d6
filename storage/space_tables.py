"""What a Space export holds (``perkamo export``/``import``, docs/operations.md (moving a
Space)): one entry per line type, each a table scoped by ``space_id``, exported and imported
with the columns the table has — read from the catalog, so a column a migration adds moves
with its Space without an edit here, and a kind of write moves once its log table names its
line type (``LogTable.line``). Generated columns, serial ``seq`` columns (re-assigned in the
file's order, which keeps each table's processing order) and ``space_id`` (the importing
Space's) are left out.

Every statement is composed with psycopg's ``sql`` module from these constants and from
column names the catalog returns; nothing is built from a file's content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .log_tables import LOG_TABLES

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class SpaceTable:
    """One line type. ``where``: which of the Space's rows (default all); ``optional``: a
    table a newer engine has (skipped where it does not exist); ``replace``: rows the
    import's own triggers wrote (analytics kept as the log is written) are replaced by the
    file's; ``fresh``: a column unique across Spaces whose taken values get new ones on
    import (a copy beside the original)."""

    line: str
    table: str
    where: sql.Composable | None = None
    optional: bool = False
    replace: bool = False
    fresh: str | None = None


# The lines after ``header`` and ``config``, in the file's order: keys first (a restored
# Space answers its old keys), the profiles, the log in the registry's order (a reversal after
# the redemption it names), then what was counted and what is still to deliver.
TABLES: tuple[SpaceTable, ...] = (
    SpaceTable("api_key", "api_keys"),
    SpaceTable("browser_key", "browser_keys", optional=True),
    SpaceTable("webhook", "webhook_endpoints"),
    SpaceTable("profile", "profiles"),
    # One line type per table: server and browser-sent events share ``events`` (a line
    # carries its ``source`` and ``scope_user`` columns like any other).
    *(SpaceTable(t.line, t.stored_in) for t in LOG_TABLES if t.stored_in == t.name),
    SpaceTable("known", "known_transactions"),
    SpaceTable("usage", "usage_counters"),
    SpaceTable("usage_day", "usage_daily"),
    # The console's analytics, kept by triggers as the log is written: the file's replace
    # what the import's own rows made them (the same, but for the active customers of each
    # day, which no trigger can recompute), or stand in for them when no trigger fires.
    SpaceTable("ledger_day", "ledger_daily", replace=True),
    SpaceTable("rule_day", "rule_daily", replace=True),
    SpaceTable("activity_day", "activity_daily", replace=True),
    SpaceTable(
        "delivery",
        "webhook_deliveries",
        where=sql.SQL("t.status IN ('pending', 'retrying')"),
        fresh="id",
    ),
)
CONFIG_LINE = "config"
BY_LINE = {t.line: t for t in TABLES}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # the catalog's udt_name: text, int8, bool, timestamptz, numeric, jsonb, _text…


def table_columns(conn: Conn, table: str) -> list[Column] | None:
    """The columns a line of ``table`` carries, in the table's order (None: no such
    table)."""
    rows = conn.execute(
        "SELECT column_name, udt_name, is_generated, coalesce(column_default, '')"
        " FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    if not rows:
        return None
    return [
        Column(name, kind)
        for name, kind, generated, default in rows
        if name != "space_id" and generated == "NEVER" and not default.startswith("nextval(")
    ]


def _order(conn: Conn, table: str) -> list[str]:
    """Processing order: the serial ``seq`` where the table has one, else its key."""
    names = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    )]  # fmt: skip
    if "seq" in names:
        return ["seq"]
    key = [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary"
        " ORDER BY array_position(i.indkey::int2[], a.attnum)",
        (table,),
    )]  # fmt: skip
    return [k for k in key if k != "space_id"] or sorted(n for n in names if n != "space_id")


@dataclass(frozen=True, slots=True)
class Section:
    """A line type as this database holds it: what to select, in which order."""

    line: str
    columns: list[Column]
    query: sql.Composed  # one text per row: the line, without its newline
    count: sql.Composed


def sections(conn: Conn) -> list[Section]:
    """Every line type this database has, in the file's order (config first)."""
    found = [_config_section()]
    for entry in TABLES:
        columns = table_columns(conn, entry.table)
        if columns is None:
            if entry.optional:
                continue
            raise LookupError(f"table {entry.table} does not exist")
        found.append(_section(entry, columns, _order(conn, entry.table)))
    return found


def _section(entry: SpaceTable, columns: list[Column], order: list[str]) -> Section:
    table = sql.Identifier(entry.table)
    where: sql.Composable = sql.SQL("t.space_id = %(s)s")
    if entry.where is not None:
        where = sql.SQL("{} AND ({})").format(where, entry.where)
    # row_to_json of a lateral row names each value by its column; the outer ORDER BY is
    # the file's order. "type" is the first key of every line.
    query = sql.SQL(
        "SELECT row_to_json(x)::text FROM {table} t, LATERAL (SELECT {line} AS type, {cols}) x"
        " WHERE {where} ORDER BY {order}"
    ).format(
        table=table,
        line=sql.Literal(entry.line),
        cols=sql.SQL(", ").join(
            sql.SQL("t.{} AS {}").format(sql.Identifier(c.name), sql.Identifier(c.name))
            for c in columns
        ),
        where=where,
        order=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(o)) for o in order),
    )
    count = sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(table, where)
    return Section(entry.line, columns, query, count)


def _config_section() -> Section:
    """Every module version, drafts included, with ``active`` (the module's active one)."""
    query = sql.SQL(
        "SELECT row_to_json(x)::text FROM config_versions v"
        " LEFT JOIN active_config a USING (space_id, module, version),"
        " LATERAL (SELECT 'config' AS type, v.module, v.version, v.body, v.checksum,"
        " v.checksum_form, v.created_at, v.activated_at,"
        " a.version IS NOT NULL AS active) x"
        " WHERE v.space_id = %(s)s ORDER BY v.module, v.created_at, v.version"
    )
    count = sql.SQL("SELECT count(*) FROM config_versions WHERE space_id = %(s)s")
    columns = [
        Column("module", "text"), Column("version", "text"), Column("body", "jsonb"),
        Column("checksum", "text"), Column("checksum_form", "int2"),
        Column("created_at", "timestamptz"), Column("activated_at", "timestamptz"),
        Column("active", "bool"),
    ]  # fmt: skip
    return Section(CONFIG_LINE, columns, query.format(), count.format())


# -- export --------------------------------------------------------------------------------


def begin_snapshot(conn: Conn) -> None:
    """Start the export's transaction: one consistent snapshot of the whole database that
    writers never wait for (REPEATABLE READ, read only); the statements it runs (a million
    rows' cursor) have no time limit."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    conn.execute("SET LOCAL statement_timeout = 0")


def count_rows(conn: Conn, section: Section, space_id: int) -> int:
    row = conn.execute(section.count, {"s": space_id}).fetchone()
    return int(row[0]) if row else 0


def stream_lines(
    conn: Conn, section: Section, space_id: int, batch: int = 2000
) -> Iterator[list[str]]:
    """The section's lines in batches, through a server-side cursor: memory bounded by
    ``batch`` rows whatever the table holds."""
    with conn.cursor(name=f"export_{section.line}") as cur:
        cur.itersize = batch
        cur.execute(section.query, {"s": space_id})
        while rows := cur.fetchmany(batch):
            yield [r[0] for r in rows]


# -- import --------------------------------------------------------------------------------


def copy_rows(
    conn: Conn, table: str, columns: list[str], space_id: int, rows: Iterable[tuple[Any, ...]]
) -> None:
    """COPY ``rows`` (values in ``columns`` order, as text or None) into ``table`` for the
    Space. A value PostgreSQL refuses raises its psycopg error, whose context names the
    COPY's line number."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in ["space_id", *columns]),
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row((space_id, *row))


def clear_rows(conn: Conn, table: str, space_id: int) -> None:
    """Remove what the import's triggers wrote for the Space (``SpaceTable.replace``)."""
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE space_id = %s").format(sql.Identifier(table)), (space_id,)
    )


def taken_values(conn: Conn, table: str, column: str, values: list[str]) -> set[str]:
    """The values of ``values`` that ``table.column`` already holds (any Space's)."""
    rows = conn.execute(
        sql.SQL("SELECT {c} FROM {t} WHERE {c} = ANY(%s)").format(
            c=sql.Identifier(column), t=sql.Identifier(table)
        ),
        (values,),
    )
    return {r[0] for r in rows}


@dataclass(frozen=True, slots=True)
class SpaceHeader:
    id: int
    slug: str
    name: str
    environment: str
    limits: dict[str, Any]
    require_signatures: bool
    frozen: bool


def space_header(conn: Conn, slug: str) -> SpaceHeader | None:
    """What an export's header says of the Space (and its id)."""
    row = conn.execute(
        "SELECT id, slug, name, environment, limits, require_signatures, frozen"
        " FROM spaces WHERE slug = %s",
        (slug,),
    ).fetchone()
    return None if row is None else SpaceHeader(*row)


def insert_space(
    conn: Conn,
    slug: str,
    name: str,
    environment: str,
    limits: dict[str, Any],
    require_signatures: bool,
) -> int | None:
    """The imported Space's row; None when the slug is taken (nothing written)."""
    row = conn.execute(
        "INSERT INTO spaces (slug, name, environment, limits, require_signatures)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (slug) DO NOTHING RETURNING id",
        (slug, name, environment, Jsonb(limits), require_signatures),
    ).fetchone()
    return None if row is None else int(row[0])


def activate_imported(conn: Conn, space_id: int, active: list[tuple[str, str, Any]]) -> None:
    """The active version of each module (module, version, activated_at), as exported."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO active_config (space_id, module, version, activated_at)"
            " VALUES (%s, %s, %s, coalesce(%s::timestamptz, now()))",
            [(space_id, module, version, at) for module, version, at in active],
        )


def taken_keys(conn: Conn, table: str, ids: list[str], hashes: list[bytes]) -> list[str]:
    """The ids of the keys in ``table`` (``api_keys``, ``browser_keys``) of this database
    with one of these ids or hashes (a Space imported beside its original would answer the
    original's keys)."""
    rows = conn.execute(
        sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) OR key_hash = ANY(%s) ORDER BY id").format(
            sql.Identifier(table)
        ),
        (ids, hashes),
    )
    return [r[0] for r in rows]


def skip_triggers(conn: Conn) -> bool:
    """For the rest of this transaction, fire no triggers (``session_replication_role``
    replica, as ``pg_restore --disable-triggers``): a bulk import then writes the rows alone,
    without a foreign-key check or an analytics trigger per statement. Only a superuser may;
    False (and nothing changed) otherwise. What the triggers would have done the caller does
    itself: the analytics tables are in the file, ``check_references`` checks the foreign
    keys once, ``announce`` sends the notifications."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def check_references(conn: Conn, tables: list[str], space_id: int) -> list[str]:
    """The foreign keys between ``tables`` (other than to ``spaces``, which the import's own
    row satisfies) that the Space's rows break: ``child -> parent`` per broken key."""
    found = conn.execute(
        "SELECT c.relname, p.relname, array_agg(a.attname ORDER BY k.ord),"
        " array_agg(af.attname ORDER BY k.ord)"
        " FROM pg_constraint con"
        " JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class p ON p.oid = con.confrelid"
        " CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(col, fcol, ord)"
        " JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.col"
        " JOIN pg_attribute af ON af.attrelid = con.confrelid AND af.attnum = k.fcol"
        " WHERE con.contype = 'f' AND c.relname = ANY(%s) AND p.relname <> 'spaces'"
        " AND c.relnamespace = current_schema()::regnamespace"
        " GROUP BY con.oid, c.relname, p.relname ORDER BY 1, 2",
        (tables,),
    ).fetchall()
    broken = []
    for child, parent, columns, referenced in found:
        same = sql.SQL(" AND ").join(
            sql.SQL("p.{} = c.{}").format(sql.Identifier(r), sql.Identifier(col))
            for col, r in zip(columns, referenced, strict=True)
        )
        query = sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {} c WHERE c.space_id = %s"
            " AND NOT EXISTS (SELECT 1 FROM {} p WHERE {}))"
        ).format(sql.Identifier(child), sql.Identifier(parent), same)
        row = conn.execute(query, (space_id,)).fetchone()
        if row and row[0]:
            broken.append(f"{child} -> {parent}")
    return broken


def announce(conn: Conn, space_id: int) -> None:
    """What a new Space's keys, program and webhook tell running servers (on commit), as
    their rows' triggers do: forget cached keys (server and browser keys alike: any change
    on the channel) and endpoints, load the program."""
    conn.execute("SELECT pg_notify('perkamo_auth', 'api_keys')")
    conn.execute("SELECT pg_notify('perkamo_config', %s)", (str(space_id),))


def reshard_due(conn: Conn, space_id: int, shard_of: Callable[[int, str], int]) -> None:
    """Give the Space's profiles with something due (``next_due``) the shard ``shard_of``
    computes for them here (an imported Space has a new id)."""
    users = [r[0] for r in conn.execute(
        "SELECT user_id FROM profiles WHERE space_id = %s AND next_due IS NOT NULL",
        (space_id,),
    )]  # fmt: skip
    if users:
        conn.execute(
            "UPDATE profiles p SET due_shard = x.shard"
            " FROM unnest(%s::text[], %s::smallint[]) AS x(user_id, shard)"
            " WHERE p.space_id = %s AND p.user_id = x.user_id",
            (users, [shard_of(space_id, u) for u in users], space_id),
        )
