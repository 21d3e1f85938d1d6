"""``perkamo export SPACE``: the Space as one file, from one consistent snapshot of the
database taken while the server keeps serving (REPEATABLE READ: writers never wait for it),
streamed through server-side cursors so that memory stays bounded whatever the Space holds.
Exported while the Space is frozen (``perkamo spaces freeze``), the file is exactly the
Space: nothing is written to it after the snapshot."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from perkamo import __version__
from perkamo.program.timefmt import format_rfc3339
from perkamo.usecases.moving.format import (
    FORMAT,
    FORMAT_VERSION,
    Footer,
    Header,
    MoveRefused,
    SpaceFields,
    encoder,
)
from perkamo.usecases.moving.progress import Progress
from storage import StorageUnavailable, connect
from storage.database import Timeouts
from storage.space_tables import begin_snapshot, count_rows, sections, space_header, stream_lines


@dataclass(frozen=True, slots=True)
class Exported:
    counts: dict[str, int]
    sha256: str
    frozen: bool  # exported while frozen: exact (else: as of the snapshot)


def export_space(
    url: str, slug: str, sink: BinaryIO, progress: Progress, timeouts: Timeouts
) -> Exported:
    """Write the Space ``slug`` to ``sink``. Raises MoveRefused (no such Space) or
    StorageUnavailable."""
    conn = connect(url, timeouts=timeouts)
    try:
        begin_snapshot(conn)
        space = space_header(conn, slug)
        if space is None:
            raise MoveRefused(f"no Space {slug!r}")
        header = Header(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            exported_at=format_rfc3339(datetime.now(UTC)),
            engine_version=__version__,
            space=SpaceFields(
                space.slug, space.name, space.environment, space.limits,
                space.require_signatures,
            ),
        )  # fmt: skip
        found = sections(conn)
        totals = {s.line: count_rows(conn, s, space.id) for s in found}
        progress.start("export", sum(totals.values()))
        digest = hashlib.sha256()
        counts: dict[str, int] = {}

        def write(data: bytes) -> None:
            digest.update(data)
            sink.write(data)

        write(encoder.encode(header) + b"\n")
        for section in found:
            for batch in stream_lines(conn, section, space.id):
                write(_lines(batch))
                counts[section.line] = counts.get(section.line, 0) + len(batch)
                progress.advance(len(batch))
        footer = Footer(counts=counts, sha256=digest.hexdigest())
        sink.write(encoder.encode(footer) + b"\n")
        progress.finish()
        conn.rollback()
        return Exported(counts, footer.sha256, space.frozen)
    except OSError as exc:
        raise MoveRefused(f"cannot write the export: {exc.strerror or exc}") from None
    finally:
        conn.close()


def _lines(batch: list[str]) -> bytes:
    """One batch of lines, each ending with ``\\n``. A line break inside a line can only be
    whitespace between JSON tokens of a stored ``json`` value (strings escape theirs), so
    it is written as a space: the value means the same and the file stays one object a
    line."""
    text = "\n".join(batch)
    if text.count("\n") != len(batch) - 1 or "\r" in text:
        text = "\n".join(line.replace("\r", " ").replace("\n", " ") for line in batch)
    return (text + "\n").encode()


__all__ = ["Exported", "StorageUnavailable", "export_space"]
