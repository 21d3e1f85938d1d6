"""The console's request cycle: routing, sessions, CSRF and origin checks, roles, the
security headers, and rendering (docs/operations.md (the console)).

Every console request passes here: a page needs a live session (else the login page);
every POST needs the session's CSRF token and a same-origin request; a mutation needs the
``admin`` role; every answer carries the security headers. API keys never open the
console, and a console session never authorizes ``/v1/*`` (the API edge reads only keys).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import msgspec
from markupsafe import Markup
from quart import Request, Response

from perkamo.console import security
from perkamo.errors import PerkamoError
from perkamo.http.router import decode_segment
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import parse_rfc3339
from perkamo.runtime import Runtime
from storage import console as store
from storage.spaces import SpaceRecord, get_space

log = logging.getLogger(__name__)

PREFIX = "/console"
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("perkamo.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_STATIC = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "htmx.min.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


class Forbidden(Exception):
    """403: the operator may not do this (a viewer, a bad CSRF token, another origin)."""


class NotFound(Exception):
    pass


@dataclass
class Page:
    """What a view gets."""

    console: Console
    runtime: Runtime
    request: Request
    session: store.Session | None
    params: dict[str, str]
    query: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    space: SpaceRecord | None = None
    flash: JsonObject = field(default_factory=dict)

    @property
    def operator(self) -> str:
        assert self.session is not None
        return self.session.email

    @property
    def admin(self) -> bool:
        return self.session is not None and self.session.role == "admin"

    def render(self, template: str, status: int = 200, **context: object) -> Response:
        return self.console.render(self, template, status, **context)

    def redirect(self, path: str, **query: object) -> Response:
        shown = {k: v for k, v in query.items() if v not in (None, "")}
        return redirect(PREFIX + path + (("?" + urlencode(shown)) if shown else ""))

    async def back(
        self,
        path: str,
        *,
        notice: str | None = None,
        error: str | None = None,
        fields: dict[str, str] | None = None,
        keep: bool = False,
        **extra: object,
    ) -> Response:
        """Post → redirect → get: what the next page shows once (a notice, an error, the
        problems by field, the form as typed) is kept with the session, never put in the
        URL, where anyone could write an official-looking banner."""
        flash: JsonObject = {k: v for k, v in extra.items() if v is not None}
        if notice:
            flash["notice"] = notice
        if error:
            flash["error"] = error
        if fields:
            flash["fields"] = fields
        if keep:
            flash["form"] = {k: v for k, v in self.form.items() if k != security.CSRF_FIELD}
        token = self.request.cookies.get(security.SESSION_COOKIE, "")
        if flash and token:
            await self.runtime.db.run(store.set_flash, security.session_hash(token), flash)
        return self.redirect(path)

    def kept(self, name: str, default: str = "") -> str:
        """A form field as the operator typed it before an error (else ``default``)."""
        form = self.flash.get("form") or {}
        return str(form.get(name, default))


View = Callable[[Page], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # e.g. "/spaces/{slug}/keys"
    view: View
    mutates: bool = False  # admin only, CSRF-checked
    anonymous: bool = False  # the login page
    regex: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        expression = re.sub(
            r"\{(\w+)\}",
            r"(?P<\1>[^/]+)",
            re.escape(self.pattern).replace(r"\{", "{").replace(r"\}", "}"),
        )
        object.__setattr__(self, "regex", re.compile(expression + r"\Z"))


def redirect(location: str) -> Response:
    response = Response("", status=303)
    response.headers["location"] = location
    return response


def url(path: str, **query: object) -> str:
    """A console URL: path segments quoted, query encoded (templates use it)."""
    shown = {k: v for k, v in query.items() if v not in (None, "")}
    return PREFIX + path + (("?" + urlencode(shown)) if shown else "")


def seg(value: str) -> str:
    """One path segment, percent-encoded (a user id may hold any character)."""
    return quote(value, safe="")


_pretty_encoder = msgspec.json.Encoder(decimal_format="number")


def pretty(value: object) -> str:
    """Any JSON value, indented (exact decimals; escaped by the template as text)."""
    return msgspec.json.format(_pretty_encoder.encode(value), indent=2).decode()


TZ_COOKIE = "perkamo_tz"  # the browser's IANA zone, set by console.js


def zone_of(request: Request) -> ZoneInfo:
    name = request.cookies.get(TZ_COOKIE, "")
    try:
        return ZoneInfo(name) if name and len(name) < 64 and ".." not in name else _UTC
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", a directory
        return _UTC


_UTC = ZoneInfo("UTC")


@jinja2.pass_context
def timestamp(
    context: jinja2.runtime.Context, value: datetime | str | None, date_only: bool = False
) -> Markup:
    """One format everywhere: the operator's local time with its zone, ISO 8601 (UTC) on
    hover and in ``datetime``."""
    if value is None or value == "":
        return Markup('<span class="muted">—</span>')
    if isinstance(value, str):
        try:
            value = parse_rfc3339(value)
        except ValueError:
            return Markup("{}").format(value)
    zone = context.get("tz") or _UTC
    local = value.astimezone(zone)
    iso = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    shown = local.strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M:%S %Z")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, iso, shown)


def ident(value: object) -> Markup:
    """A long id truncated on screen, the whole of it on hover and when copied."""
    text = "" if value is None else str(value)
    return Markup('<span class="id" title="{}">{}</span>').format(text, text)


def amount(value: object) -> str:
    """A decimal as people write it: no exponent, no trailing zeros, thousands spaced."""
    if value is None:
        return ""
    number = Decimal(str(value))
    text = f"{number:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def signed(value: object) -> str:
    text = amount(value)
    return text if text.startswith("-") else "+" + text


_env.globals.update(url=url, seg=seg)
_env.filters.update(pretty=pretty, ts=timestamp, id=ident, amount=amount, signed=signed)


class Console:
    def __init__(self, runtime: Runtime, routes: list[Route]) -> None:
        self.runtime = runtime
        self.routes = routes
        self.throttle = security.LoginThrottle()

    async def handle(self, request: Request) -> Response:
        holder: list[Page] = []
        try:
            response = await self._handle(request, holder)
        except Forbidden as exc:
            response = self._error(request, holder, 403, str(exc) or "You may not do that.")
        except NotFound as exc:
            response = self._error(request, holder, 404, str(exc) or "Nothing here.")
        except Exception:
            log.exception("console error")
            response = self._error(request, holder, 500, "Something went wrong on our side.")
        for name, value in security.HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _handle(self, request: Request, holder: list[Page]) -> Response:
        # Routed on the raw path: a user id may hold "/" (percent-encoded in its segment).
        raw = (request.scope.get("raw_path") or b"/").decode("ascii", "replace")
        path = raw.split("?", 1)[0][len(PREFIX) :] or "/"
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        # A full page (not htmx's polling) takes the flash a redirect left for it.
        take = request.method == "GET" and "hx-request" not in request.headers
        session = await self._session(request, take)
        page = Page(self, self.runtime, request, session, {}, dict(request.args))
        page.flash = (session.flash if session else None) or {}
        holder.append(page)
        route, page.params = self._match(request.method, path)
        if not route.anonymous and session is None:
            if request.method == "GET":
                return redirect(url("/login", next=request.full_path.rstrip("?")))
            raise Forbidden("Your session has ended; log in again.")
        if request.method == "POST":
            self._check_origin(request)
            page.form = {k: v for k, v in (await request.form).items()}
            expected = session.csrf_token if session else request.cookies.get(_LOGIN_CSRF, "")
            given = page.form.get(security.CSRF_FIELD) or request.headers.get(security.CSRF_HEADER)
            if not expected or not security.csrf_matches(expected, given):
                raise Forbidden("The form expired or did not come from this console; retry.")
            if route.mutates and (session is None or session.role != "admin"):
                raise Forbidden("Viewers can look but not change anything.")
        if "slug" in page.params:
            page.space = await self.runtime.db.run(get_space, page.params["slug"])
            if page.space is None:
                raise NotFound(f"No Space {page.params['slug']!r}.")
        return await route.view(page)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method != method:
                allowed = True
                continue
            try:
                return route, {k: decode_segment(k, v) for k, v in found.groupdict().items()}
            except PerkamoError:  # not an identifier anything could have
                raise NotFound("That page does not exist.") from None
        raise NotFound("That page does not exist." if not allowed else "Use the page's form.")

    async def _session(self, request: Request, take_flash: bool) -> store.Session | None:
        token = request.cookies.get(security.SESSION_COOKIE)
        if not token or len(token) > 200:
            return None
        return await self.runtime.db.run(
            store.touch_session,
            security.session_hash(token),
            security.ABSOLUTE_LIFETIME,
            security.IDLE_LIFETIME,
            take_flash,
        )

    @staticmethod
    def _check_origin(request: Request) -> None:
        if not security.same_origin(
            request.headers.get("origin"),
            request.headers.get("sec-fetch-site"),
            request.headers.get("host"),
        ):
            raise Forbidden("The request did not come from this console.")

    def render(self, page: Page | None, template: str, status: int, **context: object) -> Response:
        session = page.session if page else None
        flash = page.flash if page else {}
        html = _env.get_template(template).render(
            session=session,
            admin=page.admin if page else False,
            space=page.space if page else None,
            csrf=session.csrf_token if session else "",
            tz=zone_of(page.request) if page else _UTC,
            flash=flash,
            typed=page.kept if page else (lambda name, default="": default),
            fields=flash.get("fields") or {},
            **context,
        )
        return Response(html, status=status, content_type="text/html; charset=utf-8")

    def _error(self, request: Request, holder: list[Page], status: int, message: str) -> Response:
        """Every error page keeps the navigation (and the way out) of the page it replaced."""
        page = holder[0] if holder else None
        return self.render(page, "error.html", status, code=status, message=message)

    @staticmethod
    def _static(name: str) -> Response:
        if name not in _STATIC:
            raise NotFound()
        body = resources.files("perkamo.console").joinpath("static", name).read_bytes()
        response = Response(body, content_type=_STATIC[name])
        response.headers["cache-control"] = "public, max-age=3600"
        return response


_LOGIN_CSRF = "perkamo_console_login"


def error_message(exc: PerkamoError) -> str:
    """A use-case refusal as the console shows it, with the JSON paths it names."""
    paths = [f"{d['path']}: {d['message']}" for d in (exc.details or []) if d.get("path")]
    return str(exc) + (" — " + "; ".join(paths) if paths else "")


LOGIN_CSRF_COOKIE = _LOGIN_CSRF
