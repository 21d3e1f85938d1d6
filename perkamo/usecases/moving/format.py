"""The export file (docs/operations.md (moving a Space)): JSON Lines, one object per line
with its ``type`` first — ``header``, the Space's lines (storage/space_tables.py),
``footer`` with the count of every type present and the SHA-256 of the exact bytes of every
line before it (each with its newline, of the uncompressed stream). Line numbers are
1-based, the header line 1."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import msgspec

from perkamo.access.admin import AdminError, check_slug
from perkamo.program.json_walk import JsonObject

FORMAT = "perkamo-export"
FORMAT_VERSION = 1
HEADER, FOOTER = "header", "footer"
_PREFIX = b'{"type":"'
_GZIP_MAGIC = b"\x1f\x8b"


class MoveRefused(Exception):
    """An export or import that cannot be done; nothing was written (the message says why,
    with the line number when a line is at fault)."""


class SpaceFields(msgspec.Struct, frozen=True):
    slug: str
    name: str
    environment: str
    limits: JsonObject
    require_signatures: bool


class Header(msgspec.Struct, frozen=True, tag_field="type", tag="header"):
    format: str
    format_version: int
    exported_at: str
    engine_version: str
    space: SpaceFields


class Footer(msgspec.Struct, frozen=True, tag_field="type", tag="footer"):
    counts: dict[str, int]
    sha256: str


class _Typed(msgspec.Struct):
    type: str


_typed = msgspec.json.Decoder(_Typed)
_header = msgspec.json.Decoder(Header)
_footer = msgspec.json.Decoder(Footer)
encoder = msgspec.json.Encoder()


def line_type(line: bytes, number: int) -> str:
    """The ``type`` of a line: read from its first key (the exporter writes it first), else
    from the decoded object. Raises MoveRefused naming the line."""
    if line.startswith(_PREFIX):
        end = line.find(b'"', len(_PREFIX))
        if end > 0:
            return line[len(_PREFIX) : end].decode("utf-8", "replace")
    try:
        return _typed.decode(line).type
    except msgspec.DecodeError as exc:
        raise MoveRefused(f"line {number}: not a JSON object with a type ({exc})") from None
    except msgspec.ValidationError:
        raise MoveRefused(f"line {number}: a line must be an object with a type") from None


def read_header(line: bytes) -> Header:
    try:
        header = _header.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MoveRefused(f"line 1: not an export header ({exc})") from None
    if header.format != FORMAT:
        raise MoveRefused(f"line 1: the format is {header.format!r}, not {FORMAT!r}")
    if header.format_version != FORMAT_VERSION:
        raise MoveRefused(
            f"line 1: format_version {header.format_version} is unknown to this engine"
            f" (it reads version {FORMAT_VERSION})"
        )
    try:  # the slug a Space gets must be one `perkamo spaces create` would take
        check_slug(header.space.slug)
    except AdminError as exc:
        raise MoveRefused(f"line 1: the Space's slug {header.space.slug!r}: {exc}") from None
    return header


def read_footer(line: bytes, number: int) -> Footer:
    try:
        return _footer.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MoveRefused(f"line {number}: not an export footer ({exc})") from None


@contextmanager
def open_lines(path: Path) -> Iterator[BinaryIO]:
    """The file's uncompressed bytes (gzip is recognised by its first bytes)."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise MoveRefused(f"cannot read {path}: {exc.strerror}") from None
    with raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic != _GZIP_MAGIC:
            yield raw
            return
        try:  # a damaged or cut gzip stream is found while it is read
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield io.BufferedReader(unzipped, 1 << 20)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise MoveRefused(f"{path} is damaged or truncated (gzip: {exc})") from None


@contextmanager
def open_output(path: Path | None, stdout: BinaryIO) -> Iterator[BinaryIO]:
    """Where an export goes: ``stdout``, or ``path`` — written as ``<path>.partial`` with
    mode 0600 (it holds webhook secrets and key hashes) and renamed into place once
    complete, so a failed export never leaves a file that looks whole. ``.gz``: gzip."""
    if path is None:
        yield stdout
        stdout.flush()
        return
    partial = path.with_name(path.name + ".partial")
    try:
        # A stale partial file (or a link planted there, to have the secrets written
        # through it) is removed, and a new file made — never one that exists followed.
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise MoveRefused(f"cannot write {partial}: {exc.strerror}") from None
    done = False
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as raw:
            if path.name.endswith(".gz"):
                # Level 1: an export is read back once; speed matters more than size.
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1) as gz:
                    yield gz  # type: ignore[misc]
            else:
                yield raw
        os.replace(partial, path)
        done = True
    finally:
        if not done:
            partial.unlink(missing_ok=True)
