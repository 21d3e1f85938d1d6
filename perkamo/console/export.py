"""CSV downloads. A cell a customer could have written (a trait, a user id) that begins
with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return, which spreadsheets also read
as the start of a formula) is prefixed with ``'``: a spreadsheet shows it as text and never
runs a customer-supplied formula (CSV injection, OWASP)."""

from __future__ import annotations

import csv
import io
from urllib.parse import quote

from quart import Response

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()


def csv_response(rows: list[list[str]], filename: str) -> Response:
    response = Response(csv_text(rows), content_type="text/csv; charset=utf-8")
    response.headers["content-disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    return response
