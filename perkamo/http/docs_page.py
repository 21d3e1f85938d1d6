"""``GET /docs``: the API reference, rendered in the browser from ``GET /openapi.json`` by
Redoc, vendored under ``static/`` (``static/VENDORED.md`` names the package, its version,
licence and checksums).

Nothing leaves the server's origin. Redoc 2's standalone bundle fetches no fonts (it only
names Montserrat and Roboto; the theme below asks for the system's fonts instead) and makes
one outside request of its own: the Redocly logo image in the sidebar's footer, which no
option turns off. The page's content security policy allows images, scripts, styles,
fonts and connections from the server's own origin only (plus the ``blob:`` worker Redoc
searches in), so the browser refuses that image before any request is sent and the bundle
hides it. The policy sits in a ``<meta>`` tag because keyless answers carry no headers of
their own; a meta policy covers every directive used here."""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

import msgspec

from perkamo.http.edge import Plain, RawBody, Result

RENDERER = "redoc.standalone.js"  # served at /docs/redoc.standalone.js

_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # Redoc's styled-components inject <style>
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",  # the search index runs in a worker made from a blob
        "base-uri 'none'",
        "form-action 'none'",
    )
)
_SYSTEM_FONTS = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_THEME = {
    "typography": {
        "fontFamily": _SYSTEM_FONTS,
        "headings": {"fontFamily": _SYSTEM_FONTS},
        "code": {"fontFamily": "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace"},
    }
}
_THEME_ATTRIBUTE = html.escape(msgspec.json.encode(_THEME).decode())

# Redoc initialises itself from the <redoc> element's attributes (``theme`` is JSON, escaped
# for the attribute), so the page needs no inline script, which the policy would refuse.
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Perkamo API reference</title>
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<redoc spec-url="/openapi.json" expand-responses="200,202"
 theme="{_THEME_ATTRIBUTE}"></redoc>
<script src="/docs/{RENDERER}"></script>
</body>
</html>
"""


async def page(_: Plain) -> Result[RawBody]:
    return Result(RawBody(_PAGE.encode(), "text/html; charset=utf-8"))


@cache
def _renderer() -> bytes:
    return resources.files("perkamo.http").joinpath("static", RENDERER).read_bytes()


async def renderer(_: Plain) -> Result[RawBody]:
    return Result(RawBody(_renderer(), "text/javascript; charset=utf-8"))
