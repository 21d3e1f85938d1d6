"""The second pass of ``perkamo import``: the checked file written in one transaction — the
Space's row, then each type's lines with one COPY per type (their rows decoded in C,
rows.py) — and committed at the end. All or nothing: a failure, or the process being
killed, leaves no trace of the Space (PostgreSQL rolls back a transaction whose client is
gone). Running servers learn of the Space through the notifications its keys' and
configuration's rows send on commit, as for a key created by ``perkamo keys create``."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, islice
from pathlib import Path
from typing import cast

import psycopg

from perkamo.access import browser_keys as browser_key_rules
from perkamo.access import keys as key_rules
from perkamo.profiles.shards import shard_of
from perkamo.usecases.moving.checking import KEY_LINES, Checked
from perkamo.usecases.moving.format import MoveRefused, SpaceFields, line_type, open_lines
from perkamo.usecases.moving.progress import Progress
from perkamo.usecases.moving.rows import Row, RowDecoder
from storage import connect
from storage.console import audit
from storage.database import Conn, Timeouts
from storage.space_tables import (
    BY_LINE,
    CONFIG_LINE,
    TABLES,
    Column,
    SpaceTable,
    activate_imported,
    announce,
    check_references,
    clear_rows,
    copy_rows,
    insert_space,
    reshard_due,
    skip_triggers,
    table_columns,
    taken_keys,
    taken_values,
)

Numbered = Iterator[tuple[int, bytes]]
_COPY_LINE = re.compile(r"COPY \S+, line (\d+)")
_PROGRESS_EVERY = 5000
_FRESH_BATCH = 5000


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key given in place of an imported one (``--new-keys``): shown once. ``kind``: its
    line type (``api_key``, ``browser_key``)."""

    kind: str
    old_id: str
    key_id: str
    secret: str
    revoked: bool


@dataclass(slots=True)
class Imported:
    slug: str
    counts: dict[str, int]
    new_keys: list[NewKey] = field(default_factory=list)
    renamed: int = 0  # undelivered deliveries given new ids (their ids were taken)


def import_space(
    url: str,
    path: Path,
    checked: Checked,
    progress: Progress,
    timeouts: Timeouts,
    *,
    slug: str | None = None,
    new_keys: bool = False,
    actor: str | None = None,
) -> Imported:
    """Create the Space of the checked file ``path`` (as ``slug`` when given). Raises
    MoveRefused: the Space exists, its keys exist in this database (without
    ``new_keys``), or a line cannot be stored (named). ``actor``: who to record in the
    audit log, in the same transaction."""
    space = checked.header.space
    target = slug or space.slug
    done = Imported(target, checked.counts)
    conn = connect(url, timeouts=timeouts)
    try:
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = 0")
            space_id = insert_space(
                conn, target, space.name, space.environment, space.limits,
                space.require_signatures,
            )  # fmt: skip
            if space_id is None:
                raise MoveRefused(f"Space {target!r} exists already; import it under another"
                                  " slug with --space NEWSLUG")  # fmt: skip
            if not new_keys:
                _refuse_taken_keys(conn, checked)
            bulk = skip_triggers(conn)
            progress.start("import", sum(checked.counts.values()))
            with open_lines(path) as stream:
                reader = _Reader(stream)
                reader.next()  # the header
                _write_sections(conn, space_id, reader, checked, progress, done, new_keys)
            # Written are the lines the first pass checked, or nothing is.
            if reader.digest.hexdigest() != checked.sha256:
                raise MoveRefused(f"{path} changed while it was imported")
            for entry in TABLES:  # what the import's triggers wrote and the file has not
                if entry.replace and entry.line not in checked.counts:
                    clear_rows(conn, entry.table, space_id)
            # A profile's shard is a hash of its Space's id, which the import changed: the
            # sweeper of the member owning it must find what is due.
            reshard_due(conn, space_id, shard_of)
            if bulk:
                tables = [BY_LINE[kind].table for kind in checked.counts if kind in BY_LINE]
                broken = check_references(conn, [*tables, "config_versions", "active_config"],
                                          space_id)  # fmt: skip
                if broken:
                    raise MoveRefused(f"the file's rows break a reference: {broken[0]}")
            announce(conn, space_id)
            if actor is not None:
                audit(conn, actor, "space.import", space_id, path.name)
        progress.finish()
    finally:
        conn.close()
    return done


def _refuse_taken_keys(conn: Conn, checked: Checked) -> None:
    """Refuse a file whose server or browser keys this database has (MoveRefused)."""
    for kind, keys in checked.keys.items():
        taken = taken_keys(conn, BY_LINE[kind].table, [i for i, _ in keys], [h for _, h in keys])
        if taken:
            what = "API key" if kind == "api_key" else "browser key"
            raise MoveRefused(
                f"this database already has the file's {what} {taken[0]} (is the original"
                " Space here?); import with --new-keys to give the copy new keys"
            )


def _write_sections(
    conn: Conn,
    space_id: int,
    reader: _Reader,
    checked: Checked,
    progress: Progress,
    done: Imported,
    new_keys: bool,
) -> None:
    """Each type's lines in the file's order (the first pass counted them, together)."""
    for kind, count in checked.counts.items():
        number, first = reader.next()
        if line_type(first, number) != kind:
            raise MoveRefused(f"line {number}: the file changed since it was checked")
        rows = chain([(number, first)], reader.take(count - 1))
        if kind == CONFIG_LINE:
            _write_config(conn, space_id, rows, progress)
            continue
        entry = BY_LINE[kind]
        columns = table_columns(conn, entry.table)
        if columns is None:
            raise MoveRefused(f"line {number}: this engine keeps no {kind} lines")
        if entry.replace:
            clear_rows(conn, entry.table, space_id)
        if kind in KEY_LINES and new_keys:
            space = checked.header.space
            done.new_keys += _copy_new_keys(conn, space_id, entry, columns, rows, space, progress)
        elif entry.fresh is not None:
            done.renamed += _copy_fresh(conn, space_id, entry, columns, rows, progress)
        else:
            _copy(conn, space_id, entry.table, columns, rows, progress)


class _Reader:
    """The file's lines, numbered and hashed as they are read."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = iter(stream)
        self.digest = hashlib.sha256()
        self.number = 0

    def next(self) -> tuple[int, bytes]:
        line = next(self._stream)
        self.number += 1
        self.digest.update(line)
        return self.number, line

    def take(self, count: int) -> Numbered:
        """The next ``count`` lines (read to the end before the next ``take``)."""
        update, number = self.digest.update, self.number
        for line in islice(self._stream, count):
            number += 1
            update(line)
            yield number, line
        self.number = number


def _decoded(decoder: RowDecoder, rows: Numbered, progress: Progress) -> Iterator[Row]:
    count = 0
    for number, line in rows:
        yield decoder.decode(line, number)
        count += 1
        if count == _PROGRESS_EVERY:
            progress.advance(count)
            count = 0
    progress.advance(count)


def _copy(
    conn: Conn, space_id: int, table: str, columns: list[Column], rows: Numbered,
    progress: Progress,
) -> RowDecoder:  # fmt: skip
    number, first = next(rows)
    decoder = RowDecoder(line_type(first, number), columns, first, number)
    again = chain([(number, first)], rows)
    _copy_rows(conn, table, decoder.names, space_id, _decoded(decoder, again, progress), number)
    return decoder


def _copy_rows(
    conn: Conn, table: str, names: list[str], space_id: int, rows: Iterable[Row], first: int
) -> None:
    """COPY, a refused value reported at its line (COPY counts the rows it was sent)."""
    try:
        copy_rows(conn, table, names, space_id, rows)
    except psycopg.Error as exc:
        found = _COPY_LINE.search(exc.diag.context or "")
        at = f"line {first + int(found.group(1)) - 1}: " if found else ""
        raise MoveRefused(f"{at}{exc.diag.message_primary or exc}") from None


def _write_config(conn: Conn, space_id: int, rows: Numbered, progress: Progress) -> None:
    """Module versions (drafts included) COPYed, then the active one of each module."""
    columns = table_columns(conn, "config_versions")
    assert columns is not None
    number, first = next(rows)
    decoder = RowDecoder(CONFIG_LINE, [*columns, Column("active", "bool")], first, number)
    names = decoder.names
    if "active" not in names or "module" not in names or "version" not in names:
        raise MoveRefused(f"line {number}: a config line names its module, version and active")
    flag, module, version = names.index("active"), names.index("module"), names.index("version")
    at = names.index("activated_at") if "activated_at" in names else None
    active: list[tuple[str, str, object]] = []

    def stored() -> Iterator[Row]:
        for row in _decoded(decoder, chain([(number, first)], rows), progress):
            if row[flag]:
                # module and version: text columns, decoded as str
                named = cast(str, row[module]), cast(str, row[version])
                active.append((*named, None if at is None else row[at]))
            yield row[:flag] + row[flag + 1 :]

    kept = names[:flag] + names[flag + 1 :]
    _copy_rows(conn, "config_versions", kept, space_id, stored(), number)
    activate_imported(conn, space_id, active)


def _copy_fresh(
    conn: Conn, space_id: int, entry: SpaceTable, columns: list[Column], rows: Numbered,
    progress: Progress,
) -> int:  # fmt: skip
    """Rows whose ``entry.fresh`` value is unique across Spaces: a value this database
    already holds (the original Space is here) is replaced by a new one. In batches: the
    check is a query, and a connection runs nothing else during a COPY."""
    assert entry.fresh is not None
    number, first = next(rows)
    decoder = RowDecoder(entry.line, columns, first, number)
    column = decoder.names.index(entry.fresh)
    all_rows = chain([(number, first)], rows)
    renamed = 0
    while batch := list(islice(all_rows, _FRESH_BATCH)):
        decoded = [list(decoder.decode(line, n)) for n, line in batch]
        fresh = [cast(str, r[column]) for r in decoded]  # a text id column
        taken = taken_values(conn, entry.table, entry.fresh, fresh)
        for row in decoded:
            if row[column] in taken:
                row[column] = str(row[column]).partition("_")[0] + "_" + secrets.token_hex(12)
                renamed += 1
        _copy_rows(conn, entry.table, decoder.names, space_id, map(tuple, decoded), batch[0][0])
        progress.advance(len(batch))
    return renamed


def _copy_new_keys(
    conn: Conn, space_id: int, entry: SpaceTable, columns: list[Column], rows: Numbered,
    space: SpaceFields, progress: Progress,
) -> list[NewKey]:  # fmt: skip
    """``--new-keys``: each key (server or browser key) gets a new id and secret (same
    scopes or policy, same revocation)."""
    rules = key_rules if entry.line == "api_key" else browser_key_rules
    number, first = next(rows)
    decoder = RowDecoder(entry.line, columns, first, number)
    names = decoder.names
    now = datetime.now(UTC).isoformat()
    made: list[NewKey] = []
    out: list[Row] = []
    for n, line in chain([(number, first)], rows):
        row = dict(zip(names, decoder.decode(line, n), strict=True))
        secret = rules.generate_key(space.environment)
        key_id = rules.new_key_id()
        revoked = row.get("revoked_at") is not None
        made.append(NewKey(entry.line, str(row.get("id")), key_id, secret, revoked))
        row.update(id=key_id, key_hash="\\x" + key_rules.hash_key(secret).hex(),
                   prefix=rules.display_prefix(secret), created_at=now)  # fmt: skip
        if "last_used_at" in row:
            row["last_used_at"] = None
        out.append(tuple(row[name] for name in names))
    _copy_rows(conn, entry.table, names, space_id, out, number)
    progress.advance(len(out))
    return made
