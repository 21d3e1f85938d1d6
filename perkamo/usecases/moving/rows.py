"""A section's lines decoded into rows for PostgreSQL's COPY: one msgspec Struct per section,
made from the first line's keys and the table's column types, so every later line is
decoded in C and checked to have exactly those keys. Values stay text where PostgreSQL
parses them (times, ``bytea``'s ``\\x…``), and numbers and JSON keep their exact bytes
(``msgspec.Raw``): a ``json`` answer is stored again byte for byte."""

from __future__ import annotations

from typing import TypeAlias

import msgspec

from perkamo.program.json_walk import JsonObject
from perkamo.usecases.moving.format import MoveRefused
from storage.space_tables import Column

_generic = msgspec.json.Decoder(JsonObject)
# A row's values for COPY: text (exact numbers and JSON included), integers, booleans, arrays
# of them, None.
Row: TypeAlias = tuple[object, ...]
_INTEGERS = {"int2", "int4", "int8"}
_EXACT = {"numeric", "json", "jsonb"}  # kept as the file writes them


def _python_type(kind: str) -> object:  # a type expression for msgspec
    if kind in _INTEGERS:
        return int | None
    if kind == "bool":
        return bool | None
    if kind in _EXACT:
        return msgspec.Raw
    if kind.startswith("_"):  # an array
        return list[int] | None if kind[1:] in _INTEGERS else list[str] | None
    return str | None  # text, times, dates, bytea (``\x…``): PostgreSQL parses the text


class RowDecoder:
    """Lines of one type → rows of the columns its first line names (``names``)."""

    def __init__(self, line: str, columns: list[Column], first: bytes, number: int) -> None:
        try:
            keys = [k for k in _generic.decode(first) if k != "type"]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MoveRefused(f"line {number}: not a JSON object ({exc})") from None
        by_name = {c.name: c for c in columns}
        unknown = [k for k in keys if k not in by_name]
        if unknown:
            raise MoveRefused(
                f"line {number}: {line} lines have no field {unknown[0]!r} in this engine"
                " (a file from a newer engine?)"
            )
        self.columns = [by_name[k] for k in keys]
        fields = [("type", str), *((c.name, _python_type(c.type)) for c in self.columns)]
        shape = msgspec.defstruct(f"{line}_line", fields, forbid_unknown_fields=True)
        self._decoder: msgspec.json.Decoder[msgspec.Struct] = msgspec.json.Decoder(shape)
        self._exact = [i for i, c in enumerate(self.columns) if c.type in _EXACT]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def decode(self, line: bytes, number: int) -> Row:
        """The row's values, in ``names`` order. Raises MoveRefused naming the line."""
        try:
            values = msgspec.structs.astuple(self._decoder.decode(line))[1:]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MoveRefused(f"line {number}: {exc}") from None
        if not self._exact:
            return values
        row = list(values)
        for i in self._exact:
            text = bytes(row[i])
            row[i] = None if text == b"null" else text.decode()
        return tuple(row)
