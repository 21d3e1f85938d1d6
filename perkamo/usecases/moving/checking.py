"""The first pass of ``perkamo import``: the whole file is read and checked before anything
is written — a header of a known format version first, a footer last whose counts and
SHA-256 match every line before it, each type's lines together. A truncated or corrupted
file (a missing footer, one changed byte) is refused here, naming the line."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from perkamo.usecases.moving.format import (
    FOOTER,
    HEADER,
    Footer,
    Header,
    MoveRefused,
    line_type,
    open_lines,
    read_footer,
    read_header,
)
from storage.space_tables import BY_LINE, CONFIG_LINE

# The keys a Space is called with, unique across the database (id and hash): server keys and
# the browser keys pages ship with.
KEY_LINES = ("api_key", "browser_key")


class _KeyLine(msgspec.Struct):
    id: str
    key_hash: str  # bytea as text: \x…


_key_line = msgspec.json.Decoder(_KeyLine)


@dataclass(slots=True)
class Checked:
    """What the first pass learnt: the header, the lines per type (in the file's order) and
    the API keys and browser keys (id, hash) by line type, checked against the database
    before anything is written."""

    header: Header
    counts: dict[str, int] = field(default_factory=dict)  # in the file's order
    sha256: str = ""
    lines: int = 0
    keys: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)


def check_file(path: Path) -> Checked:
    """Read ``path`` once and check it. Raises MoveRefused."""
    digest = hashlib.sha256()
    checked: Checked | None = None
    footer: Footer | None = None
    previous = ""
    number = 0
    with open_lines(path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.endswith(b"\n"):
                raise MoveRefused(f"line {number}: the file ends inside a line (truncated)")
            if footer is not None:
                raise MoveRefused(f"line {number}: a line after the footer")
            kind = line_type(line, number)
            if number == 1:
                if kind != HEADER:
                    raise MoveRefused("line 1: an export starts with its header")
                checked = Checked(read_header(line))
            elif kind == HEADER:
                raise MoveRefused(f"line {number}: a second header")
            elif kind == FOOTER:
                footer = read_footer(line, number)
                continue  # the checksum covers the lines before the footer
            else:
                assert checked is not None
                _count(checked, kind, previous, line, number)
            previous = kind
            digest.update(line)
    if checked is None:
        raise MoveRefused(f"{path} is empty")
    if footer is None:
        raise MoveRefused(f"the file has no footer after line {number}: it is truncated")
    if footer.sha256 != digest.hexdigest():
        raise MoveRefused(
            f"line {number}: the checksum does not match the lines before it: the file is corrupted"
        )
    if footer.counts != checked.counts:
        raise MoveRefused(
            f"line {number}: the footer counts {footer.counts}, the file holds {checked.counts}"
        )
    checked.lines, checked.sha256 = number, footer.sha256
    return checked


def _count(checked: Checked, kind: str, previous: str, line: bytes, number: int) -> None:
    if kind not in BY_LINE and kind != CONFIG_LINE:
        raise MoveRefused(f"line {number}: unknown line type {kind!r}")
    if kind != previous and kind in checked.counts:
        raise MoveRefused(f"line {number}: the {kind} lines must be together")
    checked.counts[kind] = checked.counts.get(kind, 0) + 1
    if kind in KEY_LINES:
        try:
            key = _key_line.decode(line)
            found = (key.id, bytes.fromhex(key.key_hash.removeprefix("\\x")))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise MoveRefused(f"line {number}: not an {kind} line ({exc})") from None
        checked.keys.setdefault(kind, []).append(found)
